"""Named hyper-parameter presets for the RL agents, read from ``presets.json`` (shipped with the package).

A preset is a set of config fields under a name, per algorithm (``mdpo``, ``mdpo-off``): ``params`` apply to
every environment, ``envs`` add per-environment entries keyed by the id without its version (``Hopper``
covers ``Hopper-v4`` and ``Hopper-v5``; an exact id wins). Several presets apply left to right, and explicit
fields win over every preset::

    MDPOConfig.from_preset("release", env_id="Hopper-v5", total_steps=1_000_000)
    MDPOConfig.from_preset(["release", "zoo"], env_id="Hopper-v5")   # release values, the zoo's n_steps

The file is validated when first read (every key must be a field of the algorithm's config, every value of
its type), so a typo in it is one named error, not a silently ignored setting. docs/rl.md tabulates it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._fields import coerce_fields
from ..errors import InvalidParameterError

__all__ = ["PRESET_FILE", "load_presets", "preset_names", "preset_params", "config_from_preset"]

PRESET_FILE = Path(__file__).with_name("presets.json")
_ENTRY_KEYS = {"description", "source", "params", "envs"}


def _config_class(algo: str) -> type:
    if algo == "mdpo":
        from .mdpo import MDPOConfig

        return MDPOConfig
    if algo == "mdpo-off":
        from .mdpo_off import MDPOOffConfig

        return MDPOOffConfig
    raise InvalidParameterError(f"presets are defined for mdpo and mdpo-off, not {algo!r}.")


def _check_fields(cls: type, values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise InvalidParameterError(f"{where} must map config fields to values, got {values!r}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidParameterError(f"{where} sets unknown {cls.__name__} field(s) {unknown}.")
    try:
        return coerce_fields(cls, values)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc}") from None


@functools.cache
def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(f"cannot read the preset file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameterError(f"{path} must map algorithms to presets.")
    out: dict[str, dict[str, Any]] = {}
    for algo, presets in data.items():
        cls = _config_class(algo)
        if not isinstance(presets, dict):
            raise InvalidParameterError(f"{path}: the presets of {algo} must be a mapping of name to preset.")
        out[algo] = {}
        for name, entry in presets.items():
            where = f"{path.name}: preset {name!r} of {algo}"
            if not isinstance(entry, dict) or set(entry) - _ENTRY_KEYS or not {"params", "envs"} & set(entry):
                raise InvalidParameterError(
                    f"{where} must hold 'params' and/or 'envs' (allowed keys: {sorted(_ENTRY_KEYS)})."
                )
            envs = entry.get("envs", {})
            if not isinstance(envs, dict):
                raise InvalidParameterError(f"{where}: 'envs' must map environment names to fields.")
            out[algo][name] = {
                "description": str(entry.get("description", "")),
                "params": _check_fields(cls, entry.get("params", {}), where),
                "envs": {env: _check_fields(cls, v, f"{where}, env {env!r}") for env, v in envs.items()},
            }
    return out


def load_presets(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{algo: {name: {"description", "params", "envs"}}}`` from ``path`` (default: the shipped file), validated."""
    return _load(Path(path) if path is not None else PRESET_FILE)


def preset_names(algo: str) -> list[str]:
    """The presets defined for ``algo``."""
    return sorted(load_presets().get(algo, {}))


def _env_entry(envs: dict[str, dict[str, Any]], env_id: str) -> dict[str, Any] | None:
    if env_id in envs:
        return envs[env_id]
    base = re.sub(r"-v\d+$", "", env_id.rpartition("/")[2])
    return envs.get(base)


def preset_params(algo: str, preset: str | Sequence[str], env_id: str) -> dict[str, Any]:
    """The config fields that the named preset(s) set for ``env_id`` (later presets win).

    Raises :class:`InvalidParameterError` for an unknown name, or for a preset that has only per-environment
    entries and none for ``env_id``.
    """
    names = [preset] if isinstance(preset, str) else list(preset)
    known = load_presets().get(algo, {})
    fields: dict[str, Any] = {}
    for name in names:
        if name not in known:
            raise InvalidParameterError(
                f"unknown preset {name!r} for {algo}; presets: {', '.join(sorted(known)) or 'none'} (docs/rl.md)."
            )
        entry = known[name]
        per_env = _env_entry(entry["envs"], env_id)
        if per_env is None and not entry["params"]:
            covered = ", ".join(sorted(entry["envs"]))
            raise InvalidParameterError(
                f"preset {name!r} of {algo} has no entry for {env_id!r}; it covers {covered}. Set the fields "
                "with --param instead."
            )
        fields.update(entry["params"])
        fields.update(per_env or {})
    return fields


def config_from_preset(algo: str, preset: str | Sequence[str], **fields: Any) -> Any:
    """The config of ``algo`` with the preset(s) applied, then ``fields`` (explicit values win)."""
    cls = _config_class(algo)
    fields = _check_fields(cls, fields, "from_preset")
    env_id = fields.get("env_id", next(f.default for f in dataclasses.fields(cls) if f.name == "env_id"))
    return cls(**{**preset_params(algo, preset, env_id), **fields})
