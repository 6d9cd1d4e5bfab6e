"""How an off-policy checkpoint carries its replay buffer: ``save_buffer`` = full, incremental or none.

* ``full`` (default): the buffer's filled part inside ``checkpoint.pt`` — one self-contained file, rewritten
  whole at every checkpoint (0.9 GB on Ant, 2.9 GB on Humanoid at 1M transitions). Resume is exact.
* ``incremental``: each checkpoint writes only the transitions stored since the previous one, as a chunk file
  in ``checkpoint.pt.buffer/``; ``checkpoint.pt`` lists the chunks (insertion range and SHA-256) that the
  buffer's last ``capacity`` transitions live in. Replaying them in order rebuilds the ring buffer exactly,
  so resume is exact too. A chunk is written before the checkpoint that lists it and deleted only after a
  checkpoint that no longer does (fully overwritten transitions), so a run killed at any moment keeps a
  consistent pair; chunks have unique names, so a crashed run's leftovers never pass for a listed one.
* ``none``: no buffer on disk. A resumed run starts with an empty buffer and refills it from fresh
  experience with its current policy: gradient steps pause until it holds ``max(batch_size,
  learning_starts)`` new transitions (capped by the capacity). Well defined and reproducible, but not the
  run that would have happened uninterrupted.

Chunks are plain data read with ``torch.load(weights_only=True)``, like the checkpoint; their names come
from the (untrusted) checkpoint, so only names of the form ``<start>-<end>-<hex>.pt`` inside the buffer
folder are opened, and each must match its recorded hash, range, dtype and shape.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .checkpoint import read_plain_file, write_atomic

__all__ = ["BUFFER_MODES", "buffer_dir", "save_buffer_state", "restore_buffer_state"]

BUFFER_MODES = ("full", "incremental", "none")
CHUNK_FORMAT = "nashmp-rl-buffer-chunk/1"
_CHUNK_NAME = re.compile(r"^\d{12}-\d{12}-[0-9a-f]{8}\.pt$")


def buffer_dir(checkpoint: str | Path) -> Path:
    """The folder of a checkpoint's buffer chunks: ``checkpoint.pt`` → ``checkpoint.pt.buffer``."""
    p = Path(checkpoint)
    return p.with_name(p.name + ".buffer")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_chunk(agent: Any, folder: Path, start: int, end: int) -> dict[str, Any]:
    cap = len(agent.buffer["rew"])
    idx = np.arange(start, end) % cap
    blob = {"format": CHUNK_FORMAT, "start": start, "end": end,
            "columns": {k: torch.from_numpy(v[idx].copy()) for k, v in agent.buffer.items()}}  # fmt: skip
    path = write_atomic(blob, folder / f"{start:012d}-{end:012d}-{secrets.token_hex(4)}.pt")
    return {"file": path.name, "start": start, "end": end, "sha256": _sha256(path)}


def save_buffer_state(agent: Any, checkpoint: Path) -> tuple[dict[str, Any], list[Path]]:
    """The buffer's part of the checkpoint's ``extra``, and the chunk files to delete once it is written."""
    cap = len(agent.buffer["rew"])
    extra: dict[str, Any] = {"buffer_mode": agent.cfg.save_buffer, "size": agent.size, "min_fill": agent.min_fill}
    stale: list[Path] = []
    if agent.cfg.save_buffer == "full":
        n = min(agent.size, cap)
        extra["buffer"] = {k: v[:n].copy() for k, v in agent.buffer.items()}
    elif agent.cfg.save_buffer == "incremental":
        folder = buffer_dir(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        oldest = max(0, agent.size - cap)  # transitions before this one are overwritten in the ring
        # chunks written for this folder by this agent (or read from it on resume) are reused; elsewhere, start over
        chunks = [c for c in agent.buffer_chunks if c["end"] > oldest] if agent.chunk_folder == folder else []
        done = chunks[-1]["end"] if chunks else oldest
        if agent.size > done:
            chunks.append(_write_chunk(agent, folder, max(done, oldest), agent.size))
        agent.buffer_chunks, agent.chunk_folder = chunks, folder
        extra["buffer_chunks"] = [dict(c) for c in chunks]
        keep = {c["file"] for c in chunks}
        stale = [p for p in folder.glob("*.pt") if p.name not in keep]
    if agent.cfg.save_buffer != "incremental":  # an earlier incremental mode's chunks: no longer listed
        stale = sorted(buffer_dir(checkpoint).glob("*.pt"))
        agent.buffer_chunks, agent.chunk_folder = [], None
    return extra, stale


def _read_chunk(folder: Path, entry: Any, columns: dict[str, np.ndarray]) -> tuple[int, int, dict[str, np.ndarray]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not _CHUNK_NAME.match(entry["file"]):
        raise CheckpointError("the checkpoint lists a malformed replay-buffer chunk.")
    path = folder / entry["file"]
    if not path.is_file() or _sha256(path) != entry.get("sha256"):
        raise CheckpointError(
            f"replay-buffer chunk {path} is missing or altered; this checkpoint cannot resume exactly without it."
        )
    blob = read_plain_file(path, "replay-buffer chunk")
    start, end = blob.get("start"), blob.get("end")
    if (
        blob.get("format") != CHUNK_FORMAT
        or type(start) is not int
        or type(end) is not int
        or (start, end) != (entry.get("start"), entry.get("end"))
    ):
        raise CheckpointError(f"{path} is not the replay-buffer chunk the checkpoint lists.")
    data = blob.get("columns")
    if not isinstance(data, dict) or set(data) != set(columns):
        raise CheckpointError(f"{path}: the chunk's columns do not fit this agent's buffer.")
    out = {}
    for k, ref in columns.items():
        arr = data[k].numpy() if isinstance(data[k], torch.Tensor) else None
        if arr is None or arr.dtype != ref.dtype or arr.shape != (end - start, *ref.shape[1:]):
            raise CheckpointError(f"{path}: column {k!r} does not fit this agent's buffer.")
        out[k] = arr
    return start, end, out


def restore_buffer_state(agent: Any, extra: dict[str, Any], checkpoint: Path) -> None:
    """Write the saved buffer (any mode) back into a freshly built agent."""
    cap = len(agent.buffer["rew"])
    try:
        size = int(extra["size"])
        if "buffer" in extra:  # full
            for k, v in extra["buffer"].items():
                agent.buffer[k][: len(v)] = v
            agent.size, agent.min_fill = size, int(extra.get("min_fill", agent.min_fill))
            return
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's replay buffer does not fit this agent ({exc}).") from None
    if "buffer_chunks" in extra:  # incremental
        folder = buffer_dir(checkpoint)
        entries = list(extra["buffer_chunks"])
        bounds: list[tuple[Any, Any]] = [
            (e.get("start"), e.get("end")) if isinstance(e, dict) else (None, None) for e in entries
        ]
        ints = all(type(a) is int and type(b) is int and a < b for a, b in bounds)
        contiguous = ints and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        if size and (not entries or not contiguous or bounds[-1][1] != size or bounds[0][0] > max(0, size - cap)):
            raise CheckpointError("the checkpoint's replay-buffer chunks do not cover its buffer; it cannot resume.")
        for entry in entries:  # in insertion order: a later chunk overwrites what the ring overwrote
            start, end, data = _read_chunk(folder, entry, agent.buffer)
            idx = np.arange(start, end) % cap
            for k, v in data.items():
                agent.buffer[k][idx] = v
        agent.size, agent.min_fill = size, int(extra.get("min_fill", agent.min_fill))
        agent.buffer_chunks, agent.chunk_folder = [dict(e) for e in entries], folder
        return
    # none: refill from fresh experience before the next gradient step
    agent.size = 0
    agent.min_fill = max(agent.cfg.batch_size, min(agent.cfg.learning_starts, cap))
