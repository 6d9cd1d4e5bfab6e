"""Dataclass configs that document and validate themselves: field docstrings for ``--help``, and values
coerced to each field's declared type (YAML reads ``1e-4`` as a string) before anything else runs."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from typing import Any

from .errors import InvalidParameterError

__all__ = ["field_docs", "coerce_fields", "coerce_value"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (``x: int = 0`` then ``\"\"\"doc\"\"\"``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (frozen app): no help text rather than a crash
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def coerce_value(name: str, value: Any, kind: Any) -> Any:
    """``value`` converted to the annotation ``kind`` (``int``, ``float | None``, ``list[str]``, ...), or a
    one-line :class:`InvalidParameterError` naming the field."""
    return _coerce(name, value, kind)


def _coerce(name: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if origin is list:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidParameterError(f"{name} must be a list of strings, got {value!r}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):  # YAML `1`/`0`, like the flag `--use-peft 1`
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidParameterError(f"{name} must be true or false, got {value!r}.")
    if kind is int:
        if isinstance(value, bool):
            raise InvalidParameterError(f"{name} must be an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())  # exact for big integers
        except ValueError:
            pass
        try:
            number = float(str(value).strip())
        except ValueError:
            raise InvalidParameterError(f"{name} must be an integer, got {value!r}.") from None
        if not (math.isfinite(number) and number == int(number)):
            raise InvalidParameterError(f"{name} must be an integer, got {value!r}.")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise InvalidParameterError(f"{name} must be a number, got {value!r}.")
        try:
            number = float(value) if isinstance(value, int | float) else float(str(value).strip())
        except ValueError:
            raise InvalidParameterError(f"{name} must be a number, got {value!r}.") from None
        if not math.isfinite(number):
            raise InvalidParameterError(f"{name} must be a finite number, got {value!r}.")
        return number
    if kind is str:
        if isinstance(value, str):
            return value
        raise InvalidParameterError(f"{name} must be a string, got {value!r}.")
    return value


def coerce_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every value converted to its field's declared type, or a one-line error naming the field."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys need not be strings (`1: 2`)
    if unknown:
        raise InvalidParameterError(f"unknown config field(s) {unknown}; see `nashmp train --help`.")
    hints = typing.get_type_hints(cls)
    return {k: _coerce(k, v, hints[k]) for k, v in data.items()}
