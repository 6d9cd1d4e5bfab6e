"""A run's metrics as they land: ``metrics.csv`` (one row per log point, flushed at once) and a tracker.

The CSV header is the algorithm's documented metric set (``METRICS`` in its module), in that order, so every
run's file has the same columns; a row leaves blank what it did not measure (evaluation columns between
evaluations). A row holding a name outside the set is a bug and raises. On resume the file is rewritten
from the checkpoint's history before new rows are appended, so rows written after the last checkpoint by a
run that then crashed are replaced by the identical rows of the exact resume, never duplicated.

Trackers get every finite value of a row except the x-axis columns, at ``step = global_step``:
``report_to="tensorboard"`` writes ``OUT/tensorboard/`` (``torch.utils.tensorboard.SummaryWriter``; a resume
purges the events logged after the checkpoint), or pass any object with a ``log(metrics, step)`` method.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidParameterError

__all__ = [
    "REPORT_TO",
    "X_AXES",
    "Tracker",
    "check_report_to",
    "episode_charts",
    "current_names",
    "RunLog",
    "open_run_log",
]

REPORT_TO = ("none", "tensorboard")
#: columns that index a row rather than measure something: never sent to a tracker as a scalar
X_AXES = ("global_step", "iteration")


class Tracker(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None: ...


def check_report_to(report_to: Any) -> None:
    """Refuse an unknown tracker name, or one whose package is not installed, with one line."""
    if not isinstance(report_to, str):
        if callable(getattr(report_to, "log", None)):
            return
        raise InvalidParameterError(
            f"report_to must be one of {list(REPORT_TO)} or a tracker object, got {report_to!r}."
        )
    if report_to not in REPORT_TO:
        raise InvalidParameterError(f"unknown report_to {report_to!r}; choose one of {', '.join(REPORT_TO)}.")
    if report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise InvalidParameterError(
            "report_to 'tensorboard' needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or use --report-to none)."
        )


def current_names(history: list[dict[str, float]], legacy: Mapping[str, str]) -> list[dict[str, float]]:
    """``history`` with metric names of earlier versions (``legacy``: old → new) renamed: a checkpoint written
    before the names were namespaced resumes into today's ``metrics.csv`` columns."""
    return [{legacy.get(k, k): v for k, v in row.items()} for row in history]


def episode_charts(returns: Sequence[float], lengths: Sequence[int], window: int = 10) -> dict[str, float]:
    """``charts/episodic_return`` and ``charts/episodic_length``: means over the last ``window`` finished
    training episodes (nan before the first one ends)."""
    return {
        "charts/episodic_return": float(np.mean(returns[-window:])) if len(returns) else math.nan,
        "charts/episodic_length": float(np.mean(lengths[-window:])) if len(lengths) else math.nan,
    }


class _TensorBoard:
    def __init__(self, log_dir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # the events file, like metrics.csv, keeps up with the run

    def close(self) -> None:
        self.writer.close()


class RunLog:
    """``out_dir/metrics.csv`` with the fixed ``columns``, re-written from ``history``, plus the tracker
    (``out_dir`` None: the tracker only)."""

    def __init__(
        self,
        out_dir: str | Path | None,
        columns: Sequence[str],
        history: Sequence[Mapping[str, float]],
        report_to: Any,
    ) -> None:
        check_report_to(report_to)
        self.columns = list(columns)
        self._file: Any = None
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            path = out / "metrics.csv"
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", newline="") as f:  # atomic: a crash here keeps the previous file
                writer = csv.DictWriter(f, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(history)
            tmp.replace(path)
            self._file = path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self.tracker: Tracker | None = None
        if report_to == "tensorboard":
            if out_dir is None:
                raise InvalidParameterError("report_to 'tensorboard' writes into the run folder: pass out_dir.")
            last = int(history[-1]["global_step"]) if history else None
            self.tracker = _TensorBoard(Path(out_dir) / "tensorboard", None if last is None else last + 1)
        elif not isinstance(report_to, str):
            self.tracker = report_to

    def log(self, row: Mapping[str, float]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:  # a metric outside the documented set is a bug in the trainer, not a user error
            raise RuntimeError(f"undocumented metric(s) {sorted(unknown)}")
        if self._file is not None:
            self._writer.writerow(row)
            self._file.flush()
            os.fsync(self._file.fileno())  # a row per iteration or per ~1000 steps: cheap; a crash loses nothing
        if self.tracker is not None:
            scalars = {k: float(v) for k, v in row.items() if k not in X_AXES and math.isfinite(float(v))}
            self.tracker.log(scalars, int(row["global_step"]))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if isinstance(self.tracker, _TensorBoard):  # a caller's own tracker stays open: it may log more runs
            self.tracker.close()


def open_run_log(
    out_dir: str | Path | None, columns: Sequence[str], history: Sequence[Mapping[str, float]], report_to: Any
) -> RunLog | None:
    """The run's :class:`RunLog`, or None when there is neither a folder nor a tracker to write to."""
    if out_dir is None and report_to == "none":
        return None
    return RunLog(out_dir, columns, history, report_to)
