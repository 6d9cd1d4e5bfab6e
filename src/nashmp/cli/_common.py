"""Helpers shared by the CLI modules (so that no two command modules import each other).

One-line errors (:class:`CLIError`, :class:`Parser`), the typed ``argparse`` type of a config field, the
``--param [NAME:]KEY=VALUE`` parser, and the ``--help`` text generated from a config dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

__all__ = [
    "CLIError",
    "Parser",
    "field_type",
    "parse_params",
    "params_for",
    "check_param_targets",
    "config_fields_help",
    "type_name",
]


class CLIError(Exception):
    """An error reported as a single line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``nashmp: error: ...``) instead of usage + message.

    ``epilog_factory`` builds the epilog only when help is shown (the config's field help imports its
    module, which may need torch; ``nashmp --version`` should not pay for it).
    """

    def __init__(self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any) -> None:
        if epilog_factory is not None:
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None and self.epilog is None:
            self.epilog = self._epilog_factory()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"nashmp: error: {message} (see `{self.prog} --help`)\n")


def field_type(name: str, annotation: Any) -> Callable[[str], Any]:
    """argparse ``type=`` for a field: the configs' own typed coercion (one implementation for flags and YAML)."""
    from .._fields import coerce_value
    from ..errors import InvalidParameterError

    def parse(text: str) -> Any:
        try:
            return coerce_value(name, text, annotation)
        except InvalidParameterError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _parse_value(text: str) -> Any:
    """JSON when it parses (``0.2``, ``null``, ``[1, 2]``), else the text; typed later by the target's fields."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``[name:]key=value`` → ``{name or '*': {key: value}}`` (``-`` in keys read as ``_``)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--param expects [NAME:]KEY=VALUE, got {item!r} (KEY=VALUE)")
        lhs, value = item.split("=", 1)
        name, _, key = lhs.rpartition(":")
        if not key.strip():
            raise CLIError(f"--param expects [NAME:]KEY=VALUE, got {item!r} (KEY=VALUE)")
        out.setdefault(name or "*", {})[key.strip().replace("-", "_")] = _parse_value(value)
    return out


def check_param_targets(params: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    """Refuse a ``--param NAME:KEY=VALUE`` whose NAME is not run: it would be silently ignored."""
    run = list(names)
    stray = sorted(set(params) - {"*", *run})
    if stray:
        raise CLIError(f"--param given for {what}(s) {stray} that this run does not include ({run})")


def params_for(name: str, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters of one algorithm/recipe: the unprefixed ones, overridden by ``name:``-prefixed ones."""
    return {**params.get("*", {}), **params.get(name, {})}


def type_name(annotation: Any) -> str:
    """``int``, ``float | None``, ``list[str]``: the annotation as a reader writes it."""
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def config_fields_help(
    cls: type, *, choices: Mapping[str, Iterable[str]] | None = None, skip: Iterable[str] = (), width: int = 100
) -> str:
    """One entry per field of the dataclass ``cls``: name, type, default, its docstring and its choices.

    Used as the ``--help`` epilog of commands whose config is set by ``--param KEY=VALUE``.
    """
    from .._fields import field_docs

    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    choices = choices or {}
    skipped = set(skip)
    lines = [f"{cls.__name__} fields (--param KEY=VALUE):"]
    for f in dataclasses.fields(cls):
        if f.name in skipped:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "required"
        text = docs.get(f.name, "")
        if f.name in choices:
            text += " Choices: " + ", ".join(choices[f.name]) + "."
        head = f"  {f.name} [{type_name(hints[f.name])}; default: {default}]"
        lines.append(head)
        if text:
            lines.extend(textwrap.wrap(text, width=width, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)
