r"""Token-level sampling with the KV cache, and teacher-forced log-probabilities of completions.

Both functions take *views* of models (:class:`ModelView`): a module plus the context that selects
what it computes — the policy, π_ref (PEFT adapters disabled, or a frozen copy) or a parameter
snapshot (the EMA anchor, a half-step policy). Sampling draws from the **geometric mixture**
:math:`\mu(\cdot)\propto\prod_i \pi_i(\cdot)^{w_i}` of the tempered next-token distributions of its
views: one view with weight 1 is plain sampling at temperature T; the policy and π_ref with weights
1−c and c is Nash-MD's opponent. Every quantity stays in log space (Gumbel-max on log-probabilities).

Position ids are ``cumsum(attention_mask) − 1`` in both functions, so a left-padded batch gets the
same positions whether it is decoded incrementally (with the cache) or scored in one pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    from .prompts import Prompt

__all__ = [
    "ModelView",
    "encode_prompts",
    "model_device",
    "eval_mode",
    "sample_completions",
    "completion_log_probs",
    "swap_parameters",
    "CACHE_KW",
]


def _cache_names() -> tuple[str, str]:
    """transformers ≥ 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return ("cache", "cache") if "cache" in fields else ("past_key_values", "past_key_values")


CACHE_KW, CACHE_ATTR = _cache_names()


@dataclass
class ModelView:
    """``module`` called inside ``context()`` (e.g. ``peft_model.disable_adapter`` or a parameter swap)."""

    module: Any
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def __call__(self, **kwargs: Any) -> Any:
        with self.context():
            return self.module(**kwargs)


def is_sharded(params: Sequence[Tensor]) -> bool:
    """Whether ``params`` are DTensors (FSDP2): each rank then holds one shard of each."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch build without distributed: nothing can be sharded
        return False
    return any(isinstance(p, DTensor) for p in params)


@contextlib.contextmanager
def swap_parameters(params: Sequence[Tensor], values: Sequence[Tensor]) -> Iterator[None]:
    """Temporarily give ``params`` the tensors ``values``, then restore them.

    Used to evaluate the model at a snapshot (EMA anchor, half-step policy) without a second model.
    Only valid without autograd through the swapped parameters (the callers run under ``no_grad``).
    Plain tensors swap storage (O(1), no copy). Sharded parameters (FSDP2 DTensors) are copied in place,
    shard by shard, and copied back: FSDP2 all-gathers from the storage it registered, which a ``.data``
    swap would bypass (and DTensor has no sharding rule for ``_foreach_copy_``). Values of another dtype
    (fp32 snapshots of bf16 weights under DeepSpeed) are swapped in as cast copies. An in-place copy into
    unsharded parameters would bump their version counters, which autograd checks for a graph that saved
    them (the policy's scoring pass runs before the anchor's).
    """
    if is_sharded(params):
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p, v in zip(params, values, strict=True):
                p.copy_(v)
            try:
                yield
            finally:
                for p, v in zip(params, saved, strict=True):
                    p.copy_(v)
        return
    original = [p.data for p in params]
    for p, v in zip(params, values, strict=True):
        p.data = v.data if v.dtype == p.dtype else v.detach().to(p.dtype)
    try:
        yield
    finally:
        for p, data in zip(params, original, strict=True):
            p.data = data


def encode_prompts(
    tokenizer: Any, prompts: Sequence[Prompt], *, max_length: int = 128, system_prompt: str | None = None
) -> tuple[Tensor, Tensor]:
    """Chat-template (when the tokenizer has one), left-pad and left-truncate to ``max_length`` tokens.

    A prompt is a string (one user turn) or a conversation (:mod:`nashmp.llm.prompts`); ``system_prompt``
    is prepended to prompts without a system turn. The template's text is tokenized without adding special
    tokens again (the template already holds them). Left padding right-aligns the prompts so that generation
    continues every row at the same column; left truncation keeps the end of a long prompt.
    """
    from .prompts import prompt_messages

    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(prompt_messages(p, system_prompt), add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
    elif all(isinstance(p, str) for p in prompts) and not system_prompt:
        texts = [str(p) for p in prompts]
    else:
        raise InvalidParameterError(
            "conversational prompts and system_prompt need a tokenizer with a chat template; this one has none."
        )
    side, padding = tokenizer.truncation_side, tokenizer.padding_side
    tokenizer.truncation_side, tokenizer.padding_side = "left", "left"
    try:
        enc = tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length, add_special_tokens=False
        )
    finally:
        tokenizer.truncation_side, tokenizer.padding_side = side, padding
    return enc["input_ids"], enc["attention_mask"]


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Dropout off for the block (so that sampling, scoring and judging see one policy), then the previous
    mode back; a no-op for callables that are not modules."""
    was_training = bool(getattr(module, "training", False))
    if hasattr(module, "eval"):
        module.eval()
    try:
        yield
    finally:
        if hasattr(module, "train"):
            module.train(was_training)


def model_device(model: Any) -> torch.device:
    """Device of a module's first parameter (CPU for parameter-less callables)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _positions(mask: Tensor) -> Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def sample_completions(
    views: Sequence[tuple[ModelView, float]],
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_token_id: int,
    pad_token_id: int,
    all_finished: Callable[[Tensor], bool] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Sample completions of left-padded prompts from :math:`\mu\propto\prod_i\pi_i^{w_i}` (tempered).

    ``temperature=0`` decodes greedily (the T → 0 limit; ``logp`` is then that of the untempered μ).
    Decoding stops when ``all_finished(finished)`` says so (default: every row has ended); with sharded
    weights the caller passes a rule that waits for every rank (each forward pass is a collective).

    Returns ``(ids, mask, logp)``, each ``(B, T)`` with T ≤ ``max_new_tokens``: the tokens (``pad`` after
    the end), 1 for tokens up to and including the first EOS, and :math:`\log\mu` of each sampled token.
    Draws use torch's global RNG (restored by checkpoints), via Gumbel-max on the log-probabilities.
    """
    batch = prompt_ids.shape[0]
    device = prompt_ids.device
    caches: list[Any] = [None] * len(views)
    mask = prompt_mask.long()
    step_ids, step_pos = prompt_ids, _positions(mask)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, alive, logps = [], [], []
    for _ in range(max_new_tokens):
        mixed: Tensor | float = 0.0
        for i, (view, weight) in enumerate(views):
            out = view(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                use_cache=True,
                logits_to_keep=1,
                **{CACHE_KW: caches[i]},
            )
            caches[i] = getattr(out, CACHE_ATTR)
            scale = temperature if temperature > 0 else 1.0
            mixed = mixed + weight * torch.log_softmax(out.logits[:, -1].float() / scale, dim=-1)
        assert isinstance(mixed, Tensor)
        log_mu = torch.log_softmax(mixed, dim=-1)  # renormalise the geometric mixture
        if temperature > 0:  # Gumbel-max: an exact draw from μ, in log space
            gumbel = -torch.log(-torch.log(torch.rand_like(log_mu).clamp_(1e-20, 1.0)))
            tok = torch.argmax(log_mu + gumbel, dim=-1)
        else:  # the T → 0 limit: greedy decoding of the mixture
            tok = torch.argmax(log_mu, dim=-1)
        tok = torch.where(finished, torch.full_like(tok, pad_token_id), tok)
        tokens.append(tok)
        alive.append(~finished)
        logps.append(torch.where(finished, torch.zeros_like(log_mu[:, 0]), log_mu.gather(1, tok[:, None])[:, 0]))
        finished = finished | (tok == eos_token_id)
        if all_finished(finished) if all_finished is not None else bool(finished.all()):
            break
        step_ids = tok[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_pos = step_pos[:, -1:] + 1
    return torch.stack(tokens, 1), torch.stack(alive, 1).long(), torch.stack(logps, 1)


def completion_log_probs(
    view: ModelView | Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    temperature: float,
    group: int = 1,
    full: bool = False,
) -> Tensor:
    r"""Per-token :math:`\log\pi(y_t\mid x,y_{<t})` of the tempered model, ``(B, T)``, 0 where masked.

    One forward pass over ``[prompt; completion]`` keeping only the T+1 last logits; differentiable
    when called outside ``no_grad`` (the policy's training pass). ``group = k`` says that the rows come in
    runs of k identical prompts (k completions per prompt): the prompt is then encoded once per run and its
    KV cache repeated k times (exact, and differentiable), which saves (k−1)/k of the prompt's compute.
    ``full=True`` returns the whole next-token log-distribution at each completion position, ``(B, T, V)``
    (for analytic per-token KLs).
    """
    length = completion_ids.shape[1]
    if group > 1 and prompt_ids.shape[0] % group == 0:
        p_ids, p_mask = prompt_ids[::group], prompt_mask[::group].long()
        out = view(input_ids=p_ids, attention_mask=p_mask, position_ids=_positions(p_mask), use_cache=True,
                   logits_to_keep=1)  # fmt: skip
        cache = getattr(out, CACHE_ATTR)
        cache.batch_repeat_interleave(group)
        first = out.logits[:, -1:].repeat_interleave(group, 0)  # predicts the first completion token
        if length == 1:  # nothing more to feed
            logits = first.float() / temperature
        else:
            mask = torch.cat([prompt_mask.long(), torch.ones_like(completion_mask)], dim=1)
            pos = _positions(mask)[:, prompt_ids.shape[1] :]
            rest = view(input_ids=completion_ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                        use_cache=True, **{CACHE_KW: cache})  # fmt: skip
            logits = torch.cat([first, rest.logits], dim=1).float() / temperature
    else:
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([prompt_mask.long(), torch.ones_like(completion_mask)], dim=1)
        out = view(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), logits_to_keep=length + 1)
        logits = out.logits[:, :-1].float() / temperature
    log_dist = torch.log_softmax(logits, dim=-1)
    if full:
        return log_dist
    return log_dist.gather(-1, completion_ids[..., None])[..., 0] * completion_mask
