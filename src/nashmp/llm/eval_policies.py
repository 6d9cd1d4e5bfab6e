"""Policies for :mod:`nashmp.llm.evaluate`: resolve a spec (``ref``, an offline alias, a training folder) to a
:class:`PolicySource` without loading weights, then load it (LoRA adapters on their base, or a full model)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .models import OFFLINE_ALIASES, ModelNotFoundError, cache_dir, prepare_tokenizer, resolve_model_path

__all__ = ["REFERENCE_NAMES", "PolicySource", "resolve_policy", "load_policy"]

#: Policy names that mean "the base model" (π_ref) in :func:`resolve_policy`.
REFERENCE_NAMES = ("ref",)


@dataclass(frozen=True)
class PolicySource:
    """What :func:`load_policy` will load, resolved and validated without touching any weights.

    ``kind`` is ``"base"`` (an offline alias or a full model folder: loaded as is) or ``"adapter"`` (a
    PEFT folder: ``base`` plus the adapters in ``path``). Equal sources load equal models.
    """

    kind: Literal["base", "adapter"]
    path: str
    base: str | None = None


def _offline_folder() -> Path:
    return (cache_dir() / "smollm2-135m-instruct").resolve()


def _canonical_base(name_or_path: str) -> str:
    """``resolve_model_path`` plus one name for the offline model (its alias or its converted folder)."""
    if name_or_path in OFFLINE_ALIASES:
        resolve_model_path(name_or_path)
        return "smollm2"
    path = Path(name_or_path).expanduser()
    if path.is_dir() and path.resolve() == _offline_folder():
        return "smollm2"
    if not path.exists() and path.name == "smollm2-135m-instruct":  # an adapter saved with another cache dir
        resolve_model_path("smollm2")
        return "smollm2"
    return resolve_model_path(name_or_path)


def resolve_policy(spec: str, *, base: str = "smollm2") -> PolicySource:
    """Validate a policy spec *before* any weights are loaded (one-line :class:`ModelNotFoundError` otherwise).

    * ``"ref"`` → the base model ``base`` (write ``./ref`` for a folder called ``ref``);
    * an offline alias (``"smollm2"``) or a full model folder (``config.json``, e.g. ``save_model`` of a
      full fine-tune) → that model;
    * a folder with ``adapter_config.json`` (``save_model`` of a LoRA run) → its
      ``base_model_name_or_path`` plus the adapters.
    """
    if not isinstance(spec, str) or not spec:
        raise ModelNotFoundError(f"a policy must be a non-empty string, got {spec!r}.")
    if spec in REFERENCE_NAMES:
        return PolicySource("base", _canonical_base(base))
    if spec in OFFLINE_ALIASES:
        return PolicySource("base", _canonical_base(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            try:
                adapter = json.loads((path / "adapter_config.json").read_text())
            except ValueError as exc:
                raise ModelNotFoundError(f"policy {spec!r}: adapter_config.json is not valid JSON ({exc}).") from None
            recorded = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
            if not recorded:
                raise ModelNotFoundError(
                    f"policy {spec!r}: adapter_config.json does not name its base model (base_model_name_or_path)."
                )
            try:
                base_path = _canonical_base(str(recorded))
            except ModelNotFoundError as exc:
                raise ModelNotFoundError(f"policy {spec!r}: its base model is unavailable: {exc}") from None
            return PolicySource("adapter", str(path), base_path)
        if (path / "config.json").is_file():
            return PolicySource("base", _canonical_base(str(path)))
        hint = f" (did you mean {path / 'final'}?)" if (path / "final").is_dir() else ""
        raise ModelNotFoundError(
            f"policy folder {spec!r} has neither adapter_config.json (LoRA adapters) nor config.json (a full "
            f"model){hint}."
        )
    if path.exists():
        raise ModelNotFoundError(f"policy {spec!r} is a file; give a model folder (e.g. runs/NAME/final).")
    if spec.count("/") == 1 and not path.suffix and not spec.startswith((".", "~")):
        return PolicySource("base", resolve_model_path(spec))  # a hub id in the local cache
    raise ModelNotFoundError(
        f"policy {spec!r} not found: give 'ref', an offline alias ({OFFLINE_ALIASES[0]}) or a folder written by "
        "NashMPTrainer.save_model (e.g. runs/NAME/final)."
    )


def load_policy(
    spec: str | PolicySource, *, base: str = "smollm2", dtype: str = "float32", merge: bool = True
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a policy spec (see :func:`resolve_policy`), in eval mode, without gradients.

    LoRA folders are loaded as the base model (through :func:`~nashmp.llm.models.load_model_and_tokenizer`)
    plus ``peft.PeftModel.from_pretrained``, merged into the weights (``merge_and_unload``) unless
    ``merge=False``; the tokenizer is the one saved next to the adapters when present. Every call
    loads fresh weights (merging modifies the base in place, so bases are never shared).
    """
    from .models import load_model_and_tokenizer

    source = spec if isinstance(spec, PolicySource) else resolve_policy(spec, base=base)
    if source.kind == "base":
        model, tokenizer = load_model_and_tokenizer(source.path, dtype=dtype)
    else:
        from peft import PeftModel
        from transformers import AutoTokenizer

        assert source.base is not None
        model, tokenizer = load_model_and_tokenizer(source.base, dtype=dtype)
        with warnings.catch_warnings():  # peft reads a deprecated transformers alias (harmless)
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, source.path)
        if merge:
            model = model.merge_and_unload()
        if (Path(source.path) / "tokenizer_config.json").is_file():
            tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source.path))
    model.eval().requires_grad_(False)
    return model, tokenizer
