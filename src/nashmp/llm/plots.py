"""``training.png``: what an LLM run's ``log.csv`` shows, as a picture (loss, KL, held-out win rates)."""

from __future__ import annotations

from pathlib import Path

from .trainer_io import read_log

__all__ = ["plot_training"]


def _column(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get(key, "") not in ("", None):
            xs.append(float(r["step"]))
            ys.append(float(r[key]))
    return xs, ys


def plot_training(log_csv: str | Path, out: str | Path, *, title: str = "") -> Path | None:
    """Three panels from ``log.csv``: loss and advantage spread; KL to π_ref and to the centre; win rates."""
    path = Path(log_csv)
    if not path.is_file():
        return None
    rows = read_log(path)  # a run folder of an older nashmp plots too
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for key in ("losses/loss", "train/advantage_std"):
        axes[0].plot(*_column(rows, key), label=key, lw=1.2)
    for key in ("train/kl_ref", "train/kl_anchor"):
        axes[1].plot(*_column(rows, key), label=key, lw=1.2)
    for key, label in (("eval/win_rate", "training oracle"), ("eval/win_rate_judge", "eval judge")):
        xs, ys = _column(rows, key)
        if xs:
            axes[2].plot(xs, ys, "o-", label=label, lw=1.2, ms=3)
    axes[2].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("held-out win rate vs π_ref")
    axes[0].set_title("loss")
    axes[1].set_title("KL (sequence, nats)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(Path(out), dpi=100)
    plt.close(fig)
    return Path(out)
