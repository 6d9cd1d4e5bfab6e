"""Checkpoints shared by the RL agents: everything needed to continue a run bit for bit, and no code.

An agent lists its ``torch`` objects with a ``state_dict`` in ``STATEFUL`` and keeps the runtime fields
``env``, ``obs``, ``reset_next``, ``rng``, ``returns`` and ``progress``; ``extra`` carries the rest
(a replay buffer, a private torch generator). Files are written atomically, so a run killed while
saving keeps its previous checkpoint.

**Security.** A checkpoint holds *plain data only* — tensors, numbers, strings, lists, tuples and dicts —
and is read with ``torch.load(weights_only=True)``, torch's restricted unpickler, which refuses every
other object. So loading a crafted ``checkpoint.pt`` cannot run code. The environment is therefore not
pickled: the agent rebuilds it from its config, and :func:`env_snapshot` records the plain-data state of
every wrapper and sub-environment (running normalisation statistics, episode counters, time limits,
physics ``qpos``/``qvel``, random generators), which :func:`restore_env_snapshot` writes back. numpy arrays
travel as raw bytes plus a numeric dtype and shape (object arrays are refused on both sides).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .envs import env_state, restore_env_state

__all__ = ["save_agent", "read_checkpoint", "load_agent_state", "env_snapshot", "restore_env_snapshot"]

FORMAT = "nashmp-rl-checkpoint/2"
_RUNTIME = ("obs", "reset_next", "returns")
#: attributes that are structure (rebuilt from the config), not state
_SKIP = {"env", "envs", "env_fns", "spec", "_saved_kwargs", "metadata", "_metadata", "render_mode", "_cached_spec"}


# --------------------------------------------------------------------------- plain-data encoding
def _encode(value: Any) -> Any:
    """``value`` as plain data (tensors, numbers, str, list, tuple, dict); raises TypeError otherwise."""
    if isinstance(value, np.ndarray | np.generic):  # first: np.float64 is also a float
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError("object arrays are not plain data")
        raw = torch.frombuffer(bytearray(np.ascontiguousarray(arr).tobytes()), dtype=torch.uint8)
        kind = "__ndarray__" if isinstance(value, np.ndarray) else "__npscalar__"
        return {kind: raw, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, collections.deque):
        return {"__deque__": [_encode(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if isinstance(value, dict) and all(isinstance(k, str | int) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not plain data")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        for kind in ("__ndarray__", "__npscalar__"):
            if kind in value:
                dtype = np.dtype(str(value["dtype"]))
                if dtype.hasobject:
                    raise CheckpointError("the checkpoint holds an object array; refusing to load it.")
                arr = np.frombuffer(value[kind].numpy().tobytes(), dtype=dtype).reshape(value["shape"]).copy()
                return arr if kind == "__ndarray__" else arr[()]
        if "__deque__" in value:
            return collections.deque((_decode(v) for v in value["__deque__"]), maxlen=value["maxlen"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    return value


# --------------------------------------------------------------------------- environment state
def _chain(env: Any) -> list[Any]:
    """Every object whose attributes hold state: the vector wrappers, the vector env, each sub-env's chain."""
    out, current = [], env
    while current is not None:
        out.append(current)
        current = getattr(current, "env", None)
    for sub in getattr(env.unwrapped, "envs", []):
        current = sub
        while current is not None:
            out.append(current)
            current = getattr(current, "env", None)
    return out


def _object_state(obj: Any) -> dict[str, Any]:
    """The plain-data attributes of ``obj``; small helper objects (e.g. ``RunningMeanStd``) one level deep."""
    state: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if key in _SKIP or key == "_np_random":
            continue
        try:
            state[key] = _encode(value)
        except TypeError:
            inner = getattr(value, "__dict__", None)
            if inner is None or type(value).__module__.startswith(("gymnasium.spaces", "mujoco")):
                continue
            try:
                state[key] = {"__attrs__": {k: _encode(v) for k, v in inner.items()}}
            except TypeError:
                continue  # structure (spaces, models, renderers): rebuilt from the config
    return state


def env_snapshot(env: Any) -> dict[str, Any]:
    """Plain-data state of a vector env built by :func:`~nashmp.rl.envs.make_vec_env` (see module docs)."""
    return {
        "types": [type(o).__name__ for o in _chain(env)],
        "attrs": [_object_state(o) for o in _chain(env)],
        "physics": _encode(env_state(env)),  # qpos/qvel/time and each sub-env's generator
    }


def restore_env_snapshot(env: Any, snapshot: dict[str, Any]) -> None:
    """Write :func:`env_snapshot` back into a freshly built env of the same configuration."""
    chain = _chain(env)
    if [type(o).__name__ for o in chain] != list(snapshot["types"]):
        raise CheckpointError(
            "the checkpoint's environment has other wrappers than this configuration builds "
            f"({snapshot['types']} vs {[type(o).__name__ for o in chain]}); resume with the saved settings."
        )
    for obj, attrs in zip(chain, snapshot["attrs"], strict=True):
        for key, value in attrs.items():
            if not hasattr(obj, key):
                continue
            if isinstance(value, dict) and "__attrs__" in value:
                target = getattr(obj, key)
                for k, v in value["__attrs__"].items():
                    setattr(target, k, _decode(v))
            else:
                setattr(obj, key, _decode(value))
    restore_env_state(env, _decode(snapshot["physics"]))


# --------------------------------------------------------------------------- agents
def save_agent(agent: Any, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write config, ``STATEFUL`` state dicts, env state, RNGs, counters and ``extra`` to ``path``."""
    blob = {
        "format": FORMAT,
        "config": _encode(asdict(agent.cfg)),
        "stateful": {name: getattr(agent, name).state_dict() for name in agent.STATEFUL},
        "env": env_snapshot(agent.env),
        "np_rng": _encode(agent.rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "extra": _encode(extra or {}),
        "progress": _encode(asdict(agent.progress)),
        **{k: _encode(getattr(agent, k)) for k in _RUNTIME},
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(blob, buf)
    tmp = p.with_name(p.name + ".tmp")
    if tmp.is_symlink():  # never write through a link planted next to the checkpoint
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(p)
    return p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary, read with torch's restricted unpickler (plain data only, no code)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}.")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is not ours (or cut short)
        raise CheckpointError(f"{p} is not a readable nashmp checkpoint (truncated or corrupt: not a torch archive).")
    try:
        blob = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it references {found.group(1)}" if found else "it is not plain data"
        raise CheckpointError(
            f"{p} holds objects other than plain data ({what}); nashmp refuses to load it, since unpickling "
            "them could run code. Checkpoints written up to b6b7c61 pickled the environment: retrain to resume."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{p} is not a readable nashmp checkpoint (truncated or corrupt: {exc}).") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a nashmp RL checkpoint (format {FORMAT} expected).")
    out: dict[str, Any] = dict(blob)
    out["config"] = _decode(blob["config"])
    return out


def load_agent_state(agent: Any, blob: dict[str, Any]) -> dict[str, Any]:
    """Restore what :func:`save_agent` wrote into a freshly built ``agent``; returns ``extra``."""
    try:
        for name, state in blob["stateful"].items():
            getattr(agent, name).load_state_dict(state)
        restore_env_snapshot(agent.env, blob["env"])
        agent.rng.bit_generator.state = _decode(blob["np_rng"])
        torch.set_rng_state(blob["torch_rng"])
        agent.progress = type(agent.progress)(**_decode(blob["progress"]))
        for k in _RUNTIME:
            setattr(agent, k, _decode(blob[k]))
        return dict(_decode(blob["extra"]))
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the checkpoint does not match this agent ({type(exc).__name__}: {exc}).") from None
