"""The files ``nashmp eval`` writes for a :class:`~nashmp.llm.evaluate.WinRateResult`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .evaluate import WinRateResult

__all__ = ["write_eval_report"]


def write_eval_report(result: WinRateResult, out_dir: str | Path, *, title: str = "") -> dict[str, Path]:
    """Write ``win_rates.csv``, ``kl_ref.csv``, ``win_rates.png``, ``eval.md``, ``completions.jsonl``, ``eval.json``.

    ``win_rates.csv`` has one row per ordered pair (row, column, win_rate, ci_low, ci_high, n);
    ``kl_ref.csv`` one row per policy (policy, kl_ref, ci_low, ci_high, mean_length, avg_win_rate, n);
    ``completions.jsonl`` every prompt's completions (policy, sample, prompt, completion); ``eval.json`` the
    settings. Returns the paths.
    """
    from ..plotting import plot_win_rates

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "win_rates": out / "win_rates.csv",
        "kl_ref": out / "kl_ref.csv",
        "plot": out / "win_rates.png",
        "markdown": out / "eval.md",
        "completions": out / "completions.jsonl",
        "settings": out / "eval.json",
    }
    names, n = result.names, result.n
    with paths["win_rates"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "column", "win_rate", "ci_low", "ci_high", "n"])
        for i, row in enumerate(names):
            for j, col in enumerate(names):
                w.writerow(
                    [
                        row,
                        col,
                        repr(float(result.win_rate[i, j])),
                        repr(float(result.ci_low[i, j])),
                        repr(float(result.ci_high[i, j])),
                        n,
                    ]
                )
    with paths["kl_ref"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["policy", "kl_ref", "ci_low", "ci_high", "mean_length", "avg_win_rate", "n"])
        for i, name in enumerate(names):
            w.writerow(
                [
                    name,
                    repr(float(result.kl_ref[i])),
                    repr(float(result.kl_ci_low[i])),
                    repr(float(result.kl_ci_high[i])),
                    repr(float(result.mean_length[i])),
                    repr(float(result.average_win_rate[i])),
                    n,
                ]
            )
    s = result.settings
    desc = title or f"win rate (row vs column), {n} prompts, judge {s.get('judge', '?')}, T={s.get('temperature', '?')}"
    plot_win_rates(result.win_rate, names, paths["plot"], ci_low=result.ci_low, ci_high=result.ci_high, title=desc)
    paths["markdown"].write_text(f"# nashmp eval\n\n{result.to_markdown()}")
    with paths["completions"].open("w") as fh:
        for name, samples in result.completions.items():
            for k, texts in enumerate(samples):
                for prompt, text in zip(result.prompts, texts, strict=True):
                    record = {"policy": name, "sample": k, "prompt": prompt, "completion": text}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths["settings"].write_text(json.dumps(result.settings, indent=1, default=str))
    return paths
