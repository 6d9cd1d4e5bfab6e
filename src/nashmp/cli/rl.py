"""``nashmp rl train`` and ``nashmp rl eval``: MDPO on gymnasium, with presets, periodic evaluation, trackers,
checkpoints and resume, a light policy file, and evaluation of a saved policy (optionally on video)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._fields import coerce_fields
from ..errors import InvalidParameterError
from ..games.game import check_positive_int
from ._common import CLIError, Parser, check_param_targets, config_fields_help, params_for, parse_params

__all__ = ["rl_train", "rl_eval", "plot_learning_curve", "add_rl_parsers", "parse_env_kwargs"]

#: config fields set by their own flag (``--param`` refuses them, so that one setting has one spelling); the first
#: four are also left out of the fields listed by --help (their flags say it all)
_FLAGGED = {"env_id": "--env", "seed": "--seed", "total_steps": "--steps", "eval_episodes": "--eval-episodes",
            "eval_every": "--eval-every", "env_kwargs": "--env-kwargs", "wrappers": "--wrapper",
            "save_buffer": "--save-buffer"}  # fmt: skip
#: files of an earlier run that a fresh run (``--overwrite``) removes, so that none of them passes for its own
_RUN_FILES = ("best_policy.pt", "policy.pt", "eval.json", "curve.png", "tensorboard/events.out.tfevents.*",
              "checkpoint.pt.buffer/*.pt")  # fmt: skip


def plot_learning_curve(history: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    steps = [h["global_step"] for h in history]
    ax.plot(steps, [h["charts/episodic_return"] for h in history], lw=1.4, label="training episodes (last 10)")
    evals = [(h["global_step"], h["eval/mean_return"]) for h in history if "eval/mean_return" in h]
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", ms=3, lw=1, label="deterministic evaluation")
        ax.legend()
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_env_kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``['g=9.81', 'render_mode="rgb_array"']`` → ``{'g': 9.81, 'render_mode': 'rgb_array'}`` (JSON literals;
    a value that is not JSON is taken as a string)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise CLIError(f"--env-kwargs expects KEY=VALUE with VALUE a JSON literal, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Library warnings (a run shorter than one iteration, ...) printed as ``nashmp: warning: ...`` lines.

    Only the format changes (not ``showwarning``), so that a caller recording warnings still records them.
    """
    previous = warnings.formatwarning

    def one_line(message: Warning | str, *args: Any, **kwargs: Any) -> str:
        return f"nashmp: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _clear_old_run(out: Path) -> None:
    for pattern in _RUN_FILES:
        for path in out.glob(pattern):
            if path.is_file() and not path.is_symlink():
                path.unlink()


def rl_train(
    algo: str,
    env_id: str | None,
    steps: int,
    seed: int | None,
    out: Path,
    *,
    params: dict[str, Any],
    resume: bool,
    overwrite: bool = False,
    checkpoint_every: int,
    eval_episodes: int | None,
    progress: bool,
    preset: Sequence[str] = (),
    eval_every: int | None = None,
    report_to: str = "none",
    env_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[str] = (),
    save_buffer: str | None = None,
) -> dict[str, Any]:
    """Train (or resume); write ``metrics.csv`` (as it trains), ``checkpoint.pt``, ``policy.pt``,
    ``best_policy.pt`` (with ``eval_every``), ``curve.png`` and ``eval.json``."""
    from ..rl.checkpoint import read_checkpoint
    from ..rl.mdpo import MDPO, MDPOConfig
    from ..rl.mdpo_off import MDPOOff, MDPOOffConfig
    from ..rl.run_log import check_report_to

    agents: dict[str, tuple[Any, Any]] = {"mdpo": (MDPO, MDPOConfig), "mdpo-off": (MDPOOff, MDPOOffConfig)}
    if algo not in agents:
        raise ValueError(f"unknown RL algorithm {algo!r}; available: {sorted(agents)}")
    cls, config_cls = agents[algo]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:  # checked here, so that a TypeError inside a run is never mistaken for a bad --param
        raise InvalidParameterError(f"unknown --param {unknown} for {algo}; its fields are {sorted(fields)}.")
    params = coerce_fields(config_cls, params)  # `--param normalize=False` is the bool False, not a string
    for key in sorted(set(params) & set(_FLAGGED)):
        raise InvalidParameterError(f"--param {key}=... is set by {_FLAGGED[key]}; use that flag instead.")
    check_positive_int("steps", steps)
    check_positive_int("checkpoint_every", checkpoint_every)
    if eval_episodes is not None:
        check_positive_int("eval_episodes", eval_episodes)
    if seed is not None and seed < 0:
        raise InvalidParameterError(f"--seed must be ≥ 0, got {seed}.")
    check_report_to(report_to)
    if save_buffer is not None and algo != "mdpo-off":
        raise InvalidParameterError("--save-buffer applies to --algo mdpo-off (on-policy checkpoints hold no buffer).")
    flags: dict[str, Any] = {"eval_episodes": eval_episodes, "eval_every": eval_every, "save_buffer": save_buffer}
    flags = {k: v for k, v in flags.items() if v is not None}
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"--resume given but no checkpoint at {ckpt}")
        if preset:
            raise InvalidParameterError("--preset sets up a new run; a resumed run keeps its checkpoint's settings.")
        blob = read_checkpoint(ckpt)
        saved = blob["config"]
        given = (("--env", env_id, "env_id"), ("--seed", seed, "seed"), ("--env-kwargs", env_kwargs or None,
                 "env_kwargs"), ("--wrapper", list(wrappers) or None, "wrappers"))  # fmt: skip
        for flag, value, key in given:
            if value is not None and value != saved.get(key, {} if key == "env_kwargs" else []):
                raise InvalidParameterError(
                    f"{flag} {value!r} differs from the checkpoint's {saved.get(key)!r}; drop {flag} to resume, "
                    "or start a new run in another --out."
                )
        overrides = {"total_steps": steps, **({"env_id": env_id} if env_id else {}), **flags, **params}
        agent = cls.load(ckpt, blob=blob, **overrides)
    else:
        fields_given = {"env_id": env_id or "Pendulum-v1", "total_steps": steps, "seed": seed or 0,
                        "env_kwargs": dict(env_kwargs or {}), "wrappers": list(wrappers), **flags, **params}  # fmt: skip
        cfg = config_cls.from_preset(list(preset), **fields_given) if preset else config_cls(**fields_given)
        agent = cls(cfg)  # validates the environment first
        if ckpt.exists() and not overwrite:
            raise InvalidParameterError(
                f"{out} already holds a run ({ckpt.name}); pass --resume to continue it or --overwrite to start afresh."
            )
        _clear_old_run(out)
    # on-policy checkpoints count iterations, off-policy ones environment steps (and log every ~2% of the run)
    extra = {} if algo == "mdpo" else {"log_every": max(1, min(1000, steps // 50))}
    every = checkpoint_every if algo == "mdpo" else checkpoint_every * 1000
    with _one_line_warnings():
        history = agent.learn(out_dir=out, checkpoint_every=every, progress=progress, report_to=report_to, **extra)
    agent.save(ckpt)
    agent.save_policy(out / "policy.pt")
    if history:
        plot_learning_curve(history, out / "curve.png", f"{algo} on {agent.cfg.env_id}, seed {agent.cfg.seed}")
    returns = agent.evaluate(agent.cfg.eval_episodes)
    report = {
        "algo": algo,
        "env": agent.cfg.env_id,
        "steps": agent.progress.global_step,
        "seed": agent.cfg.seed,
        "preset": list(preset),
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "eval_episodes": len(returns),
        "eval_returns": [float(r) for r in returns],
        "best_eval_return": agent.progress.best_eval if agent.progress.best_eval > float("-inf") else None,
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report


def rl_eval(
    path: Path,
    *,
    episodes: int,
    seed: int,
    deterministic: bool = True,
    video: Path | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a policy file, a checkpoint or a run folder (its ``policy.pt``, else ``checkpoint.pt``)."""
    from ..rl.evaluation import check_video_support, evaluate_policy
    from ..rl.policy_file import load_policy

    check_positive_int("episodes", episodes)
    if seed < 0:
        raise InvalidParameterError(f"--seed must be ≥ 0, got {seed}.")
    if video is not None:
        check_video_support()  # before loading anything
    if path.is_dir():
        path = path / "policy.pt" if (path / "policy.pt").is_file() else path / "checkpoint.pt"
    policy = load_policy(path)
    result = evaluate_policy(policy, episodes, seed=seed, deterministic=deterministic, video_dir=video)
    report = {"path": str(path), "algo": policy.algo, "env": policy.env["env_id"], "seed": seed,
              "deterministic": deterministic, **result.summary()}  # fmt: skip
    if video is not None:
        report["video_dir"] = str(video)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


# --------------------------------------------------------------------------- argparse
def cmd_rl_train(args: argparse.Namespace) -> int:
    parsed = parse_params(args.param)
    check_param_targets(parsed, [args.algo], "algorithm")
    report = rl_train(
        args.algo,
        args.env,
        args.steps,
        args.seed,
        Path(args.out),
        params=params_for(args.algo, parsed),
        resume=args.resume,
        overwrite=args.overwrite,
        checkpoint_every=args.checkpoint_every,
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
        preset=args.preset or [],
        eval_every=args.eval_every,
        report_to=args.report_to,
        env_kwargs=parse_env_kwargs(args.env_kwargs),
        wrappers=args.wrapper or [],
        save_buffer=args.save_buffer,
    )
    print(json.dumps(report))
    return 0


def cmd_rl_eval(args: argparse.Namespace) -> int:
    report = rl_eval(
        Path(args.path),
        episodes=args.episodes,
        seed=args.seed,
        deterministic=not args.stochastic,
        video=Path(args.video) if args.video else None,
        out=Path(args.out) if args.out else None,
    )
    print(
        f"nashmp: {report['env']}: return {report['mean_return']:.2f} ± {report['std_return']:.2f} over "
        f"{report['episodes']} episodes",
        file=sys.stderr,
    )
    print(json.dumps(report))
    return 0


def _rl_help() -> str:
    from ..rl.envs import WRAPPERS
    from ..rl.mdpo import MDPOConfig
    from ..rl.mdpo_off import MDPOOffConfig
    from ..rl.presets import load_presets

    presets = load_presets()
    lines = ["presets (--preset NAME, repeatable; later ones win, --param wins over all; table in docs/rl.md):"]
    for algo, named in presets.items():
        for name, entry in named.items():
            text = f"{algo} {name}: {entry['description']}"
            lines.extend(textwrap.wrap(text, width=100, initial_indent="  ", subsequent_indent="      "))
    skip = ("env_id", "seed", "total_steps", "eval_episodes")
    return "\n\n".join(
        [
            "\n".join(lines),
            "wrappers (--wrapper NAME[:key=value,...]): " + ", ".join(sorted(WRAPPERS)),
            "--algo mdpo: " + config_fields_help(MDPOConfig, skip=skip),
            "--algo mdpo-off: " + config_fields_help(MDPOOffConfig, skip=skip),
        ]
    )


def add_rl_parsers(sub: Any) -> None:
    """``nashmp rl train`` and ``nashmp rl eval`` on the top-level subparsers ``sub``."""
    rl = sub.add_parser("rl", help="reinforcement learning with MDPO (needs gymnasium)")
    rl_sub = rl.add_subparsers(dest="rl_command", required=True, parser_class=Parser)
    t = rl_sub.add_parser(
        "train",
        help="train MDPO; writes OUT/{metrics.csv,curve.png,checkpoint.pt,policy.pt,eval.json}",
        epilog_factory=_rl_help,
    )
    t.add_argument("--algo", default="mdpo", choices=["mdpo", "mdpo-off"], help="on-policy or off-policy MDPO")
    t.add_argument(
        "--env", default=None, help="gymnasium environment id (default Pendulum-v1; on --resume the saved one)"
    )
    t.add_argument("--steps", type=int, required=True, help="total environment steps")
    t.add_argument("--seed", type=int, default=None, help="seed (default 0; on --resume the saved one)")
    t.add_argument("--preset", action="append", metavar="NAME", help="named settings from presets.json (listed below)")
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help="MDPOConfig/MDPOOffConfig field")
    t.add_argument("--env-kwargs", action="append", metavar="KEY=VALUE", help="gym.make keyword (JSON value)")
    t.add_argument("--wrapper", action="append", metavar="NAME[:k=v,...]", help="gymnasium wrapper (allow-list below)")
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--overwrite", action="store_true", help="start afresh even if OUT holds a checkpoint")
    t.add_argument(
        "--checkpoint-every", type=int, default=10, help="iterations (mdpo) or thousands of steps (mdpo-off)"
    )
    t.add_argument("--eval-every", type=int, default=None, help="evaluate every N iterations (mdpo) / steps (mdpo-off)")
    t.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default 10)")
    t.add_argument("--report-to", default="none", choices=["none", "tensorboard"], help="tracker (OUT/tensorboard)")
    t.add_argument(
        "--save-buffer",
        default=None,
        choices=["full", "incremental", "none"],
        help="mdpo-off: replay buffer in checkpoints",
    )
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_rl_train)

    e = rl_sub.add_parser(
        "eval",
        help="evaluate a policy.pt / checkpoint.pt / run folder: returns (mean ± std, per episode), optional video",
        description="Deterministic episodes on a fresh copy of the training environment, reset with seeds "
        "SEED, SEED+1, ...; prints a JSON report. --video records each episode (needs moviepy; MuJoCo without a "
        "display: MUJOCO_GL=egl).",
    )
    e.add_argument("path", help="policy.pt, best_policy.pt, checkpoint.pt or a run folder")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=10_000, help="seed of the first episode (default 10000, as training)")
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean action")
    e.add_argument("--video", default=None, metavar="DIR", help="record the episodes as MP4 into DIR")
    e.add_argument("--out", default=None, metavar="FILE", help="also write the JSON report to FILE")
    e.set_defaults(func=cmd_rl_eval)
