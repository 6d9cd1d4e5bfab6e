"""Settings, CSV files, tables and plots of ``benchmarks/approx_study.py`` (rebuilt by its ``--report-only``).

The runner (workers, stages, provenance) lives in ``approx_study.py``; this module holds what the tables are
made of: every knob of the study (:func:`settings`), the CSV format, and the report that reads them back.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import md_table

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ("faithful", "practical", "nash-md-pg", "online-ipo", "egpo")
FAMILIES = ("random", "cyclic", "rps", "skew")
BETAS = (0.1, 0.01)
TUNED = ("lr", "batch_size", "inner_steps", "opponent", "ema", "mixture", "kl_estimator", "baseline")
METRIC_KEYS = ("kl_to_star", "exploitability", "span")


def settings(quick: bool) -> dict[str, Any]:
    """Every knob of the study; ``quick`` shrinks it to a smoke test."""
    if quick:
        return {
            "n": 6,
            "num_games": 2,
            "families": ("random", "cyclic"),
            "betas": (0.1,),
            "budgets": (500, 2000),
            "evals": 10,
            "tune_budget": 500,
            "tune_seeds": (100, 101),
            "seeds": (0, 1),
            "lrs": (0.1, 0.3),
            "batches": (32,),
            "extra": {
                "faithful": {"inner_steps": (2,)},
                "practical": {"opponent": ("ema", "self"), "ema": (0.05,)},
                "nash-md-pg": {"mixture": (0.5,)},
                "online-ipo": {},
                "egpo": {},
            },
            "inner_steps": (1, 5),
            "emas": (0.05, 0.2),
            "sweep_families": ("random", "cyclic"),
            "sweep_beta": 0.1,
            "transfer_beta": 0.1,
            "transfer_seeds": (0, 1),
            "curve_family": "cyclic",
            "confirm": (("practical κ=0.01", {"recipe": "practical", "ema": 0.01}, (0.1,)),),
        }
    return {
        "n": 20,
        "num_games": 4,
        "families": FAMILIES,
        "betas": BETAS,
        "budgets": (10_000, 100_000),
        "evals": 50,
        "tune_budget": 10_000,
        "tune_seeds": (100, 101),
        "seeds": (0, 1, 2, 3, 4),
        "lrs": (0.01, 0.03, 0.1, 0.3),
        "batches": (32, 128),
        "extra": {
            "faithful": {"inner_steps": (5, 20)},
            "practical": {"opponent": ("ema", "self", "half"), "ema": (0.01, 0.05, 0.2)},
            "nash-md-pg": {"mixture": (0.25, 0.5)},
            "online-ipo": {},
            "egpo": {},
        },
        "inner_steps": (1, 2, 5, 10, 20, 50),
        "emas": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        "sweep_families": ("random", "cyclic"),
        "sweep_beta": 0.1,
        "transfer_beta": 0.01,
        "transfer_seeds": (0, 1, 2, 3, 4),
        "curve_family": "cyclic",
        # follow-up after the inner/transfer stages: a slow EMA anchor on every family and β
        "confirm": (
            ("practical κ=0.01", {"recipe": "practical", "ema": 0.01}, BETAS),
            ("practical κ=0.01, lr=0.01", {"recipe": "practical", "ema": 0.01, "lr": 0.01}, (0.01,)),
        ),
    }


def game_n(family: str, n: int) -> int:
    """rps needs a multiple of 3: the smallest one ≥ n."""
    return 3 * math.ceil(n / 3) if family == "rps" else n


def tuning_grid(s: dict[str, Any], recipe: str) -> list[dict[str, Any]]:
    extra = s["extra"][recipe]
    names = ["lr", "batch_size", *extra]
    values = [s["lrs"], s["batches"], *extra.values()]
    return [dict(zip(names, combo, strict=True), recipe=recipe) for combo in itertools.product(*values)]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = int(v)
            except ValueError:
                with contextlib.suppress(ValueError):
                    r[k] = float(v)
    return rows


def stats(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); non-finite values propagate (a diverged seed makes the cell inf/nan)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "diverged"
    return f"{mean:.3g} ± {std:.2g}"


def group(
    rows: Iterable[dict[str, Any]], keys: Sequence[str], metric: str = "kl_to_star"
) -> dict[tuple[Any, ...], list[float]]:
    g: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in rows:
        g[tuple(r[k] for k in keys)].append(float(r[metric]))
    return g


def setting_str(b: dict[str, Any]) -> str:
    parts = [f"lr={b['lr']:g}", f"batch={b['batch_size']}"]
    if b["recipe"] == "faithful":
        parts.append(f"M={b['inner_steps']}")
    if b["recipe"] == "practical":
        parts += [f"opponent={b['opponent']}", f"ema={b['ema']:g}"]
    if b["recipe"] == "nash-md-pg":
        parts.append(f"mixture={b['mixture']:g}")
    return ", ".join(parts)


def initial_kl(s: dict[str, Any], family: str, beta: float) -> dict[str, float]:
    from nashmp import make_game, solve_equilibrium
    from nashmp.metrics import aggregate, context_metrics

    game = make_game(family, game_n(family, s["n"]), beta, num_games=s["num_games"], seed=0)
    eq = solve_equilibrium(game)
    return aggregate(game, context_metrics(game, eq.log_policy, game.log_ref))


def report_tuning(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_tuning.csv")
    best = {r["recipe"]: r for r in read_csv(out / "approx_study_best.csv")}
    md = [
        "## Tuning (random, β = 0.1, budget "
        f"{s['tune_budget']:,} queries, seeds {', '.join(map(str, s['tune_seeds']))})\n",
        md_table(
            ["recipe", "best setting", "KL mean ± std", "configs tried"],
            [
                [r, setting_str(best[r]), fmt(best[r]["tune_kl"], best[r]["tune_kl_std"]), len(tuning_grid(s, r))]
                for r in RECIPES
                if r in best
            ],
        ),
        "\nBest mean KL over the other fields, per value of one field (a marginal view of the grid):\n",
    ]
    for recipe in RECIPES:
        g = group([r for r in rows if r["recipe"] == recipe], TUNED)
        means = {k: float(np.mean(v)) for k, v in g.items()}
        fields = ["lr", "batch_size", *s["extra"][recipe]]
        cells = []
        for f in fields:
            i = TUNED.index(f)
            vals = sorted({k[i] for k in means}, key=lambda v: (isinstance(v, str), v))
            cells.append(
                f"{f}: "
                + ", ".join(
                    f"{v:g}→{min(m for k, m in means.items() if k[i] == v):.3g}"
                    if not isinstance(v, str)
                    else f"{v}→{min(m for k, m in means.items() if k[i] == v):.3g}"
                    for v in vals
                )
            )
        md.append(f"- **{recipe}**: " + "; ".join(cells))
    return md


def report_main(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_main.csv")
    md = []
    for metric, title in (("kl_to_star", "KL(π*‖π)"), ("exploitability", "exploitability 𝓔_β")):
        g = group(rows, ("family", "beta", "budget", "recipe"), metric)
        for budget in s["budgets"]:
            md.append(f"\n### {title} at {budget:,} queries (mean ± std over {len(s['seeds'])} seeds)\n")
            body = []
            for fam in s["families"]:
                for beta in s["betas"]:
                    cells = {r: stats(g[(fam, beta, budget, r)]) for r in RECIPES if (fam, beta, budget, r) in g}
                    if not cells:
                        continue
                    win = min(cells, key=lambda r: cells[r][0] if math.isfinite(cells[r][0]) else math.inf)
                    init = initial_kl(s, fam, beta)[metric]
                    body.append(
                        [f"{fam} (n={game_n(fam, s['n'])})", f"{beta:g}", f"{init:.3g}"]
                        + [(f"**{fmt(*cells[r])}**" if r == win else fmt(*cells[r])) for r in RECIPES]
                        + [win]
                    )
            md.append(md_table(["family", "β", "π_ref", *RECIPES, "lowest"], body))
    return md


def report_sweeps(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_inner.csv")
    md = []
    for sweep, name in (("inner_steps", "faithful: inner steps M"), ("ema", "practical: EMA rate κ")):
        sub = [r for r in rows if r["sweep"] == sweep]
        g = group(sub, ("value", "family", "budget"))
        md.append(f"\n### {name} (β = {s['sweep_beta']:g}, mean ± std over {len(s['seeds'])} seeds)\n")
        body = []
        for v in sorted({r["value"] for r in sub}):
            body.append(
                [f"{v:g}"]
                + [fmt(*stats(g[(v, fam, b)])) for fam in s["sweep_families"] for b in s["budgets"] if (v, fam, b) in g]
            )
        md.append(md_table([sweep] + [f"{fam} @ {b:,}" for fam in s["sweep_families"] for b in s["budgets"]], body))
    return md


def report_variants(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_variants.csv")
    g = group(rows, ("variant", "family", "budget"))
    md = [f"\n### practical: kl_estimator / baseline (β = {s['sweep_beta']:g}, {len(s['seeds'])} seeds)\n"]
    body = [
        [v] + [fmt(*stats(g[(v, fam, b)])) for fam in s["sweep_families"] for b in s["budgets"]]
        for v in ("sampled/half", "sampled/learned", "analytic/half", "analytic/learned")
    ]
    md.append(
        md_table(
            ["kl_estimator/baseline"] + [f"{fam} @ {b:,}" for fam in s["sweep_families"] for b in s["budgets"]], body
        )
    )
    return md


def report_transfer(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_transfer.csv")
    g = group(rows, ("family", "budget", "recipe", "lr"))
    md = [
        f"\n### lr at β = {s['transfer_beta']:g} (other fields at the β = 0.1 best; {len(s['transfer_seeds'])} seeds)\n"
    ]
    for fam in s["sweep_families"]:
        for b in s["budgets"]:
            body = []
            for recipe in RECIPES:
                cells = {lr: stats(g[(fam, b, recipe, lr)]) for lr in s["lrs"] if (fam, b, recipe, lr) in g}
                win = min(cells, key=lambda lr: cells[lr][0] if math.isfinite(cells[lr][0]) else math.inf)
                body.append(
                    [recipe] + [(f"**{fmt(*cells[lr])}**" if lr == win else fmt(*cells[lr])) for lr in s["lrs"]]
                )
            md.append(f"\n{fam}, {b:,} queries:\n")
            md.append(md_table(["recipe"] + [f"lr={lr:g}" for lr in s["lrs"]], body))
    return md


def report_confirm(s: dict[str, Any], out: Path) -> list[str]:
    rows = read_csv(out / "approx_study_confirm.csv")
    main = read_csv(out / "approx_study_main.csv")
    g = group(rows, ("variant", "family", "beta", "budget"))
    gm = group(main, ("family", "beta", "budget", "recipe"))
    labels = [label for label, _, _ in s["confirm"]]
    md = [f"\n### follow-up: practical with a slow EMA anchor (KL(π*‖π), {len(s['seeds'])} seeds)\n"]
    for b in s["budgets"]:
        body = []
        for fam in s["families"]:
            for beta in s["betas"]:
                ref = {r: stats(gm[(fam, beta, b, r)]) for r in RECIPES}
                win = min(ref, key=lambda r: ref[r][0] if math.isfinite(ref[r][0]) else math.inf)
                body.append(
                    [f"{fam}", f"{beta:g}", f"{fmt(*ref['practical'])}", f"{fmt(*ref[win])} ({win})"]
                    + [fmt(*stats(g[(v, fam, beta, b)])) if (v, fam, beta, b) in g else "–" for v in labels]
                )
        md.append(f"\n{b:,} queries:\n")
        md.append(md_table(["family", "β", "practical (tuned)", "best of main table", *labels], body))
    return md


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = dict(zip(RECIPES, ("C0", "C1", "C2", "C3", "C4"), strict=True))


def plot_tuning(s: dict[str, Any], out: Path, img: Path) -> None:
    plt = _plt()
    rows = read_csv(out / "approx_study_tuning.csv")
    best = {r["recipe"]: r for r in read_csv(out / "approx_study_best.csv")}
    fig, axes = plt.subplots(1, len(RECIPES), figsize=(15, 3.4), sharey=True, constrained_layout=True)
    for ax, recipe in zip(axes, RECIPES, strict=True):
        g = group([r for r in rows if r["recipe"] == recipe], TUNED)
        for key, kls in g.items():
            cfg = dict(zip(TUNED, key, strict=True))
            m = float(np.mean(kls))
            x = cfg["lr"] * (1.08 if cfg["batch_size"] == max(s["batches"]) else 1 / 1.08)
            mk = "o" if cfg["batch_size"] == min(s["batches"]) else "s"
            is_best = all(cfg[k] == best[recipe][k] for k in TUNED)
            ax.scatter(
                x,
                m if math.isfinite(m) else np.nan,
                marker=mk,
                s=60 if is_best else 16,
                c="k" if is_best else COLORS[recipe],
                alpha=0.8,
                zorder=3 if is_best else 2,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(recipe)
        ax.set_xlabel("Adam lr")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"KL(π*‖π) at {s['tune_budget']:,} queries")
    axes[0].scatter([], [], marker="o", c="gray", s=16, label=f"batch {min(s['batches'])}")
    axes[0].scatter([], [], marker="s", c="gray", s=16, label=f"batch {max(s['batches'])}")
    axes[0].scatter([], [], marker="o", c="k", s=60, label="chosen")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"tuning grid: random game, β=0.1, mean of {len(s['tune_seeds'])} seeds (every other field is one dot)"
    )
    fig.savefig(img / "tuning.png", dpi=80)
    plt.close(fig)


def plot_main(s: dict[str, Any], out: Path, img: Path) -> None:
    plt = _plt()
    rows = read_csv(out / "approx_study_main.csv")
    g = group(rows, ("family", "beta", "budget", "recipe"))
    combos = [(f, b) for f in s["families"] for b in s["betas"]]
    fig, axes = plt.subplots(len(s["budgets"]), 1, figsize=(12, 3.3 * len(s["budgets"])), constrained_layout=True)
    w = 0.8 / len(RECIPES)
    for ax, budget in zip(np.atleast_1d(axes), s["budgets"], strict=True):
        for i, recipe in enumerate(RECIPES):
            ms = np.array([stats(g[(f, b, budget, recipe)]) for f, b in combos])
            x = np.arange(len(combos)) + (i - (len(RECIPES) - 1) / 2) * w
            lo = np.minimum(ms[:, 1], ms[:, 0] * 0.999)  # keep the lower whisker positive on the log axis
            ax.bar(x, ms[:, 0], w, yerr=[lo, ms[:, 1]], color=COLORS[recipe], label=recipe, capsize=2)
        ref = [initial_kl(s, f, b)["kl_to_star"] for f, b in combos]
        ax.scatter(np.arange(len(combos)), ref, marker="_", s=900, c="k", label="π_ref", zorder=4)
        ax.set_xticks(np.arange(len(combos)), [f"{f}\nβ={b:g}" for f, b in combos])
        ax.set_yscale("log")
        ax.set_ylabel("KL(π*‖π)")
        ax.set_title(f"{budget:,} queries, mean ± std over {len(s['seeds'])} seeds (best setting per recipe)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    np.atleast_1d(axes)[0].legend(ncol=6, fontsize=8)
    fig.savefig(img / "main.png", dpi=80)
    plt.close(fig)


def plot_sweep(s: dict[str, Any], out: Path, img: Path, sweep: str, xlabel: str, fname: str) -> None:
    plt = _plt()
    rows = [r for r in read_csv(out / "approx_study_inner.csv") if r["sweep"] == sweep]
    g = group(rows, ("family", "budget", "value"))
    fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
    for j, fam in enumerate(s["sweep_families"]):
        for budget, ls in zip(s["budgets"], (":", "-"), strict=False):
            vals = sorted({r["value"] for r in rows})
            ms = np.array([stats(g[(fam, budget, v)]) for v in vals])
            ax.errorbar(
                vals,
                ms[:, 0],
                yerr=ms[:, 1],
                ls=ls,
                marker="o",
                ms=4,
                capsize=3,
                color=f"C{j}",
                label=f"{fam}, {budget:,} queries",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("KL(π*‖π)")
    ax.set_title(f"β={s['sweep_beta']:g}, mean ± std over {len(s['seeds'])} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(img / fname, dpi=90)
    plt.close(fig)


def plot_curves(s: dict[str, Any], out: Path, img: Path) -> None:
    plt = _plt()
    rows = read_csv(out / "approx_study_curves.csv")
    extra_path = out / "approx_study_confirm_curves.csv"
    extra = read_csv(extra_path) if extra_path.exists() else []
    rows += extra
    styles = {r: (COLORS[r], "-") for r in RECIPES} | {r["recipe"]: ("k", "--") for r in extra}
    betas = sorted({r["beta"] for r in rows}, reverse=True)
    labels = {"kl_to_star": "KL(π*‖π)", "exploitability": "exploitability E_β(π)", "span": "span(log π − log π*)"}
    fig, axes = plt.subplots(len(betas), 3, figsize=(15, 3.9 * len(betas)), squeeze=False, constrained_layout=True)
    for i, beta in enumerate(betas):
        for j, key in enumerate(METRIC_KEYS):
            ax = axes[i, j]
            for recipe, (color, ls) in styles.items():
                runs = defaultdict(list)
                for r in rows:
                    if r["beta"] == beta and r["recipe"] == recipe:
                        runs[r["seed"]].append((r["queries"], r[key]))
                if not runs:
                    continue
                qmax = min(max(q for q, _ in v) for v in runs.values())
                grid = np.linspace(0, qmax, 51)
                curves = np.array([np.interp(grid, *np.array(sorted(v)).T) for v in runs.values()])
                mean, std = curves.mean(0), curves.std(0, ddof=1)
                ax.plot(grid, mean, color=color, ls=ls, lw=1.4, label=recipe)
                ax.fill_between(grid, np.maximum(mean - std, mean * 1e-2), mean + std, color=color, alpha=0.15)
            ax.set_yscale("log")
            ax.set_title(f"{labels[key]}, β={beta:g}")
            ax.set_xlabel("preference queries (compared pairs)")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"{s['curve_family']} game (n={s['n']}, {s['num_games']} contexts): mean ± std over {len(s['seeds'])} seeds, tuned setting per recipe (dashed: follow-up)"
    )
    fig.savefig(img / "cyclic_curves.png", dpi=50)
    plt.close(fig)


def report(s: dict[str, Any], out: Path, img: Path, meta: dict[str, Any]) -> str:
    img.mkdir(parents=True, exist_ok=True)
    best = read_csv(out / "approx_study_best.csv")
    md = [
        "# approx study: tables (generated by benchmarks/approx_study.py)\n",
        "```",
        json.dumps(meta, indent=1),
        "```\n",
    ]
    parts: list[tuple[str, Callable[[dict[str, Any], Path], list[str]]]] = [
        ("approx_study_tuning.csv", report_tuning),
        ("approx_study_main.csv", report_main),
        ("approx_study_inner.csv", report_sweeps),
        ("approx_study_variants.csv", report_variants),
        ("approx_study_transfer.csv", report_transfer),
        ("approx_study_confirm.csv", report_confirm),
    ]
    for fname, fn in parts:
        if (out / fname).exists():
            md += fn(s, out)
    if best:
        plot_tuning(s, out, img)
    if (out / "approx_study_main.csv").exists():
        plot_main(s, out, img)
        plot_curves(s, out, img)
    if (out / "approx_study_inner.csv").exists():
        plot_sweep(s, out, img, "inner_steps", "faithful: inner steps M per sub-problem", "inner_steps.png")
        plot_sweep(s, out, img, "ema", "practical: EMA rate κ", "ema.png")
    text = "\n".join(md) + "\n"
    (out / "approx_study.md").write_text(text)
    return text
