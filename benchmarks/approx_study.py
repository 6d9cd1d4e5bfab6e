r"""Study of the approximate recipes (faithful / practical Nash-MP and the sampled baselines) at fixed query budgets.

What it runs (all games: ``num_games=4`` contexts, n = 20 responses — n = 21 for ``rps``, which needs a
multiple of 3 — game seed 0; one *query* is one compared pair, i.e. one oracle call; metrics are the
exact KL(π*_β‖π_θ), exploitability 𝓔_β(π_θ) and span(log π_θ − log π*_β), ρ-weighted over contexts):

``tune``      one family (random, β = 0.1), budget 10^4, 2 tuning seeds (100, 101), per recipe the grid
              lr ∈ {0.01, 0.03, 0.1, 0.3} (Adam) × batch_size ∈ {32, 128}, and also inner_steps ∈ {5, 20}
              (faithful), opponent ∈ {ema, self, half} × ema ∈ {0.01, 0.05, 0.2} (practical), mixture ∈
              {0.25, 0.5} (nash-md-pg). The best setting of each recipe = lowest mean KL over the 2 seeds.
``main``      every recipe at its best setting on random / cyclic / rps / skew × β ∈ {0.01, 0.1},
              evaluation seeds 0–4, KL etc. read at 10^4 and 10^5 queries (one 10^5 run per seed: no recipe
              has a budget-dependent schedule, so the state at the first evaluation with ≥ 10^4 queries is
              exactly that of a run with budget 10^4).
``inner``     faithful inner_steps M ∈ {1, 2, 5, 10, 20, 50} and practical ema κ ∈ {0.005, …, 0.5}, other
              fields at the recipe's best setting, on random and cyclic at β = 0.1, seeds 0–4, 10^5 queries.
``variants``  practical at its best setting, kl_estimator ∈ {sampled, analytic} × baseline ∈ {half, learned},
              random and cyclic at β = 0.1, seeds 0–4.
``transfer``  sensitivity check: lr ∈ {0.01, 0.03, 0.1, 0.3} for every recipe (other fields at the best
              setting found at β = 0.1) on random and cyclic at β = 0.01, seeds 0–4 (hindsight, not held out).
``confirm``   follow-up to ``inner``: practical at its best setting but with a slow EMA anchor (ema = 0.01;
              also lr = 0.01 at β = 0.01) on every family × β, seeds 0–4, with the cyclic trajectories.

Runs go through a ``multiprocessing`` pool of ``--workers`` (2) processes, torch 1 thread each.

Command (from the repository root; ~45 min measured on 2 cores, partly shared with other jobs)::

    .venv/bin/python benchmarks/approx_study.py
    .venv/bin/python benchmarks/approx_study.py --quick        # smoke test (~1 min), writes to /tmp/approx_study_quick
    .venv/bin/python benchmarks/approx_study.py --report-only  # redo tables and plots from the CSV files
    .venv/bin/python benchmarks/approx_study.py --stages confirm  # one stage (later stages read approx_study_best.csv)

Outputs: ``benchmarks/results/approx_study_{tuning,best,main,curves,inner,variants,transfer,confirm,confirm_curves}.csv``, the
tables in ``benchmarks/results/approx_study.md`` and the plots ``docs/img/approx/*.png``. This file runs the
stages; ``benchmarks/_approx_report.py`` holds the settings, the CSV format, the tables and the plots. The CSV
files keep the study's recipe labels (``practical``, ``faithful``, ``nash-md-pg``, field ``mixture``), which
predate the one online family; :func:`current_params` translates them to today's names for each run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _approx_report import (  # noqa: E402  (the report module: settings, CSV format, tables, plots)
    METRIC_KEYS,
    RECIPES,
    ROOT,
    TUNED,
    game_n,
    read_csv,
    report,
    settings,
    tuning_grid,
    write_csv,
)

# ----------------------------------------------------------------------------------------------- workers
#: The study's recipe labels and its ``mixture`` column predate the one online family (``nashmp.online``),
#: and its CSV files and tables keep them; runs translate them to today's names (``FORMER_NAMES``).
CURRENT_FIELD = {"mixture": "mixture_coef"}


def current_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (study labels) as ``ApproxConfig`` fields of today."""
    from nashmp.approx.recipes import FORMER_NAMES

    out = {CURRENT_FIELD.get(k, k): v for k, v in params.items()}
    out["recipe"] = FORMER_NAMES.get(params["recipe"], params["recipe"])
    return out


_CACHE: dict[tuple[str, int, int, float], Any] = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _game(family: str, n: int, num_games: int, beta: float) -> Any:
    key = (family, n, num_games, beta)
    if key not in _CACHE:
        from nashmp import make_game, solve_equilibrium

        game = make_game(family, n, beta, num_games=num_games, seed=0)
        _CACHE[key] = (game, solve_equilibrium(game))
    return _CACHE[key]


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """One ``run_approx`` call; returns the task with its metric series."""
    from nashmp.approx.runner import run_approx

    game, eq = _game(task["family"], task["n"], task["num_games"], task["beta"])
    t0 = time.perf_counter()
    tr = run_approx(game, None, task["budget"], equilibrium=eq, evals=task["evals"], **current_params(task["params"]))
    out = dict(task)
    out["seconds"] = time.perf_counter() - t0
    out["queries"] = tr.queries.astype(int).tolist()
    for k in METRIC_KEYS:
        out[k] = tr.metrics[k].astype(float).tolist()
    return out


def run_pool(tasks: list[dict[str, Any]], workers: int, label: str) -> list[dict[str, Any]]:
    """Run ``tasks`` on ``workers`` processes (spawned, torch 1 thread each), in task order."""
    t0 = time.perf_counter()
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    indexed = [dict(t, _i=i) for i, t in enumerate(tasks)]
    # slowest first (small batches and many inner steps take the most optimiser steps per query)
    indexed.sort(key=lambda t: -t["budget"] / t["params"].get("batch_size", 64))
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for done, res in enumerate(pool.imap_unordered(run_task, indexed, chunksize=1), 1):
            results[res.pop("_i")] = res
            if done % 25 == 0 or done == len(tasks):
                print(f"  [{label}] {done}/{len(tasks)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    return [r for r in results if r is not None]


# ----------------------------------------------------------------------------------------------- CSV
def at_budget(res: dict[str, Any], budget: int) -> dict[str, float]:
    """Metrics at the first evaluation with at least ``budget`` queries (the last one if none)."""
    q = np.asarray(res["queries"])
    idx = int(np.argmax(q >= budget)) if (q >= budget).any() else len(q) - 1
    return {"queries": int(q[idx]), **{k: res[k][idx] for k in METRIC_KEYS}}


def config_row(params: dict[str, Any]) -> dict[str, Any]:
    from nashmp.approx.recipes import ApproxConfig

    cfg = ApproxConfig(**current_params(params)).to_dict()
    return {"recipe": params["recipe"], **{k: cfg[CURRENT_FIELD.get(k, k)] for k in TUNED}}


def budget_rows(
    results: Iterable[dict[str, Any]], budgets: Sequence[int], labels: Sequence[str]
) -> list[dict[str, Any]]:
    rows = []
    for res in results:
        for b in budgets:
            rows.append(
                {
                    **{k: res[k] for k in labels},
                    "n": res["n"],
                    **config_row(res["params"]),
                    "seed": res["params"]["seed"],
                    "budget": b,
                    **at_budget(res, b),
                    "seconds": res["seconds"],
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------- stages
def task(
    s: dict[str, Any],
    family: str,
    beta: float,
    budget: int,
    params: dict[str, Any],
    evals: int | None = None,
    **labels: Any,
) -> dict[str, Any]:
    return {
        "family": family,
        "n": game_n(family, s["n"]),
        "num_games": s["num_games"],
        "beta": beta,
        "budget": budget,
        "evals": evals or s["evals"],
        "params": params,
        **labels,
    }


def stage_tune(s: dict[str, Any], workers: int, out: Path) -> dict[str, dict[str, Any]]:
    tasks = [
        task(s, "random", 0.1, s["tune_budget"], {**p, "seed": seed}, evals=10, stage="tune")
        for recipe in RECIPES
        for p in tuning_grid(s, recipe)
        for seed in s["tune_seeds"]
    ]
    rows = budget_rows(run_pool(tasks, workers, "tune"), [s["tune_budget"]], ["family", "beta"])
    write_csv(out / "approx_study_tuning.csv", rows)
    return select_best(rows, out)


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(r[k] for k in ("recipe", *TUNED))


def select_best(rows: list[dict[str, Any]], out: Path) -> dict[str, dict[str, Any]]:
    """Best setting per recipe: lowest mean KL over the tuning seeds (a diverged run counts as +inf)."""
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in rows:
        kl = float(r["kl_to_star"])
        groups[_key(r)].append(kl if math.isfinite(kl) else math.inf)
    best: dict[str, dict[str, Any]] = {}
    for key, kls in groups.items():
        cfg = dict(zip(("recipe", *TUNED), key, strict=True))
        mean = float(np.mean(kls))
        if cfg["recipe"] not in best or mean < best[cfg["recipe"]]["tune_kl"]:
            best[cfg["recipe"]] = {
                **cfg,
                "tune_kl": mean,
                "tune_kl_std": float(np.std(kls, ddof=1)) if len(kls) > 1 else 0.0,
            }
    rows_best = [best[r] for r in RECIPES if r in best]
    write_csv(out / "approx_study_best.csv", rows_best)
    return {r["recipe"]: r for r in rows_best}


def best_params(best: dict[str, dict[str, Any]], recipe: str, **overrides: Any) -> dict[str, Any]:
    b = best[recipe]
    return {"recipe": recipe, **{k: b[k] for k in TUNED}, **overrides}


def stage_main(s: dict[str, Any], best: dict[str, dict[str, Any]], workers: int, out: Path) -> None:
    budget = max(s["budgets"])
    tasks = [
        task(s, fam, beta, budget, best_params(best, recipe, seed=seed))
        for fam in s["families"]
        for beta in s["betas"]
        for recipe in RECIPES
        for seed in s["seeds"]
    ]
    results = run_pool(tasks, workers, "main")
    write_csv(out / "approx_study_main.csv", budget_rows(results, s["budgets"], ["family", "beta"]))
    write_csv(out / "approx_study_curves.csv", curve_rows(s, results, lambda res: res["params"]["recipe"]))


def curve_rows(
    s: dict[str, Any], results: Iterable[dict[str, Any]], label: Callable[[dict[str, Any]], str]
) -> list[dict[str, Any]]:
    """Whole metric series of the runs on the curve family (for the mean ± std band plot)."""
    return [
        {
            "family": res["family"],
            "beta": res["beta"],
            "recipe": label(res),
            "seed": res["params"]["seed"],
            "queries": q,
            **{k: res[k][t] for k in METRIC_KEYS},
        }
        for res in results
        if res["family"] == s["curve_family"]
        for t, q in enumerate(res["queries"])
    ]


def stage_inner(s: dict[str, Any], best: dict[str, dict[str, Any]], workers: int, out: Path) -> None:
    budget, beta = max(s["budgets"]), s["sweep_beta"]
    tasks = []
    for fam in s["sweep_families"]:
        for seed in s["seeds"]:
            for m in s["inner_steps"]:
                p = best_params(best, "faithful", inner_steps=m, seed=seed)
                tasks.append(task(s, fam, beta, budget, p, sweep="inner_steps", value=m))
            for k in s["emas"]:
                p = best_params(best, "practical", ema=k, seed=seed)
                tasks.append(task(s, fam, beta, budget, p, sweep="ema", value=k))
    rows = budget_rows(run_pool(tasks, workers, "inner"), s["budgets"], ["sweep", "value", "family", "beta"])
    write_csv(out / "approx_study_inner.csv", rows)


def stage_variants(s: dict[str, Any], best: dict[str, dict[str, Any]], workers: int, out: Path) -> None:
    budget, beta = max(s["budgets"]), s["sweep_beta"]
    tasks = [
        task(
            s,
            fam,
            beta,
            budget,
            best_params(best, "practical", kl_estimator=ke, baseline=bl, seed=seed),
            variant=f"{ke}/{bl}",
        )
        for fam in s["sweep_families"]
        for ke in ("sampled", "analytic")
        for bl in ("half", "learned")
        for seed in s["seeds"]
    ]
    rows = budget_rows(run_pool(tasks, workers, "variants"), s["budgets"], ["variant", "family", "beta"])
    write_csv(out / "approx_study_variants.csv", rows)


def stage_transfer(s: dict[str, Any], best: dict[str, dict[str, Any]], workers: int, out: Path) -> None:
    budget, beta = max(s["budgets"]), s["transfer_beta"]
    tasks = [
        task(s, fam, beta, budget, best_params(best, recipe, lr=lr, seed=seed))
        for fam in s["sweep_families"]
        for recipe in RECIPES
        for lr in s["lrs"]
        for seed in s["transfer_seeds"]
    ]
    rows = budget_rows(run_pool(tasks, workers, "transfer"), s["budgets"], ["family", "beta"])
    write_csv(out / "approx_study_transfer.csv", rows)


def stage_confirm(s: dict[str, Any], best: dict[str, dict[str, Any]], workers: int, out: Path) -> None:
    budget = max(s["budgets"])
    tasks = [
        task(s, fam, beta, budget, best_params(best, **over, seed=seed), variant=label)
        for label, over, betas in s["confirm"]
        for fam in s["families"]
        for beta in betas
        for seed in s["seeds"]
    ]
    results = run_pool(tasks, workers, "confirm")
    write_csv(out / "approx_study_confirm.csv", budget_rows(results, s["budgets"], ["variant", "family", "beta"]))
    first = s["confirm"][0][0]
    curves = curve_rows(s, [r for r in results if r["variant"] == first], lambda res: res["variant"])
    write_csv(out / "approx_study_confirm_curves.csv", curves)


# ----------------------------------------------------------------------------------------------- main
def provenance() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    src = sorted((ROOT / "src" / "nashmp" / "approx").glob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in src)).hexdigest()[:12]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": "none" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "commit": commit,
        "approx_src_sha256": digest,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny smoke version (n=6, 2 seeds, 2000 queries)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--stages", default="tune,main,inner,variants,transfer,confirm", help="comma-separated subset to (re)run"
    )
    ap.add_argument("--report-only", action="store_true", help="only rebuild tables and plots from the CSV files")
    ap.add_argument("--out", type=Path, default=None, help="CSV/markdown directory (default benchmarks/results)")
    ap.add_argument("--img", type=Path, default=None, help="plot directory (default docs/img/approx)")
    args = ap.parse_args(argv)
    s = settings(args.quick)
    quick_dir = Path("/tmp/approx_study_quick")
    out = args.out or (quick_dir if args.quick else ROOT / "benchmarks" / "results")
    img = args.img or (quick_dir / "img" if args.quick else ROOT / "docs" / "img" / "approx")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    meta_path = out / "approx_study_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.report_only:
        stages = args.stages.split(",")
        meta.update(provenance())
        cmd = "python benchmarks/approx_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
        meta.setdefault("commands", {}).update(dict.fromkeys(stages, cmd.strip()))
        wall = meta.setdefault("wall_seconds", {})
        best = None
        for name in stages:
            t0 = time.perf_counter()
            print(f"stage {name}", flush=True)
            if name == "tune":
                best = stage_tune(s, args.workers, out)
            else:
                if best is None:
                    best = {r["recipe"]: r for r in read_csv(out / "approx_study_best.csv")}
                {
                    "main": stage_main,
                    "inner": stage_inner,
                    "variants": stage_variants,
                    "transfer": stage_transfer,
                    "confirm": stage_confirm,
                }[name](s, best, args.workers, out)
            wall[name] = round(time.perf_counter() - t0, 1)
            meta_path.write_text(json.dumps(meta, indent=1))
    print(report(s, out, img, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
