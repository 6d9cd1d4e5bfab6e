"""Prompt sets for LLM training and evaluation: the shipped default set, local files, or a ``datasets`` name.

A prompt is either a string (TRL's *standard* prompt-only format, ``{"prompt": "..."}``) or a conversation
(TRL's *conversational* format, ``{"prompt": [{"role": "system", "content": ...}, {"role": "user", ...}]}``):
roles ``system``, ``user`` and ``assistant``, ending with a ``user`` turn. The policy reads the whole
conversation through the tokenizer's chat template (applied once, with no second BOS); preference oracles
read :func:`prompt_text`, the last user turn (the question being answered).

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

__all__ = ["Prompt", "as_prompt", "default_prompts", "load_prompts", "prompt_messages", "prompt_text"]

#: a prompt: plain text, or a conversation (a tuple of ``{"role", "content"}`` messages ending with a user turn)
Prompt = str | tuple[dict[str, str], ...]
_ROLES = ("system", "user", "assistant")

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


def as_prompt(value: Any, where: str = "prompt") -> Prompt:
    """A string (stripped) or a validated conversation (a tuple of ``{"role", "content"}`` dicts).

    >>> as_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi? "}])[1]
    {'role': 'user', 'content': 'Hi?'}
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple) and value:
        messages = []
        for n, message in enumerate(value):
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise InvalidParameterError(
                    f"{where}: message {n} of a conversation must be {{'role': ..., 'content': <text>}}, got {message!r}."
                )
            if message["role"] not in _ROLES:
                raise InvalidParameterError(f"{where}: unknown role {message['role']!r}; use one of {list(_ROLES)}.")
            messages.append({"role": message["role"], "content": message["content"].strip()})
        if messages[-1]["role"] != "user":
            raise InvalidParameterError(f"{where}: a conversational prompt must end with a user turn (the question).")
        return tuple(messages)
    raise InvalidParameterError(f"{where}: a prompt is a string or a list of messages, got {value!r}.")


def prompt_text(prompt: Prompt) -> str:
    """What a preference oracle reads: the prompt itself, or a conversation's last user turn."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def prompt_messages(prompt: Prompt, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages of a prompt; ``system_prompt`` is prepended when the prompt has no system turn."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


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


def load_prompts(spec: str | Path | None = None, *, column: str = "prompt", split: str = "train") -> list[Prompt]:
    """Prompts from the default set, a local file, or a Hugging Face ``datasets`` name or folder.

    * ``None`` or ``"default"``: :func:`default_prompts` of ``split`` (train / test / all);
    * a ``.jsonl`` file: one JSON object per line, the prompt under ``column`` (bare JSON strings also work);
    * a ``.txt`` file: one prompt per line;
    * a ``.json`` file: a list of strings or of objects with ``column``, or an object mapping ``column`` to a list;
    * anything else (a hub name such as ``"owner/name"``, or a local folder): ``datasets.load_dataset(spec,
      split=split)[column]`` (``datasets`` is imported only then).

    Each value is a string or a conversation (module docs); blank prompts are dropped and surrounding
    whitespace is stripped; order and duplicates are kept.

    Raises:
        InvalidParameterError: a missing file, an unreadable record, a missing column, or no prompts at all.
        ImportError: a dataset name was given but ``datasets`` is not installed.
    """
    if spec is None or spec == "default":
        return list[Prompt](default_prompts(split))
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
    prompts: list[Prompt] = []
    for value in raw:
        if value is None:
            continue
        if not isinstance(value, str | list | tuple):
            raise InvalidParameterError(f"{where} has a non-text prompt {value!r} in column {column!r}.")
        prompt = as_prompt(value, where)
        if prompt:
            prompts.append(prompt)
    if not prompts:
        raise InvalidParameterError(f"dataset {str(spec)!r} has no prompts in column {column!r}.")
    return prompts
