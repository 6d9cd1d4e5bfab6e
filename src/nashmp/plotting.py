"""Plots of metric trajectories and win-rate matrices (matplotlib, Agg backend: works headless)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .runner import Trajectory

__all__ = ["plot_trajectories", "plot_bands", "plot_win_rates", "theory_kl_line"]

PANELS = (("kl_to_star", "KL(π*‖π)"), ("exploitability", "exploitability E_β"), ("span", "span ‖log π − log π*‖"))
FLOOR = 1e-16  # log-scale axes: values below are drawn at the floor


def theory_kl_line(queries: np.ndarray, beta: float, kl0: float) -> np.ndarray:
    """Nash-MP's bound KL(π*‖π_0)·(1+2β)^{-N/2} at N queries."""
    return kl0 * (1.0 + 2.0 * beta) ** (-np.asarray(queries, dtype=float) / 2.0)


def _three_panels(draw: Callable[[Any, str], None], path: str | Path, title: str, xlabel: str) -> Path:
    """One log-scale panel per metric of :data:`PANELS`; ``draw(ax, metric)`` fills each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        draw(ax, key)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_trajectories(trajectories: Sequence[Trajectory], path: str | Path, title: str = "") -> Path:
    """Three log-scale panels (KL, exploitability, span) versus preference queries, one line per run.

    Each panel also shows the theoretical (1+2β)^{-N/2} rate, anchored at the initial value.
    """

    def draw(ax: Any, key: str) -> None:
        for tr in trajectories:
            if key in tr.metrics:
                ax.plot(tr.queries, np.maximum(tr.metrics[key], FLOOR), label=tr.algorithm, lw=1.4)
        tr0 = trajectories[0]
        if key in tr0.metrics:
            q = np.linspace(0, max(int(t.queries[-1]) for t in trajectories), 200)
            line = theory_kl_line(q, tr0.beta, float(tr0.metrics[key][0]))
            ax.plot(q, np.maximum(line, FLOOR), "k--", lw=1, label="(1+2β)^{-N/2}")

    return _three_panels(draw, path, title, "preference queries N")


def plot_bands(groups: Mapping[str, Sequence[Trajectory]], path: str | Path, title: str = "") -> Path:
    """Mean ± std over seeds (shaded) of KL, exploitability and span versus queries, one colour per group.

    Seeds record at slightly different query counts, so each run is interpolated (in log space) onto a
    common grid before averaging.
    """

    def draw(ax: Any, key: str) -> None:
        for name, runs in groups.items():
            grid = np.linspace(0, min(int(t.queries[-1]) for t in runs), 100)
            curves = np.array([np.interp(grid, t.queries, np.log10(np.maximum(t.metrics[key], FLOOR))) for t in runs])
            mean, std = curves.mean(0), curves.std(0)
            (line,) = ax.plot(grid, 10**mean, label=f"{name} (n={len(runs)})", lw=1.4)
            ax.fill_between(grid, 10 ** (mean - std), 10 ** (mean + std), color=line.get_color(), alpha=0.2)

    return _three_panels(draw, path, title, "preference queries (compared pairs)")


def plot_win_rates(
    win_rate: Any,
    names: Sequence[str],
    path: str | Path,
    *,
    ci_low: Any = None,
    ci_high: Any = None,
    title: str = "",
) -> Path:
    """Heat map of a win-rate matrix (row policy vs column opponent), the value (and interval) in each cell.

    The diverging colour map is centred at ½ (blue: the row wins, red: the row loses) on the fixed range [0, 1].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    W = np.asarray(win_rate, dtype=float)
    k = len(names)
    size = 1.4 + 1.25 * k
    fig, ax = plt.subplots(figsize=(size + 1.2, size), constrained_layout=True)
    image = ax.imshow(W, cmap="RdBu", norm=TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0))
    for i in range(k):
        for j in range(k):
            text = f"{W[i, j]:.3f}"
            if ci_low is not None and ci_high is not None and i != j:
                text += f"\n[{ci_low[i][j]:.2f}, {ci_high[i][j]:.2f}]"
            colour = "white" if abs(W[i, j] - 0.5) > 0.3 else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(k), labels=list(names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(names))
    ax.set_xlabel("opponent")
    ax.set_ylabel("policy")
    fig.colorbar(image, ax=ax, label="P(policy ≻ opponent)", shrink=0.8)
    if title:
        ax.set_title(textwrap.fill(title, width=max(40, int(9 * size))), fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
