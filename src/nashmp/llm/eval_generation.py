"""Generation for :mod:`nashmp.llm.evaluate`: every policy's completions of every prompt from its own seeded
streams, with their lengths and sequence log-ratios to the reference (module docstring of
:mod:`nashmp.llm.evaluate`, steps 1 and 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._numerics import FloatArray
from .models import prepare_tokenizer
from .prompts import Prompt
from .sampling import ModelView, completion_log_probs, encode_prompts, eval_mode, model_device, sample_completions

__all__ = ["generate", "encode_prompts"]


def _stream_seed(*keys: int) -> int:
    """A torch seed from integer keys (``numpy.random.SeedSequence`` mixing: distinct keys, unrelated streams)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


@dataclass
class _Generations:
    texts: list[list[str]]  # [sample][prompt]
    lengths: FloatArray  # (s, n) tokens, EOS included
    log_ratio: FloatArray  # (s, n) Σ_t log π − log π_ref (nan without a reference)


def _same_vocab(a: Any, b: Any) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    temperature: float,
    samples_per_prompt: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    max_prompt_length: int = 128,
    system_prompt: str | None = None,
    reference: tuple[Any, Any] | None = None,
    on_batch: Any = None,
) -> _Generations:
    """``samples_per_prompt`` completions of every prompt, with their lengths and, given
    ``reference=(model, tokenizer)`` and T > 0, the sequence log-ratios to the reference. ``system_prompt``
    is prepended to prompts without a system turn, as in training (``NashMPConfig.system_prompt``).

    Batch b of sample k is drawn from torch's CPU stream seeded by ``(seed, k, b)`` inside
    ``torch.random.fork_rng`` (the global RNG is left untouched), so equal models and seeds give equal
    completions. A policy's tokenizer is set to left padding with a pad token (:func:`prepare_tokenizer`).
    """
    n = len(prompts)
    prepare_tokenizer(tokenizer)
    texts: list[list[str]] = [["" for _ in range(n)] for _ in range(samples_per_prompt)]
    lengths = np.zeros((samples_per_prompt, n))
    log_ratio = np.full((samples_per_prompt, n), np.nan)
    ref_model = None
    if reference is not None and temperature > 0 and _same_vocab(tokenizer, reference[1]):
        ref_model = reference[0]
    device = model_device(model)
    view = ModelView(model)
    with eval_mode(model):
        for k in range(samples_per_prompt):
            for b, start in enumerate(range(0, n, batch_size)):
                rows = list(prompts[start : start + batch_size])
                ids, mask = encode_prompts(tokenizer, rows, max_length=max_prompt_length, system_prompt=system_prompt)
                ids, mask = ids.to(device), mask.to(device)
                eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(_stream_seed(seed, k, b))
                    out, out_mask, _ = sample_completions(  # temperature 0: greedy
                        [(view, 1.0)],
                        ids,
                        mask,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        eos_token_id=eos,
                        pad_token_id=pad,
                    )
                decoded = tokenizer.batch_decode(out.masked_fill(out_mask == 0, pad), skip_special_tokens=True)
                texts[k][start : start + len(rows)] = decoded
                lengths[k, start : start + len(rows)] = out_mask.sum(-1).cpu().numpy()
                if ref_model is not None:
                    log_ratio[k, start : start + len(rows)] = _log_ratio(
                        model, ref_model, ids, mask, out, out_mask, temperature
                    )
                if on_batch is not None:
                    on_batch()
    return _Generations(texts, lengths, log_ratio)


@torch.no_grad()
def _log_ratio(
    model: Any, ref_model: Any, ids: Tensor, mask: Tensor, out: Tensor, out_mask: Tensor, temperature: float
) -> FloatArray:
    """Σ_t log π_T(y_t) − log π_ref,T(y_t) per row (exactly 0 when the policy *is* the reference)."""
    if ref_model is model:
        return np.zeros(out.shape[0])
    logp = completion_log_probs(ModelView(model), ids, mask, out, out_mask, temperature=temperature).sum(-1)
    ref_device = model_device(ref_model)
    with eval_mode(ref_model):
        ref = completion_log_probs(
            ModelView(ref_model),
            ids.to(ref_device),
            mask.to(ref_device),
            out.to(ref_device),
            out_mask.to(ref_device),
            temperature=temperature,
        ).sum(-1)
    return (logp.double().cpu() - ref.double().cpu()).numpy()
