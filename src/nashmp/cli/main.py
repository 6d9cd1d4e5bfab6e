"""``nashmp`` command line: the exact layer (``solve``, ``run``, ``compare``), ``approx``, ``rl``, ``train`` and ``eval``.

Examples::

    nashmp solve --preference P.npy --ref ref.npy --beta 0.1 --out star.npy
    nashmp run --preference P.npy --ref ref.npy --beta 0.1 --algo nash-mp --queries 200 --out runs/a
    nashmp compare --family cyclic --n 60 --games 8 --beta 0.01 --queries 3000 --out runs/demo
    nashmp train --config run.yaml --beta 0.05 --max-steps 20

Bad input files or arguments exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import EquilibriumNotCertifiedError, InvalidParameterError, JudgeError, NashMPValueError
from ._common import CLIError, Parser, check_param_targets, config_fields_help, params_for, parse_params

__all__ = ["main", "build_parser", "CLIError"]


def _load_array(path: str, what: str) -> np.ndarray:
    """A float array from ``.npy`` (by its magic bytes, any suffix) or a ``.csv``/``.txt`` table."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file not found: {path}")
    try:
        if p.suffix.lower() in (".csv", ".txt"):
            text = p.read_text(encoding="utf-8")
            return np.loadtxt(text.splitlines(), delimiter="," if "," in text else None, dtype=np.float64, ndmin=1)
        with p.open("rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY":  # else numpy calls any other file "pickled data"
            raise CLIError(f"cannot read {what} from {path}: not a .npy array (give .npy, or .csv/.txt text)")
        return np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
    except CLIError:
        raise
    except UnicodeDecodeError:
        raise CLIError(f"cannot read {what} from {path}: not UTF-8 text") from None
    except Exception as exc:  # numpy raises several types for corrupt files
        raise CLIError(f"cannot read {what} from {path}: {' '.join(str(exc).split())}") from None


def _add_game_args(p: argparse.ArgumentParser, family_allowed: bool = True) -> None:
    g = p.add_argument_group("game")
    g.add_argument("--preference", help="P as .npy (n,n) or (X,n,n), or .csv/.txt (n,n)")
    g.add_argument("--ref", help="π_ref as .npy (n,) or (X,n), or .csv/.txt")
    g.add_argument("--weights", help="context weights ρ as .npy (X,) (optional)")
    g.add_argument("--beta", type=float, required=True, help="regularisation β > 0")
    if family_allowed:
        from ..games import FAMILIES

        g.add_argument("--family", choices=sorted(FAMILIES), help="generate a game family instead of files")
        g.add_argument("--n", type=int, default=30, help="responses per game (with --family)")
        g.add_argument("--games", type=int, default=1, help="number of games/contexts (with --family)")
        g.add_argument("--seed", type=int, default=0, help="generator seed (with --family)")


def _game_from_args(args: argparse.Namespace) -> Any:
    from ..games import PreferenceGame, make_game

    family = getattr(args, "family", None)
    if family and (args.preference or args.ref):
        raise CLIError("give either --family or --preference/--ref, not both")
    if family:
        return make_game(family, args.n, args.beta, num_games=args.games, seed=args.seed)
    if not args.preference or not args.ref:
        raise CLIError("--preference and --ref are required (or --family to generate a game)")
    P = _load_array(args.preference, "preference")
    ref = _load_array(args.ref, "reference")
    weights = _load_array(args.weights, "weights") if args.weights else None
    return PreferenceGame(P, ref, args.beta, weights)


def cmd_solve(args: argparse.Namespace) -> int:
    from ..equilibrium import solve_equilibrium

    game = _game_from_args(args)
    eq = solve_equilibrium(game, tol=args.tol)
    out = Path(args.out)
    if out.suffix != ".npy":  # np.save appends .npy; report the file actually written
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, eq.policy)
    print(
        json.dumps(
            {
                "out": str(out),
                "certificate": eq.certificate,
                "newton_steps": eq.newton_steps,
                "contexts": game.num_contexts,
                "n": game.num_responses,
                "beta": game.beta,
            }
        )
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..runner import run

    game = _game_from_args(args)
    parsed = parse_params(args.param)
    check_param_targets(parsed, [args.algo], "algorithm")
    params = params_for(args.algo, parsed)
    traj = run(game, args.algo, args.queries, record_every=args.record_every, progress=not args.no_progress, **params)
    out = Path(args.out)
    traj.write_csv(out / "metrics.csv")
    np.save(out / "policy.npy", game.unbatch(np.exp(traj.final.log_policy)))
    final = {k: float(v[-1]) for k, v in traj.metrics.items() if not k.endswith("_max")}
    print(json.dumps({"out": str(out), "algorithm": traj.algorithm, "queries": int(traj.queries[-1]), **final}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    game = _game_from_args(args)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise CLIError("--algos names no algorithm; e.g. --algos nash-mp,omd (see `nashmp run --help`)")
    params = parse_params(args.param)
    check_param_targets(params, algos, "algorithm")
    summary = compare(
        game,
        algos,
        args.queries,
        Path(args.out),
        params=params,
        progress=not args.no_progress,
        title=args.title or "",
    )
    print(summary)
    return 0


def cmd_approx(args: argparse.Namespace) -> int:
    from ..approx.recipes import FORMER_NAMES, RECIPES
    from .approx import approx_compare

    game = _game_from_args(args)
    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    if not recipes:
        raise CLIError(f"--recipe names no recipe; choose from {list(RECIPES)}")
    old = [r for r in recipes if r in FORMER_NAMES]
    if old:
        import warnings

        warnings.warn(f"recipe name(s) {old} are now {[FORMER_NAMES[r] for r in old]}", FutureWarning, stacklevel=1)
        recipes = [FORMER_NAMES.get(r, r) for r in recipes]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise CLIError(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    params = {FORMER_NAMES.get(k, k): v for k, v in parse_params(args.param).items()}
    check_param_targets(params, recipes, "recipe")  # a --param for a recipe that is not run would be ignored
    import dataclasses

    from .._fields import coerce_fields
    from ..approx.recipes import ApproxConfig

    fields = {f.name for f in dataclasses.fields(ApproxConfig)} - {"recipe", "seed"}
    bad = sorted({k for p in params.values() for k in p} - fields)
    if bad:
        raise CLIError(f"unknown --param {bad}; ApproxConfig fields are {sorted(fields)}")
    params = {name: coerce_fields(ApproxConfig, p) for name, p in params.items()}
    if args.seeds < 1:
        raise CLIError(f"--seeds must be ≥ 1, got {args.seeds}")
    summary = approx_compare(
        game,
        recipes,
        list(range(args.seeds)),
        args.queries,
        Path(args.out),
        params=params,
        evals=args.evals,
        progress=not args.no_progress,
        title=args.title or "",
    )
    print(summary)
    return 0


def _algorithm_params_help() -> str:
    """Each tabular algorithm's ``--param`` keys with their types and defaults, from its factory's signature."""
    import inspect

    from ..algorithms import ALGORITHMS

    lines = ["algorithm parameters (--param KEY=VALUE; compare: --param ALGO:KEY=VALUE):"]
    for name in sorted(ALGORITHMS):
        sig = inspect.signature(ALGORITHMS[name])
        args = ", ".join(str(p).replace("'", "") for p in sig.parameters.values())
        lines.append(f"  {name}: {args or '(none)'}")
    return "\n".join(lines)


def _approx_help() -> str:
    from ..approx.recipes import _CHOICES, ApproxConfig
    from ..online.recipes import RECIPES

    recipes = ["recipes (--recipe):", *(f"  {name}: {recipe.summary}" for name, recipe in RECIPES.items())]
    choices = {k: list(v) for k, v in _CHOICES.items()}
    return "\n".join(recipes) + "\n\n" + config_fields_help(ApproxConfig, choices=choices, skip=("recipe", "seed"))


def build_parser() -> argparse.ArgumentParser:
    from ..algorithms import ALGORITHMS

    parser = Parser(
        prog="nashmp",
        description=(
            "Nash Learning from Human Feedback: exact preference games (solve, run, compare), sampled "
            "Nash-MP (approx), MDPO reinforcement learning (rl), LLM fine-tuning (train) and evaluation (eval)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"nashmp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("solve", help="solve and certify π*_β; writes it as .npy")
    _add_game_args(s)
    s.add_argument("--tol", type=float, default=1e-10, help="certificate tolerance")
    s.add_argument("--out", required=True, help="output .npy for π*_β")
    s.set_defaults(func=cmd_solve)

    r = sub.add_parser(
        "run",
        help="run one algorithm; writes OUT/metrics.csv and OUT/policy.npy",
        epilog_factory=_algorithm_params_help,
    )
    _add_game_args(r)
    r.add_argument("--algo", required=True, choices=sorted(ALGORITHMS))
    r.add_argument("--queries", type=int, required=True, help="preference-query budget N")
    r.add_argument("--param", action="append", metavar="KEY=VALUE", help="algorithm parameter, e.g. eta=0.2")
    r.add_argument("--record-every", type=int, default=1)
    r.add_argument("--out", required=True)
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser(
        "compare",
        help="several algorithms on one game: CSV, PNG plot and markdown summary",
        epilog_factory=_algorithm_params_help,
    )
    _add_game_args(c)
    c.add_argument("--algos", default="nash-mp,adaptive-nash-mp,egpo,omd,onpo,nash-md,mpo,online-ipo")
    c.add_argument("--queries", type=int, required=True)
    c.add_argument("--param", action="append", metavar="[ALGO:]KEY=VALUE", help="e.g. omd:eta=0.5")
    c.add_argument("--title")
    c.add_argument("--out", required=True)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compare)

    a = sub.add_parser(
        "approx",
        help="approximate (sampled, policy-gradient) recipes × seeds: CSV, PNG, summary",
        epilog_factory=_approx_help,
    )
    _add_game_args(a)
    a.add_argument(
        "--recipe",
        default="nash-mp-faithful,nash-mp,nash-prox,nash-md,online-ipo,egpo",
        help="comma-separated recipes of nashmp.online (default: all six; their fields are listed below)",
    )
    a.add_argument("--queries", type=int, required=True, help="budget of compared pairs per run")
    a.add_argument("--seeds", type=int, default=1, help="runs per recipe (seeds 0..S-1)")
    a.add_argument("--evals", type=int, default=50, help="exact evaluations per run")
    a.add_argument("--param", action="append", metavar="[RECIPE:]KEY=VALUE", help="ApproxConfig field, e.g. lr=0.05")
    a.add_argument("--title")
    a.add_argument("--out", required=True)
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(func=cmd_approx)

    from .rl import add_rl_parsers

    add_rl_parsers(sub)

    from .train import add_train_arguments, cmd_train

    tr = sub.add_parser(
        "train",
        help="online NLHF fine-tuning of a causal LM (Nash-MP, Nash Prox, Nash-MD, online IPO, EGPO); needs nashmp[llm]",
        description="Every NashMPConfig field is a flag; flags override --config run.yaml. "
        "Runs unchanged under `accelerate launch`.",
    )
    add_train_arguments(tr)
    tr.set_defaults(func=cmd_train)

    from .eval import add_eval_arguments, cmd_eval

    ev = sub.add_parser(
        "eval",
        help="judged win-rate matrix of LLM policies (ref, runs/NAME/final, ...) and their KL to π_ref; needs nashmp[llm]",
        description="Default judge: embedding, semantic relevance under the offline all-MiniLM-L6-v2 — a different "
        "judge from the training oracle (default committee). Writes win_rates.csv/png, kl_ref.csv, eval.md into --out.",
    )
    add_eval_arguments(ev)
    ev.set_defaults(func=cmd_eval)
    return parser


#: libraries whose ValueError/TypeError/KeyError about a user's setting (peft: ``--lora-target-modules`` naming no
#: layer of the model; accelerate: a ``--report-to`` tracker it does not know) reach the user as one line
_SETUP_LIBRARIES = ("peft", "accelerate")


def _raised_in(exc: BaseException) -> str:
    """The top-level package of the function that raised ``exc`` (its innermost traceback frame)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]


def _one_line(exc: BaseException) -> str:
    """The message on one line (a YAML reader error or a library's message may span several)."""
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (CLIError, NashMPValueError, EquilibriumNotCertifiedError, InvalidParameterError, OSError) as exc:
        print(f"nashmp: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (JudgeError, FloatingPointError) as exc:  # a judge that keeps failing; a training run that diverged
        print(f"nashmp: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "nashmp: error: out of memory; use a smaller problem (fewer responses, contexts or rows).", file=sys.stderr
        )
        return 2
    except (ValueError, TypeError, KeyError) as exc:
        library = _raised_in(exc)
        if library not in _SETUP_LIBRARIES:
            raise
        print(f"nashmp: error: {library}: {_one_line(exc)[:500]}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
