"""Read the metric tables of the docs, so tests can hold them to the module constants they document."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table_names(doc: str, heading: str) -> list[str]:
    """The backticked names in the first cell of each row of the first table under ``heading`` (a line that
    starts with it), in order; a cell may name several (``eval/span``, ``eval/span_max``)."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    names: list[str] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            names += re.findall(r"`([^`]+)`", line.split("|")[1])
        elif in_table or line.startswith("#"):
            break
    return names
