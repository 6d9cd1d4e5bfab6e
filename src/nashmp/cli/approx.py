"""``nashmp approx``: approximate recipes × seeds on one game, with exact metrics versus queries."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..equilibrium import solve_equilibrium
from ..games.game import PreferenceGame
from ..plotting import plot_bands
from ..runner import Trajectory

__all__ = ["approx_compare"]


def _summary(groups: Mapping[str, Sequence[Trajectory]]) -> str:
    lines = [
        "| recipe | seeds | queries | KL(π*‖π) mean ± std | exploitability mean ± std | span mean ± std |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in sorted(groups.items(), key=lambda kv: np.mean([t.metrics["kl_to_star"][-1] for t in kv[1]])):
        cells = []
        for key in ("kl_to_star", "exploitability", "span"):
            v = np.array([t.metrics[key][-1] for t in runs])
            cells.append(f"{v.mean():.3g} ± {v.std():.2g}")
        lines.append(f"| {name} | {len(runs)} | {int(runs[0].queries[-1])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def approx_compare(
    game: PreferenceGame,
    recipes: Sequence[str],
    seeds: Sequence[int],
    queries: int,
    out: Path,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    evals: int = 50,
    progress: bool = True,
    title: str = "",
) -> str:
    """Run every recipe for every seed; write ``metrics.csv``, ``approx.png`` (mean ± std) and ``summary.md``."""
    from ..approx.runner import run_approx

    params = params or {}
    eq = solve_equilibrium(game)
    groups: dict[str, list[Trajectory]] = {}
    for recipe in recipes:
        p = {**params.get("*", {}), **params.get(recipe, {})}
        groups[recipe] = [
            run_approx(game, None, queries, equilibrium=eq, evals=evals, progress=progress, recipe=recipe, seed=s, **p)
            for s in seeds
        ]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        first = next(iter(groups.values()))[0]
        w.writerow(["recipe", "seed", *first.columns])
        for recipe, runs in groups.items():
            for seed, tr in zip(seeds, runs, strict=True):
                for row in tr.rows():
                    w.writerow([recipe, seed, *row])
    desc = f"X={game.num_contexts} contexts, n={game.num_responses}, β={game.beta:g}, {len(seeds)} seeds"
    plot_bands(groups, out / "approx.png", title=title or desc)
    md = f"# nashmp approx\n\n{desc}\n\n{_summary(groups)}\n"
    (out / "summary.md").write_text(md)
    return md
