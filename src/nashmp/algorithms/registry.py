"""Algorithms by name, for the runner and the CLI."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from .._fields import coerce_value
from ..errors import InvalidParameterError
from .adaptive import adaptive_nash_mp
from .base import Algorithm
from .mirror_descent import egpo, nash_md, omd, onpo, sppo
from .mpo import mpo
from .nash_mp import nash_mp
from .online_ipo import online_ipo
from .proximal_point import proximal_point

__all__ = ["ALGORITHMS", "make_algorithm"]

#: name → factory. ``inpo`` is an alias of ``omd`` (exact INPO is OMD with KL to π_ref).
ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    "nash-mp": nash_mp,
    "adaptive-nash-mp": adaptive_nash_mp,
    "proximal-point": proximal_point,
    "nash-md": nash_md,
    "omd": omd,
    "inpo": omd,
    "egpo": egpo,
    "mpo": mpo,
    "sppo": sppo,
    "onpo": onpo,
    "online-ipo": online_ipo,
}


def make_algorithm(name: str | Algorithm, **params: Any) -> Algorithm:
    """Build an algorithm from its name and keyword parameters (or pass an :class:`Algorithm` through)."""
    if isinstance(name, Algorithm):
        if params:
            raise InvalidParameterError("parameters cannot be given together with an already built Algorithm.")
        return name
    key = str(name).lower().replace("_", "-")
    if key not in ALGORITHMS:
        raise InvalidParameterError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}.")
    factory = ALGORITHMS[key]
    hints = _hints(factory)
    # typed like the configs: `--param decay=False` is the bool False, not the truthy string 'False'
    params = {k: coerce_value(k, v, hints[k]) if k in hints else v for k, v in params.items()}
    try:
        return factory(**params)
    except TypeError as exc:
        raise InvalidParameterError(f"bad parameters for {key}: {exc}") from None


def _hints(factory: Callable[..., Algorithm]) -> dict[str, Any]:
    """The annotated keyword parameters of an algorithm factory (``eta: float | None``, ``decay: bool``)."""
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: pass values through untyped
        return {}
    hints.pop("return", None)
    return hints
