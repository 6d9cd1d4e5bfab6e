"""Prompt sets for LLM training and evaluation: the shipped default set, local files, or a ``datasets`` name.

The default set (``nashmp/llm/data/prompts.jsonl``, 215 prompts written for this project) holds short
instructions, questions, advice and creative requests that a small model can answer in one to three
sentences, so that runs on a CPU finish and judges compare complete answers.

>>> prompts = default_prompts()
>>> len(prompts) >= 150 and all(isinstance(p, str) and p for p in prompts)
True
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["default_prompts", "load_prompts"]

_FILE_SUFFIXES = (".jsonl", ".json", ".txt")


@functools.cache
def _default_prompts() -> tuple[str, ...]:
    text = (resources.files("nashmp.llm") / "data" / "prompts.jsonl").read_text(encoding="utf-8")
    return tuple(_from_jsonl(text, "prompt", "the default prompt set"))


#: Splits of the default set: every fifth prompt is held out for evaluation (``test``, 43 prompts).
DEFAULT_SPLITS = ("train", "test", "all")


def default_prompts(split: str = "all") -> list[str]:
    """The shipped default prompt set (a fresh list; callers may shuffle it).

    ``split="train"`` keeps prompts whose index is not ≡ 4 (mod 5), ``"test"`` the others, so training
    (``NashMPConfig.dataset_split="train"``) and ``nashmp eval`` (``--split test``) never share a prompt.

    >>> len(default_prompts("train")) + len(default_prompts("test")) == len(default_prompts())
    True
    """
    prompts = _default_prompts()
    if split == "all":
        return list(prompts)
    if split not in DEFAULT_SPLITS:
        raise InvalidParameterError(f"the default prompt set has splits {list(DEFAULT_SPLITS)}, not {split!r}.")
    held_out = split == "test"
    return [p for i, p in enumerate(prompts) if (i % 5 == 4) == held_out]


def _pick(record: Any, column: str, where: str) -> Any:
    """The prompt of one record: a bare string, or ``record[column]`` of an object."""
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if column not in record:
            raise InvalidParameterError(
                f"{where} has a record without the column {column!r} (its keys: {sorted(record)[:8]}); "
                "pass column= to pick the prompt field."
            )
        return record[column]
    raise InvalidParameterError(
        f"{where} holds a {type(record).__name__}, expected strings or objects with {column!r}."
    )


def _from_jsonl(text: str, column: str, where: str) -> list[Any]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InvalidParameterError(f"{where}, line {number}, is not valid JSON: {exc}.") from None
        out.append(_pick(record, column, f"{where}, line {number},"))
    return out


def _from_json(text: str, column: str, where: str) -> list[Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidParameterError(f"{where} is not valid JSON: {exc}.") from None
    if isinstance(data, dict):  # column-oriented: {"prompt": [...], ...}
        if not isinstance(data.get(column), list):
            raise InvalidParameterError(
                f"{where} is a JSON object without a list under {column!r}; give a list of records or pass column=."
            )
        return list(data[column])
    if isinstance(data, list):
        return [_pick(record, column, where) for record in data]
    raise InvalidParameterError(f"{where} holds a JSON {type(data).__name__}; expected a list of prompts or records.")


def _from_datasets(spec: str, column: str, split: str) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading the prompt set {spec!r} needs the `datasets` package: pip install datasets "
            "(or give a .jsonl/.txt/.json file)"
        ) from None
    if (Path(spec) / "state.json").is_file() or (Path(spec) / "dataset_dict.json").is_file():
        saved = datasets.load_from_disk(spec)  # a folder written by Dataset(Dict).save_to_disk
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise InvalidParameterError(f"dataset {spec!r} has splits {list(saved)}, not {split!r}.")
            saved = saved[split]
        dataset = saved
    else:
        try:
            dataset = datasets.load_dataset(spec, split=split)
        except Exception as exc:  # datasets raises many types: unknown name offline, missing split, bad files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidParameterError(f"cannot load dataset {spec!r} (split {split!r}): {reason}") from None
    if column not in dataset.column_names:
        raise InvalidParameterError(
            f"dataset {spec!r} (split {split!r}) has no column {column!r}; its columns: {dataset.column_names}."
        )
    return list(dataset[column])


def load_prompts(spec: str | Path | None = None, *, column: str = "prompt", split: str = "train") -> list[str]:
    """Prompts from the default set, a local file, or a Hugging Face ``datasets`` name or folder.

    * ``None`` or ``"default"``: :func:`default_prompts` of ``split`` (train / test / all);
    * a ``.jsonl`` file: one JSON object per line, the prompt under ``column`` (bare JSON strings also work);
    * a ``.txt`` file: one prompt per line;
    * a ``.json`` file: a list of strings or of objects with ``column``, or an object mapping ``column`` to a list;
    * anything else (a hub name such as ``"owner/name"``, or a local folder): ``datasets.load_dataset(spec,
      split=split)[column]`` (``datasets`` is imported only then).

    Blank prompts are dropped and surrounding whitespace is stripped; order and duplicates are kept.

    Raises:
        InvalidParameterError: a missing file, an unreadable record, a missing column, or no prompts at all.
        ImportError: a dataset name was given but ``datasets`` is not installed.
    """
    if spec is None or spec == "default":
        return default_prompts(split)
    path = Path(spec).expanduser()
    where = f"prompt file {str(spec)!r}"
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in _FILE_SUFFIXES:
            raise InvalidParameterError(
                f"{where} has an unknown type {suffix!r}; use one of {', '.join(_FILE_SUFFIXES)}."
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterError(f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
        if suffix == ".jsonl":
            raw = _from_jsonl(text, column, where)
        elif suffix == ".json":
            raw = _from_json(text, column, where)
        else:
            raw = text.splitlines()
    elif path.is_dir():  # a datasets folder: data files, or save_to_disk output
        raw = _from_datasets(str(path), column, split)
    elif isinstance(spec, Path) or path.suffix.lower() in _FILE_SUFFIXES or str(spec).startswith(("/", ".", "~")):
        raise InvalidParameterError(
            f"{where} does not exist; give an existing .jsonl/.txt/.json file, a datasets name, or None for the default set."
        )
    else:
        raw = _from_datasets(str(spec), column, split)
    prompts = []
    for value in raw:
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidParameterError(f"{where} has a non-text prompt {value!r} in column {column!r}.")
        if value.strip():
            prompts.append(value.strip())
    if not prompts:
        raise InvalidParameterError(f"dataset {str(spec)!r} has no prompts in column {column!r}.")
    return prompts
