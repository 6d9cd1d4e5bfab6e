r"""Bradley–Terry preferences from a scalar reward model: :math:`\sigma((r(x,a)-r(x,b))/T)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from .._numerics import FloatArray
from ..errors import InvalidOracleOutputError, InvalidParameterError
from ..games.game import check_positive, check_positive_int
from ..oracles import PreferenceOracle
from .sampling import eval_mode, model_device

__all__ = ["RewardModelOracle"]


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
        with eval_mode(self.model), torch.no_grad():
            for start in range(0, len(seqs), self.batch_size):
                chunk = seqs[start : start + self.batch_size]
                width = max(len(s) for s in chunk)
                pad = self.pad_id if self.pad_id is not None else 0
                ids = torch.full((len(chunk), width), int(pad), dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, s in enumerate(chunk):  # right padding: encoders read position 0, decoders the last real token
                    ids[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
                    mask[r, : len(s)] = 1
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                scores[start : start + len(chunk)] = logits.reshape(len(chunk), -1)[:, 0].double().cpu().tolist()
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
