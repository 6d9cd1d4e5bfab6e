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
import random
import re
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .envs import env_state, restore_env_state

__all__ = [
    "save_agent",
    "write_atomic",
    "read_plain_file",
    "read_checkpoint",
    "checkpoint_algo",
    "checkpoint_config",
    "load_agent_state",
    "env_snapshot",
    "restore_env_snapshot",
]

FORMAT = "nashmp-rl-checkpoint/2"
_RUNTIME = ("obs", "reset_next", "returns", "lengths")
#: runtime fields added after the format was fixed: a checkpoint without them loads with the fresh value
_OPTIONAL_RUNTIME = {"lengths"}
#: attributes that are structure (rebuilt from the config), not state
_SKIP = {"env", "envs", "env_fns", "spec", "_saved_kwargs", "metadata", "_metadata", "render_mode", "_cached_spec"}


# --------------------------------------------------------------------------- plain-data encoding
_SCALARS = (bool, int, float, str)


def _encode(value: Any) -> Any:
    """``value`` as plain data (tensors, numbers, str, list, tuple, dict); raises TypeError otherwise.

    Types are checked exactly (an ``IntEnum`` is not an ``int``, an ``OrderedDict`` not a ``dict``), so what
    is saved is what comes back; numpy arrays/scalars, deques, sets and numpy/Python random generators are
    tagged dictionaries.
    """
    if type(value) is np.ndarray or (isinstance(value, np.generic) and type(value).__module__ == "numpy"):
        arr = np.asarray(value)
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise TypeError("object or structured arrays are not plain data")
        data = np.ascontiguousarray(arr).tobytes()
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        kind = "__ndarray__" if isinstance(value, np.ndarray) else "__npscalar__"
        return {kind: raw, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if value is None or type(value) in _SCALARS or isinstance(value, torch.Tensor):
        return value
    if type(value) is collections.deque:
        return {"__deque__": [_encode(v) for v in value], "maxlen": value.maxlen}
    if type(value) is list:
        return [_encode(v) for v in value]
    if type(value) is tuple:
        return tuple(_encode(v) for v in value)
    if type(value) in (set, frozenset):
        return {"__set__": [_encode(v) for v in sorted(value, key=repr)], "frozen": type(value) is frozenset}
    if type(value) is dict and all(type(k) in (str, int) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    if type(value) is np.random.Generator:
        return {"__np_generator__": _encode(value.bit_generator.state)}
    if type(value) is random.Random:
        return {"__py_random__": _encode(value.getstate())}
    raise TypeError(f"{type(value).__name__} is not plain data")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        for kind in ("__ndarray__", "__npscalar__"):
            if kind in value:
                dtype = np.dtype(str(value["dtype"]))
                if dtype.hasobject or dtype.fields is not None:
                    raise CheckpointError("the checkpoint holds an object or structured array; refusing to load it.")
                arr = np.frombuffer(value[kind].numpy().tobytes(), dtype=dtype).reshape(value["shape"]).copy()
                return arr if kind == "__ndarray__" else arr[()]
        if "__deque__" in value:
            return collections.deque((_decode(v) for v in value["__deque__"]), maxlen=value["maxlen"])
        if "__set__" in value:
            items = [_decode(v) for v in value["__set__"]]
            return frozenset(items) if value["frozen"] else set(items)
        if "__np_generator__" in value or "__py_random__" in value:
            return _GeneratorState(value)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    return value


class _GeneratorState:
    """A saved random generator's state, written into the fresh object's own generator on restore."""

    def __init__(self, tagged: dict[str, Any]) -> None:
        self.numpy = "__np_generator__" in tagged
        self.state = _decode(tagged["__np_generator__" if self.numpy else "__py_random__"])

    def apply(self, target: Any, where: str) -> None:
        if self.numpy and type(target) is np.random.Generator:
            target.bit_generator.state = self.state
        elif not self.numpy and type(target) is random.Random:
            target.setstate(self.state)
        else:
            raise CheckpointError(f"{where}: the checkpoint holds a random generator where this env has none.")


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


def _is_structure(value: Any) -> bool:
    """Built from the config, not state: envs, spaces, specs, enums, callables, MuJoCo/renderer objects."""
    import enum
    import types

    import gymnasium as gym

    if isinstance(
        value, gym.Env | gym.Wrapper | gym.vector.VectorEnv | gym.spaces.Space | gym.envs.registration.EnvSpec
    ):
        return True
    if isinstance(value, enum.Enum | type | types.ModuleType) or callable(value):
        return True
    module = type(value).__module__ or ""
    return module.startswith(("mujoco", "gymnasium.envs.mujoco", "pygame"))


def _object_state(obj: Any, where: str, depth: int = 0) -> dict[str, Any]:
    """The plain-data attributes of ``obj`` (helper objects such as ``RunningMeanStd`` recursively)."""
    state: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if key in _SKIP or key.startswith("__"):
            continue
        try:
            state[key] = _encode(value)
            continue
        except TypeError:
            pass
        if _is_structure(value):
            continue
        if hasattr(value, "__dict__") and depth < 3:
            state[key] = {"__attrs__": _object_state(value, f"{where}.{key}", depth + 1)}
            continue
        warnings.warn(  # never silently: an env whose state cannot be saved will not resume exactly
            f"{where}.{key} ({type(value).__name__}) cannot be saved as plain data; a resumed run may differ.",
            RuntimeWarning,
            stacklevel=3,
        )
    return state


def env_snapshot(env: Any) -> dict[str, Any]:
    """Plain-data state of a vector env built by :func:`~nashmp.rl.envs.make_vec_env` (see module docs)."""
    chain = _chain(env)
    return {
        "types": [type(o).__name__ for o in chain],
        "attrs": [_object_state(o, type(o).__name__) for o in chain],
        "physics": _encode(env_state(env)),  # MuJoCo integration state and each sub-env's generator
    }


def _numeric(x: Any) -> bool:
    return isinstance(x, bool | int | float | np.number | np.bool_ | np.ndarray) and np.asarray(x).dtype.kind in "biufc"


def _same_kind(old: Any, new: Any) -> bool:
    """Whether a restored value may replace the fresh one: numbers for numbers (running statistics turn 0-d
    arrays into numpy scalars), otherwise the same type; None on either side is an unset field."""
    if old is None or new is None:
        return True
    if _numeric(old) or _numeric(new):
        return _numeric(old) and _numeric(new)
    return type(old) is type(new)


def _restore_attrs(obj: Any, attrs: Any, where: str) -> None:
    if not isinstance(attrs, dict):
        raise CheckpointError(f"{where}: malformed environment state in the checkpoint.")
    own = vars(obj)
    for key, value in attrs.items():
        if not isinstance(key, str) or key.startswith("__") or key in _SKIP or key not in own:
            continue  # only the fresh object's own data attributes, never dunders or structure
        current = own[key]
        if isinstance(value, dict) and "__attrs__" in value:
            if _is_structure(current) or not hasattr(current, "__dict__"):
                raise CheckpointError(f"{where}.{key}: the checkpoint's state does not fit this environment.")
            _restore_attrs(current, value["__attrs__"], f"{where}.{key}")
            continue
        decoded = _decode(value)
        if isinstance(decoded, _GeneratorState):
            decoded.apply(current, f"{where}.{key}")
            continue
        if not _same_kind(current, decoded):
            raise CheckpointError(
                f"{where}.{key}: the checkpoint holds a {type(decoded).__name__} where this environment has a "
                f"{type(current).__name__}."
            )
        setattr(obj, key, decoded)


def restore_env_snapshot(env: Any, snapshot: dict[str, Any]) -> None:
    """Write :func:`env_snapshot` back into a freshly built env of the same configuration."""
    chain = _chain(env)
    if not isinstance(snapshot, dict) or [type(o).__name__ for o in chain] != list(snapshot.get("types", [])):
        raise CheckpointError(
            "the checkpoint's environment has other wrappers than this configuration builds; resume with the "
            "saved settings."
        )
    for obj, attrs in zip(chain, snapshot["attrs"], strict=True):
        _restore_attrs(obj, attrs, type(obj).__name__)
    restore_env_state(env, _decode(snapshot["physics"]))


# --------------------------------------------------------------------------- agents
def write_atomic(blob: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(blob)`` to ``path`` through a temporary file and a rename (a crash keeps the old file)."""
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


def save_agent(agent: Any, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write config, ``STATEFUL`` state dicts, env state, RNGs, counters and ``extra`` to ``path``."""
    blob = {
        "format": FORMAT,
        "algo": agent.ALGO,
        "config": _encode(asdict(agent.cfg)),
        "stateful": {name: getattr(agent, name).state_dict() for name in agent.STATEFUL},
        "env": env_snapshot(agent.env),
        "np_rng": _encode(agent.rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "extra": _encode(extra or {}),
        "progress": _encode(asdict(agent.progress)),
        **{k: _encode(getattr(agent, k)) for k in _RUNTIME},
    }
    return write_atomic(blob, path)


def read_plain_file(path: str | Path, what: str = "nashmp checkpoint") -> dict[str, Any]:
    """A ``torch.save`` dictionary read with torch's restricted unpickler (plain data only, no code)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no {what.removeprefix('nashmp ')} at {p}.")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is not ours (or cut short)
        raise CheckpointError(f"{p} is not a readable {what} (truncated or corrupt: not a torch archive).")
    try:
        blob = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        reason = f"it references {found.group(1)}" if found else "it is not plain data"
        raise CheckpointError(
            f"{p} holds objects other than plain data ({reason}); nashmp refuses to load it, since unpickling "
            "them could run code. Checkpoints written up to b6b7c61 pickled the environment: retrain to resume."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{p} is not a readable {what} (truncated or corrupt: {exc}).") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{p} is not a {what}.")
    return blob


def read_checkpoint(path: str | Path, *, blob: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dictionary, read with torch's restricted unpickler (plain data only, no code); ``blob``:
    the file already read by :func:`read_plain_file`."""
    p = Path(path)
    blob = read_plain_file(p) if blob is None else blob
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a nashmp RL checkpoint (format {FORMAT} expected).")
    out: dict[str, Any] = dict(blob)
    try:
        out["config"] = _decode(blob.get("config"))
    except (KeyError, TypeError, ValueError, AttributeError):  # a tagged value missing its dtype, shape, ...
        raise CheckpointError(f"{p}: the checkpoint's config is malformed.") from None
    if not isinstance(out["config"], dict):
        raise CheckpointError(f"{p}: the checkpoint's config is not a mapping of field: value.")
    return out


def checkpoint_algo(blob: dict[str, Any]) -> str:
    """``mdpo`` or ``mdpo-off``: recorded since the light policy file; older checkpoints by their fields."""
    algo = blob.get("algo")
    if algo in ("mdpo", "mdpo-off"):
        return str(algo)
    if algo is None and isinstance(blob.get("config"), dict):
        return "mdpo-off" if "buffer_size" in blob["config"] else "mdpo"
    raise CheckpointError(f"the checkpoint names an unknown algorithm {algo!r}.")


def checkpoint_config(
    config_cls: type, blob: dict[str, Any], overrides: dict[str, Any], absent: dict[str, Any] | None = None
) -> Any:
    """The agent config saved in ``blob`` (+ ``overrides``), treated as untrusted input; a field the file lacks
    takes its value from ``absent`` where given (what a checkpoint from before that field ran with), else the
    config's default.

    Every field is coerced to its declared type, unknown fields are refused, and the environment id must be a
    registered gymnasium id without a ``module:`` prefix — gymnasium imports that module to make the env, so a
    crafted checkpoint could otherwise run code. (An id passed explicitly in ``overrides`` is the user's own.)
    """
    import gymnasium as gym

    from .._fields import coerce_fields
    from ..errors import NashMPValueError

    saved = blob.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError("the checkpoint's config is not a mapping of field: value.")
    try:
        fields = coerce_fields(config_cls, {**(absent or {}), **saved, **overrides})
    except NashMPValueError as exc:
        raise CheckpointError(f"the checkpoint's config is invalid: {exc}") from None
    env_id = fields.get("env_id")
    if "env_id" not in overrides and (not isinstance(env_id, str) or ":" in env_id or env_id not in gym.registry):
        raise CheckpointError(
            f"the checkpoint's env_id {env_id!r} is not a registered gymnasium id; pass --env to name the environment."
        )
    try:
        return config_cls(**fields)
    except NashMPValueError as exc:
        raise CheckpointError(f"the checkpoint's config is invalid: {exc}") from None


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
            if k in blob or k not in _OPTIONAL_RUNTIME:
                setattr(agent, k, _decode(blob[k]))
        return dict(_decode(blob["extra"]))
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the checkpoint does not match this agent ({type(exc).__name__}: {exc}).") from None
