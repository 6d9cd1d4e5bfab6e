r"""Any Hugging Face causal LM as a pairwise judge (LLM-as-judge), debiased over both presentation orders."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._numerics import FloatArray
from ..errors import InvalidParameterError
from ..games.game import check_positive_int
from ..oracles import PreferenceOracle
from .judge_template import _check_template, _debias
from .sampling import eval_mode, model_device

__all__ = ["LMJudge"]


def _accepts(model: Any, name: str) -> bool:
    """Whether ``model.forward`` names the argument ``name`` (a PEFT wrapper is checked through its base model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # not via **kwargs: older models route unknown kwargs into the loss


class LMJudge(PreferenceOracle):
    r"""A causal language model as a pairwise judge (LLM-as-judge), debiased over both orders.

    For a prompt ``x`` and ordered answers ``(first, second)`` the judge reads the instruction
    :data:`~nashmp.llm.judge_template.DEFAULT_JUDGE_TEMPLATE` (rendered with
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True)`` when the tokenizer has a chat template,
    else as plain text followed by a newline) and the next-token logits :math:`\ell_A, \ell_B` of the two answer tokens give

    .. math:: q_A = \operatorname{softmax}(\ell_A, \ell_B)_A = \exp\big(\ell_A - \operatorname{logsumexp}(\ell_A, \ell_B)\big),

    computed with ``torch.log_softmax`` in float32. The answer is the debiased
    :math:`\mathcal P(a\succ b) = \tfrac12[q_A(x,a,b) + 1 - q_A(x,b,a)]`, so
    :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1` and :math:`\mathcal P(a\succ a)=\tfrac12`.

    Batching: the ``2n`` ordered prompts of a call are sorted by length, left-padded by hand (the tokenizer
    is never modified), and run ``batch_size`` at a time under ``torch.no_grad()`` in eval mode (the
    model's train/eval mode is restored afterwards); ``position_ids`` follow the attention mask and only
    the last position's logits are computed when the model supports ``logits_to_keep``. Any callable
    HF-style model works, including a PEFT ``PeftModel``.

    Truncation: when an ordered prompt exceeds ``max_length`` tokens, both answers are cut to a common
    token budget, keeping their beginnings (the question and the instruction are kept whole); the same cut
    is used in both orders, so the symmetry above still holds. If the question alone is too long, the
    tokens are dropped from the left so that the instruction and the generation prompt survive.

    Args:
        model: a causal LM returning ``.logits`` of shape ``(batch, length, vocab)``.
        tokenizer: its tokenizer (a fast or slow HF tokenizer).
        template: the judge instruction with ``{question}``, ``{answer_a}``, ``{answer_b}``.
        answer_tokens: the strings naming the first and the second answer; each must encode to exactly one
            token (e.g. ``(" A", " B")`` for plain-text formats that end with a space-separated answer).
        batch_size: sequences per forward pass.
        max_length: maximum tokens per judge prompt.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        template: str | None = None,
        answer_tokens: tuple[str, str] = ("A", "B"),
        batch_size: int = 8,
        max_length: int = 1024,
    ) -> None:
        super().__init__()
        check_positive_int("batch_size", batch_size)
        check_positive_int("max_length", max_length)
        self.model = model
        self.tokenizer = tokenizer
        self.template = _check_template(template)
        self.batch_size = batch_size
        self.max_length = max_length
        self.answer_tokens = tuple(answer_tokens)
        if len(self.answer_tokens) != 2 or self.answer_tokens[0] == self.answer_tokens[1]:
            raise InvalidParameterError(f"answer_tokens must be two different strings, got {answer_tokens!r}.")
        self.answer_ids = tuple(self._single_token_id(tok) for tok in self.answer_tokens)
        self.use_chat_template = bool(getattr(tokenizer, "chat_template", None))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # Padded positions are masked out, so any id works when the tokenizer has neither pad nor eos.
        self.pad_id = int(pad) if pad is not None else 0
        self._keep_last = _accepts(model, "logits_to_keep")
        self._positions = _accepts(model, "position_ids")

    def _single_token_id(self, token: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise InvalidParameterError(
                f"judge answer token {token!r} encodes to {len(ids)} tokens {ids} with this tokenizer; "
                "pass answer_tokens=(...) whose strings are single tokens (e.g. ' A', ' B' or 'Yes', 'No')."
            )
        return int(ids[0])

    # -- prompt construction ------------------------------------------------------------------------
    def _text(self, question: str, first: str, second: str) -> str:
        body = self.template.format(question=question, answer_a=first, answer_b=second)
        if self.use_chat_template:
            return str(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": body}], add_generation_prompt=True, tokenize=False
                )
            )
        return body + "\n"

    def _ids(self, question: str, first: str, second: str) -> list[int]:
        # A chat template already writes its special tokens (BOS included); plain text gets the
        # tokenizer's own specials.
        text = self._text(question, first, second)
        return list(self.tokenizer.encode(text, add_special_tokens=not self.use_chat_template))

    def _cut(self, text: str, cap: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return text if len(ids) <= cap else self.tokenizer.decode(ids[:cap]) + " …"

    def encode_pair(self, question: str, a: str, b: str) -> tuple[list[int], list[int]]:
        """Token ids of the two ordered judge prompts ``(a shown first, b shown first)``, truncated to ``max_length``."""
        ab, ba = self._ids(question, a, b), self._ids(question, b, a)
        if max(len(ab), len(ba)) > self.max_length:
            len_a = len(self.tokenizer.encode(a, add_special_tokens=False))
            len_b = len(self.tokenizer.encode(b, add_special_tokens=False))
            # 8 tokens of slack: re-tokenising the cut text inside the prompt can merge differently.
            budget = self.max_length - len(self._ids(question, "", "")) - 8
            cap = max(budget // 2, 0)
            if min(len_a, len_b) < cap:  # water-filling: the short answer stays whole, the long one gets the rest
                cap = budget - min(len_a, len_b)
            a_cut, b_cut = self._cut(a, cap), self._cut(b, cap)
            ab, ba = self._ids(question, a_cut, b_cut), self._ids(question, b_cut, a_cut)
        return ab[-self.max_length :], ba[-self.max_length :]

    # -- scoring ------------------------------------------------------------------------------------
    def answer_probabilities(self, sequences: Sequence[Sequence[int]]) -> FloatArray:
        """``(q_A, q_B)`` per tokenised judge prompt: the two-token softmax of the next-token logits."""
        import torch

        out = np.empty((len(sequences), 2), dtype=np.float64)
        if not sequences:
            return out
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # less padding per batch
        device = model_device(self.model)
        answer_ids = torch.tensor(self.answer_ids, device=device)
        with eval_mode(self.model), torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                width = max(len(sequences[i]) for i in rows)
                ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):  # left padding: the last column is every row's next-token slot
                    seq = torch.as_tensor(list(sequences[i]), dtype=torch.long)
                    ids[r, width - len(seq) :] = seq
                    mask[r, width - len(seq) :] = 1
                kwargs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
                if self._positions:  # positions count real tokens only, as in generation
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
                if self._keep_last:  # a (batch, 1, vocab) head output instead of (batch, length, vocab)
                    kwargs["logits_to_keep"] = 1
                logits = self.model(**kwargs).logits[:, -1, :]
                log_q = torch.log_softmax(logits.index_select(-1, answer_ids).float(), dim=-1)
                out[rows] = log_q.exp().double().cpu().numpy()
        return out

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        pairs = [self.encode_pair(str(x), str(y), str(z)) for x, y, z in zip(contexts, a, b, strict=True)]
        q = self.answer_probabilities([ab for ab, _ in pairs] + [ba for _, ba in pairs])
        return _debias(q[: len(pairs)], q[len(pairs) :])
