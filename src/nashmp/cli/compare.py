"""``nashmp compare``: several algorithms on one (batched) game, side by side per preference query."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..equilibrium import solve_equilibrium
from ..games.game import PreferenceGame
from ..plotting import plot_trajectories
from ..runner import Trajectory, queries_to_reach, run

__all__ = ["compare", "summary_table"]

THRESHOLDS = (1e-4, 1e-8)


def _params(tr: Trajectory) -> str:
    return ", ".join(f"{k}={v}" for k, v in tr.params.items()) or "—"


def summary_table(trajectories: Sequence[Trajectory]) -> str:
    """Markdown table: final metrics and queries to reach KL(π*‖π) ≤ 1e-4 and 1e-8 per algorithm."""
    head = (
        "| algorithm | params | queries | KL(π*‖π) | exploitability | span | N to KL≤1e-4 | N to KL≤1e-8 |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for tr in sorted(trajectories, key=lambda t: (queries_to_reach(t, 1e-8) or 10**12, t.metrics["kl_to_star"][-1])):
        reach = [queries_to_reach(tr, t) for t in THRESHOLDS]
        m = tr.metrics
        lines.append(
            f"| {tr.algorithm} | {_params(tr)} | {int(tr.queries[-1])} | {m['kl_to_star'][-1]:.2e} | {m['exploitability'][-1]:.2e} "
            f"| {m['span'][-1]:.2e} | " + " | ".join("—" if r is None else str(r) for r in reach) + " |"
        )
    return "\n".join(lines)


def compare(
    game: PreferenceGame,
    algorithms: Sequence[str],
    queries: int,
    out: Path,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    title: str = "",
) -> str:
    """Run each algorithm for ``queries`` queries; write ``metrics.csv``, ``compare.png``, ``summary.md``.

    Returns the markdown summary.
    """
    params = params or {}
    eq = solve_equilibrium(game)
    trajs = []
    for name in algorithms:
        p = {**params.get("*", {}), **params.get(name, {})}
        trajs.append(run(game, name, queries, equilibrium=eq, progress=progress, **p))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algorithm", *trajs[0].columns])
        for tr in trajs:
            for row in tr.rows():
                w.writerow([tr.algorithm, *row])
    desc = f"X={game.num_contexts} games, n={game.num_responses}, β={game.beta:g}, max certificate {eq.certificate:.1e}"
    plot_trajectories(trajs, out / "compare.png", title=title or desc)
    table = summary_table(trajs)
    # smallest even N with KL(π*‖π_ref)·(1+2β)^{-N/2} ≤ 1e-8
    kl0 = float(trajs[0].metrics["kl_to_star"][0])
    theory = 2 * max(0, math.ceil(math.log(max(kl0, 1e-300) / 1e-8) / math.log1p(2 * game.beta)))
    md = (
        f"# nashmp compare\n\n{desc}\n\n{table}\n\n"
        f"Theory (1+2β)^(-N/2)·KL(π*‖π_ref) reaches 1e-8 at N = {theory}. Steps are the defaults shown "
        "(override with --param ALGO:KEY=VALUE); docs/benchmarks.md tunes every baseline on a grid.\n"
    )
    (out / "summary.md").write_text(md)
    return md
