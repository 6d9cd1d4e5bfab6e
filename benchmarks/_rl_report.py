"""Tables, plots and statistics of ``benchmarks/rl_vs_sb3.py``, rebuilt from the committed per-run files.

A **run file** (``benchmarks/results/rl_vs_sb3/runs/<key>.json``, a few KB) holds one finished run: its row of
``rl_vs_sb3_runs.csv``, its evaluation returns, its learning curve and its KL per iteration (both downsampled
to at most ``MAX_POINTS`` points; the medians are taken on the full series first). Rows that predate the run
files (the old ``rl_vs_sb3_runs.csv`` + ``rl_vs_sb3_curves.csv``) were converted once into
``benchmarks/results/rl_vs_sb3/legacy/`` by :func:`convert_legacy`; the report reads both folders.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import command_line, machine, md_table

ROOT = Path(__file__).resolve().parent.parent
MAX_POINTS = 100  # per series in a run file
BASE_ALGOS: dict[str, tuple[str, str, str]] = {  # base name → (family, library, label)
    "mdpo": ("on-policy", "nashmp", "MDPO"),
    "ppo": ("on-policy", "sb3", "PPO"),
    "trpo": ("on-policy", "sb3-contrib", "TRPO"),
    "mdpo-off": ("off-policy", "nashmp", "MDPO-off"),
    "sac": ("off-policy", "sb3", "SAC"),
}
WARMUP = {"mdpo": 0, "ppo": 0, "trpo": 0, "mdpo-off": 10_000, "sac": 100}  # default random-action steps
ROW_KEYS = ("env", "family", "algo", "library", "steps", "seed", "steps_done", "eval_mean", "eval_std",
            "eval_episodes", "sps", "learning_starts", "steady_sps", "train_wall_s", "eval_wall_s",
            "train_episodes", "started", "loadavg_end_1min")  # fmt: skip
COLORS = {"mdpo": "tab:blue", "mdpo:release": "tab:green", "mdpo:release-run-budget": "tab:purple", "ppo": "tab:orange",
          "trpo": "tab:red", "mdpo-off": "tab:blue", "sac": "tab:orange"}  # fmt: skip
EXTRA_COLORS = ["tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


# ------------------------------------------------------------------------------------------------ algorithms
def base_of(algo: str) -> str:
    return algo.partition(":")[0]


def algo_info(algo: str) -> tuple[str, str, str]:
    """(family, library, label) of ``mdpo``, ``mdpo:<preset>``, ``ppo``, ``trpo``, ``mdpo-off[:<preset>]``, ``sac``."""
    base, _, preset = algo.partition(":")
    family, library, label = BASE_ALGOS[base]
    return family, library, f"{label} ({preset})" if preset else label


def algo_order(algo: str) -> tuple[int, str]:
    return list(BASE_ALGOS).index(base_of(algo)), algo


def color(algo: str) -> str:
    if algo in COLORS:
        return COLORS[algo]
    return EXTRA_COLORS[sum(map(ord, algo)) % len(EXTRA_COLORS)]


def warmup_of(run: dict[str, Any]) -> int:
    ls = run.get("learning_starts")
    return WARMUP[base_of(run["algo"])] if ls is None or algo_info(run["algo"])[0] == "on-policy" else int(ls)


# ------------------------------------------------------------------------------------------------ run files
def downsample(points: Sequence[Sequence[float]], n: int = MAX_POINTS) -> list[list[float]]:
    """At most ``n`` points, evenly spaced by index, first and last kept (equal lengths give equal steps)."""
    if len(points) <= n:
        return [list(p) for p in points]
    idx = np.unique(np.round(np.linspace(0, len(points) - 1, n)).astype(int))
    return [list(points[i]) for i in idx]


def _round(x: Any, digits: int = 5) -> Any:
    """``digits`` significant digits; non-finite floats become None (strict JSON)."""
    if isinstance(x, float):
        return float(f"{x:.{digits}g}") if math.isfinite(x) else None
    return x


def phase_sps(curve: Sequence[Sequence[float]], warmup: int) -> tuple[float, float]:
    """(warm-up, steady) env-steps/s from the per-interval speeds of a full-resolution curve.

    Steady: median over the second half of the intervals that start after the warm-up; warm-up: median over
    the intervals that end within it (nan if none).
    """
    starts = [0.0, *[c[0] for c in curve[:-1]]]
    after = [c[2] for s, c in zip(starts, curve, strict=True) if s >= warmup and np.isfinite(c[2]) and c[2] > 0]
    during = [c[2] for c in curve if c[0] <= warmup and np.isfinite(c[2]) and c[2] > 0]
    steady = float(np.median(after[len(after) // 2 :])) if after else math.nan
    return (float(np.median(during)) if during else math.nan), steady


def run_record(full: dict[str, Any], key: str) -> dict[str, Any]:
    """The small, committed form of a finished run (``full``: what the worker measured, full resolution)."""
    warm, steady = phase_sps(full["curve"], warmup_of(full))
    kl = [(int(s), float(v)) for s, v in full.get("kl", []) if v is not None and math.isfinite(v)]
    kl_values = np.array([v for _, v in kl])
    row = {
        **{k: full[k] for k in ROW_KEYS if k in full},
        "learning_starts": warmup_of(full),
        "steady_sps": steady,
        "loadavg_end_1min": full["loadavg_end"][0] if "loadavg_end" in full else full.get("loadavg_end_1min"),
    }
    return {
        "key": key,
        "source": full.get("source", "run"),
        "label": algo_info(full["algo"])[2],
        **{k: _round(v) if isinstance(v, float) else v for k, v in row.items()},
        "warmup_sps": _round(warm),
        "kl_name": full.get("kl_name"),
        "kl_iterations": len(kl),
        "kl_median": _round(float(np.median(kl_values))) if len(kl) else None,
        "kl_q25_q75": [_round(float(q)) for q in np.quantile(kl_values, [0.25, 0.75])] if len(kl) else None,
        "eval_returns": [_round(float(x)) for x in full.get("eval_returns", [])],
        "config": full.get("config"),
        "versions": full.get("versions"),
        "curve": [[int(s), _round(float(r)), _round(float(v))] for s, r, v in downsample(full["curve"])],
        "kl": [[int(s), _round(float(v), 4)] for s, v in downsample(kl)],
    }


def write_record(record: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['key']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def load_records(folders: Iterable[Path | None]) -> list[dict[str, Any]]:
    out = []
    for folder in folders:
        if folder is not None and folder.is_dir():
            out += [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return out


def convert_legacy(runs_csv: Path, curves_csv: Path, folder: Path, key_of: Any) -> int:
    """One record per row of the pre-run-file ``rl_vs_sb3_runs.csv`` (curves from ``rl_vs_sb3_curves.csv``)."""
    curves: dict[tuple[str, str, int, int], list[list[float]]] = defaultdict(list)
    with curves_csv.open() as f:
        for c in csv.DictReader(f):
            k = (c["env"], c["algo"], int(c["steps"]), int(c["seed"]))
            curves[k].append([int(c["global_step"]), float(c["train_return"]), float(c["sps"])])
    n = 0
    with runs_csv.open() as f:
        for row in csv.DictReader(f):
            full: dict[str, Any] = dict(row)
            for k in ("steps", "seed", "steps_done", "eval_episodes", "learning_starts", "train_episodes"):
                full[k] = int(row[k])
            for k in ("eval_mean", "eval_std", "sps", "train_wall_s", "eval_wall_s", "loadavg_end_1min"):
                full[k] = float(row[k])
            full["curve"] = curves[(row["env"], row["algo"], full["steps"], full["seed"])]
            full["source"] = "legacy rl_vs_sb3_runs.csv (before per-run files; no KL series)"
            ls = full["learning_starts"] if full["learning_starts"] != WARMUP[row["algo"]] else None
            key = key_of(row["env"], row["algo"], full["steps"], full["seed"], full["eval_episodes"], ls)
            write_record(run_record(full, key), folder)
            n += 1
    return n


# ------------------------------------------------------------------------------------------------ statistics
def _fmt(mean: float, std: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def _nanmean(x: Any) -> float:
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def rank_test(variant: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """One-sided Mann-Whitney U (H1: the variant's returns are stochastically larger), scipy's default method."""
    from scipy.stats import mannwhitneyu

    out: dict[str, Any] = {"n_variant": len(variant), "n_baseline": len(baseline), "U": None, "p_greater": None}
    if len(variant) and len(baseline):
        res = mannwhitneyu(list(variant), list(baseline), alternative="greater")
        out["U"], out["p_greater"] = float(res.statistic), float(res.pvalue)
    return out


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["env"], r["algo"], r["steps"], r["eval_episodes"], warmup_of(r))].append(r)
    rows = []
    for (env, algo, steps, episodes, warmup), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], algo_order(kv[0][1]), kv[0][2])
    ):
        means = np.array([r["eval_mean"] for r in rs])
        sps = np.array([r["sps"] for r in rs])
        family, library, label = algo_info(algo)
        rows.append(
            {
                "env": env,
                "family": family,
                "algo": algo,
                "label": label,
                "library": library,
                "steps": steps,
                "seeds": len(rs),
                "seed_list": " ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"])),
                "eval_episodes": episodes,
                "learning_starts": warmup,
                "return_mean": float(means.mean()),
                "return_std": float(means.std(ddof=1)) if len(rs) > 1 else math.nan,
                "return_min": float(means.min()),
                "return_max": float(means.max()),
                "sps_mean": float(sps.mean()),
                "sps_std": float(sps.std(ddof=1)) if len(rs) > 1 else math.nan,
                "warmup_sps": _nanmean([r.get("warmup_sps", math.nan) for r in rs]),
                "steady_sps": _nanmean([r.get("steady_sps", math.nan) for r in rs]),
                "train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in rs])),
                "kl_median": _nanmean([r["kl_median"] for r in rs if r.get("kl_median") is not None]),
            }
        )
    return rows


def estimate_hours(algo: str, full: int, warm_sps: float, steady_sps: float) -> float:
    warmup = min(WARMUP[base_of(algo)], full)
    warm = warmup / warm_sps if warmup and np.isfinite(warm_sps) else warmup / steady_sps
    return (warm + (full - warmup) / steady_sps) / 3600


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------------------------------------------------ plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(rs: list[dict[str, Any]], series: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    grid = sorted(set.intersection(*(set(int(c[0]) for c in r[series]) for r in rs))) if rs else []
    if not grid:
        return None
    ys = np.array([[dict((int(c[0]), c[1]) for c in r[series])[s] for s in grid] for r in rs], float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array(grid), np.nanmean(ys, 0), np.nanstd(ys, 0)


def plot_curves(title: str, panels: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Training-return curves, mean ± std band over seeds; one panel per family (its largest budget)."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter

    panels = {f: rs for f, rs in panels.items() if rs}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), constrained_layout=True, squeeze=False)
    for ax, (family, fam) in zip(axes[0], panels.items(), strict=True):
        steps = max(r["steps"] for r in fam)
        for algo in sorted({r["algo"] for r in fam}, key=algo_order):
            rs = [r for r in fam if r["algo"] == algo and r["steps"] == steps]
            band = _band(rs, "curve")
            if band is None:
                continue
            x, mean, std = band
            ax.plot(
                x,
                mean,
                color=color(algo),
                lw=1.5,
                label=f"{algo_info(algo)[2]}, {len(rs)} seed{'s' if len(rs) > 1 else ''}",
            )
            ax.fill_between(x, mean - std, mean + std, color=color(algo), alpha=0.15, lw=0)
        ax.set_title(f"{title}, {family}, {steps:,} steps", fontsize=10)
        ax.set_xlabel("environment steps (thousands)")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}"))
        ax.set_ylabel("training return (last 10 episodes)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_kl(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """KL per iteration against env steps, median over seeds, one panel per env (log scale)."""
    runs = [r for r in runs if r.get("kl")]
    envs = sorted({r["env"] for r in runs})
    if not envs:
        return None
    plt = _plt()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.4), constrained_layout=True, squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for algo in sorted({r["algo"] for r in runs if r["env"] == env}, key=algo_order):
            rs = [r for r in runs if r["env"] == env and r["algo"] == algo]
            steps = max(r["steps"] for r in rs)
            rs = [r for r in rs if r["steps"] == steps]
            grid = sorted(set.intersection(*(set(int(c[0]) for c in r["kl"]) for r in rs)))
            if not grid:
                continue
            ys = np.array([[dict((int(c[0]), c[1]) for c in r["kl"])[s] for s in grid] for r in rs], float)
            ax.plot(grid, np.median(ys, 0), color=color(algo), lw=1.2, label=f"{algo_info(algo)[2]} ({len(rs)})")
        ax.set_yscale("log")
        ax.set_title(f"{env}: KL per iteration (median over seeds)", fontsize=10)
        ax.set_xlabel("environment steps (thousands)")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}"))
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ reports
def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def general_report(runs: list[dict[str, Any]], results: Path, img: Path, hyper: dict[str, str], sources: str) -> None:
    """``rl_vs_sb3_{runs,curves,summary}.csv``, ``rl_vs_sb3.md``, ``rl_vs_sb3_meta.json``, one figure per env."""
    if not runs:
        print("no run files")
        return
    results.mkdir(parents=True, exist_ok=True)
    _write_csv(results / "rl_vs_sb3_runs.csv", [{k: r.get(k) for k in ROW_KEYS} for r in runs])
    curves = [
        {"env": r["env"], "algo": r["algo"], "library": r["library"], "steps": r["steps"], "seed": r["seed"]}
        | {"global_step": int(c[0]), "train_return": c[1], "sps": c[2]}
        for r in runs
        for c in r["curve"]
    ]
    _write_csv(results / "rl_vs_sb3_curves.csv", curves)
    summary = summarise(runs)
    _write_csv(results / "rl_vs_sb3_summary.csv", summary)
    images = []
    for env in sorted({r["env"] for r in runs}):
        er = [r for r in runs if r["env"] == env]
        panels = {f: [r for r in er if r["family"] == f] for f in ("on-policy", "off-policy")}
        p = plot_curves(env, panels, img / f"rl_vs_sb3_{env}.png")
        if p is not None:
            images.append(p)
    sb3 = _version("stable_baselines3")
    table = md_table(
        [
            "env",
            "family",
            "algorithm",
            "library",
            "steps",
            "seeds",
            "final eval return",
            "env-steps/s",
            "train time/run",
        ],
        [
            [
                s["env"],
                s["family"],
                s["label"],
                "nashmp" if s["library"] == "nashmp" else f"{s['library']} {sb3}",
                f"{s['steps']:,}",
                s["seeds"],
                _fmt(s["return_mean"], s["return_std"]),
                _fmt(s["sps_mean"], s["sps_std"]),
                f"{s['train_wall_s_mean'] / 60:.1f} min",
            ]  # fmt: skip
            for s in summary
        ],
        ["l", "l", "l", "l", "r", "r", "r", "r", "r"],
    )
    est_rows = []
    for s in summary:
        full = 1_000_000 if s["family"] == "on-policy" else 100_000
        steady = s["steady_sps"] if np.isfinite(s["steady_sps"]) else s["sps_mean"]
        hours = estimate_hours(s["algo"], full, s["warmup_sps"], steady)
        est_rows.append([s["env"], s["label"], f"{s['steps']:,}", f"{steady:.0f}", f"{full:,}", f"{hours:.2f} h"])
    est = md_table(["env", "algorithm", "measured at", "steady env-steps/s", "issue-12 budget", "per run"], est_rows)
    m = machine()
    lines = [
        "# nashmp MDPO vs Stable-Baselines3 (PPO, TRPO, SAC): every run",
        "",
        f"Written by `benchmarks/rl_vs_sb3.py` ({command_line()}) from the run files in {sources}.",
        f"Report built with Stable-Baselines3 {sb3}, sb3-contrib {_version('sb3_contrib')}, {m['cpu']}, "
        f"{m['cores']} cores; nashmp at {m['nashmp']} (each run file records its own versions).",
        "",
        "Final eval return: mean ± sample std over seeds of the per-seed mean of deterministic evaluation "
        "episodes (seeds 10000+i, frozen observation normalisation). env-steps/s: training steps / wall time of "
        "`learn()` on a shared machine.",
        "",
        table,
        "",
        "## Hyper-parameters",
        "",
        *[f"* **{a}**: {h}" for a, h in hyper.items()],
        "",
        "## Wall-time estimate per run at the issue-12 budgets (1M on-policy, 100k off-policy)",
        "",
        est,
        "",
        "## Learning curves",
        "",
        *[f"![{p.stem}]({os.path.relpath(p, results)})" for p in images],
        "",
    ]
    (results / "rl_vs_sb3.md").write_text("\n".join(lines))
    meta = {
        "command": command_line(),
        "machine": m,
        "stable_baselines3": sb3,
        "sb3_contrib": _version("sb3_contrib"),
        "hyperparameters": hyper,
        "runs": len(runs),
        "summary": summary,
        "images": [_rel(p) for p in images],
    }
    (results / "rl_vs_sb3_meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    print(table)


def plan_report(
    name: str,
    plan: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    results: Path,
    img: Path,
    baselines: dict[str, str],
    command: str,
) -> dict[str, Any]:
    """The report of one planned suite (``plan``: its tasks): progress, table, per-seed values, rank tests,
    median KL per iteration, curves and KL plots. Writes ``rl_vs_sb3_<name>.{md,json}`` and
    ``<img>/rl_<name>_*.png``; returns the JSON payload."""
    by_key = {r["key"]: r for r in runs}
    done = [by_key[t["key"]] for t in plan if t["key"] in by_key]
    cells: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for t in plan:
        cells[(t["family"], t["env"], t["algo"], t["steps"])].append(t)
    families = list(dict.fromkeys(t["family"] for t in plan))
    out: dict[str, Any] = {"name": name, "command": command, "planned": len(plan), "done": len(done), "tables": {}}
    md = [
        f"# nashmp MDPO vs SB3: suite `{name}`",
        "",
        f"Command: `{command}` (resumable: every finished run is one file in the run folder, "
        "`benchmarks/results/rl_vs_sb3/runs/` unless `--runs-dir` says otherwise, and a run whose file exists is "
        "skipped). Rebuilt from those files alone.",
        "",
        f"**Progress: {len(done)} of {len(plan)} planned runs done.**",
        "",
    ]
    images = []
    for family in families:
        fam_cells = {k: v for k, v in cells.items() if k[0] == family}
        envs = list(dict.fromkeys(k[1] for k in fam_cells))
        max_seeds = max(len(v) for v in fam_cells.values())
        base = baselines.get(family)
        rows, rank_rows, js = [], [], []
        for env in envs:
            env_cells = sorted(
                ((k, v) for k, v in fam_cells.items() if k[1] == env), key=lambda kv: algo_order(kv[0][2])
            )
            values: dict[str, dict[int, float]] = {}
            for (_, _, algo, steps), tasks in env_cells:
                rs = [by_key[t["key"]] for t in tasks if t["key"] in by_key]
                values[algo] = {r["seed"]: r["eval_mean"] for r in rs}
                v = np.array(list(values[algo].values()), float)
                kls = [r["kl_median"] for r in rs if r.get("kl_median") is not None]
                mean = float(v.mean()) if len(v) else math.nan
                std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
                per_seed = [f"{values[algo][t['seed']]:.1f}" if t["seed"] in values[algo] else "—" for t in tasks]
                rows.append([env, algo_info(algo)[2], f"{steps:,}", f"{len(v)}/{len(tasks)}",
                             _fmt(mean, std) if len(v) else "—", *per_seed, *[""] * (max_seeds - len(tasks)),
                             f"{np.median(kls):.2e}" if kls else "—"])  # fmt: skip
                js.append({"env": env, "algo": algo, "label": algo_info(algo)[2], "steps": steps, "done": len(v),
                           "planned": len(tasks), "mean": mean, "std": std,
                           "per_seed": {str(s): x for s, x in sorted(values[algo].items())},
                           "kl_median_of_run_medians": float(np.median(kls)) if kls else None})  # fmt: skip
            if base and base in values:
                for algo in values:
                    if algo == base or algo_info(algo)[1] != "nashmp":
                        continue
                    a, b = list(values[algo].values()), list(values[base].values())
                    rt = rank_test(a, b)
                    mean_ge = bool(np.mean(a) >= np.mean(b)) if a and b else None
                    rank_rows.append([env, f"{algo_info(algo)[2]} vs {algo_info(base)[2]}",
                                      f"{rt['n_variant']} / {rt['n_baseline']}",
                                      "—" if rt["U"] is None else f"{rt['U']:.1f}",
                                      "—" if rt["p_greater"] is None else f"{rt['p_greater']:.3f}",
                                      "—" if mean_ge is None else ("yes" if mean_ge else "no")])  # fmt: skip
                    out.setdefault("rank_tests", []).append(
                        {
                            "env": env,
                            "family": family,
                            "variant": algo,
                            "baseline": base,
                            **rt,
                            "variant_values": a,
                            "baseline_values": b,
                            "mean_ge_baseline": mean_ge,
                        }  # fmt: skip
                    )
        out["tables"][family] = js
        md += [
            f"## {family}",
            "",
            md_table(
                [
                    "env",
                    "algorithm",
                    "steps",
                    "seeds done",
                    "final eval return",
                    *[f"seed {i}" for i in range(max_seeds)],
                    "median KL/iter",
                ],
                rows,
                ["l", "l", "r", "r", "r", *["r"] * max_seeds, "r"],
            ),  # fmt: skip
            "",
        ]
        if rank_rows:
            md += [
                f"Rank test: one-sided Mann-Whitney U (`scipy.stats.mannwhitneyu(variant, {base}, "
                "alternative='greater')`) on the per-seed final eval returns; n per side as shown. With 5 vs 5 "
                "seeds the smallest attainable p is 0.004; with 3 vs 3, 0.05.",
                "",
                md_table(
                    ["env", "comparison", "n (variant / baseline)", "U", "p (variant > baseline)", "mean ≥ baseline"],
                    rank_rows,
                    ["l", "l", "r", "r", "r", "l"],
                ),  # fmt: skip
                "",
            ]
        for env in envs:
            er = [r for r in done if r["env"] == env and r["family"] == family]
            p = plot_curves(env, {family: er}, img / f"rl_{name}_{family}_{env}.png")
            if p is not None:
                images.append(p)
    on = [r for r in done if r["family"] == "on-policy"]
    kl_img = plot_kl(on, img / f"rl_{name}_kl.png")
    md += [
        "## KL per iteration",
        "",
        "Median over the run's iterations of the KL per iteration: MDPO logs `losses/approx_kl`, the exact "
        "mean KL(π_{k+1}‖π_k) over the batch after its update; PPO logs `train/approx_kl`, SB3's estimator "
        "mean((r − 1) − log r) averaged over the minibatches of its 10 epochs (measured *during* the update, so typically below the "
        "KL at its end); TRPO logs `train/kl_divergence_loss`, the KL after its "
        "line search. Captured every iteration of the same runs as the table (SB3 through a callback reading "
        "the logger). The table's column is the median over seeds of the per-run medians.",
        "",
    ]
    if kl_img is not None:
        images.append(kl_img)
        md += [f"![KL per iteration]({os.path.relpath(kl_img, results)})", ""]
    md += ["## Learning curves", "", *[f"![{p.stem}]({os.path.relpath(p, results)})" for p in images if p != kl_img]]
    out["images"] = [_rel(p) for p in images]
    out["missing"] = [t["key"] for t in plan if t["key"] not in by_key]
    results.mkdir(parents=True, exist_ok=True)
    out["markdown"] = "\n".join(md) + "\n"
    (results / f"rl_vs_sb3_{name}.md").write_text(out["markdown"])
    (results / f"rl_vs_sb3_{name}.json").write_text(
        json.dumps({k: v for k, v in out.items() if k != "markdown"}, indent=1, default=str) + "\n"
    )
    print("\n".join(md))
    return out


def update_docs(doc: Path, name: str, report_md: str, results: Path) -> None:
    """Replace the block between ``<!-- NAME-table:start -->`` and ``<!-- NAME-table:end -->`` of ``doc`` with
    the suite report (its title dropped, headings two levels down, image links relative to ``doc``)."""
    start, end = f"<!-- {name}-table:start -->", f"<!-- {name}-table:end -->"
    text = doc.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{doc}: no {start} ... {end} block")
    body = []
    for line in report_md.splitlines()[1:]:
        if line.startswith("#"):
            line = "##" + line
        if line.startswith("![") and "](" in line:
            label, _, target = line.partition("](")
            line = f"{label}]({os.path.relpath((results / target.rstrip(')')).resolve(), doc.parent)})"
        body.append(line)
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    doc.write_text(head + start + "\n" + "\n".join(body).strip() + "\n" + end + tail)
