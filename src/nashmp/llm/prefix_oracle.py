r"""A preference a small model can learn in minutes: answers that open with a given text win.

:class:`PrefixOracle` is Bradley–Terry on one binary feature, :math:`s(y) = 1[y \text{ starts with } w]`:

.. math:: \mathcal P(a \succ b) = \sigma\big(k\,(s(a) - s(b))\big),

so an answer that opens with ``w`` beats one that does not with probability σ(k) (0.982 at k = 4), and two
answers that agree on it tie at ½. It is transitive (a reward in disguise) and says nothing about quality:
it exists so that a short CPU run can *show* that training moves a model toward what a judge prefers — the
decision is made at the first tokens, which every sample of a prompt shares, so the policy gradient's signal
is not diluted across a whole answer (``make demo``, docs/llm.md). Spec: ``starts-with:<text>``.

>>> oracle = PrefixOracle("The")
>>> p = oracle.probability(["Why?"] * 2, ["The sky.", "Blue."], ["Blue.", "Blue!"])
>>> [round(float(v), 3) for v in p]
[0.982, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from .._numerics import FloatArray
from ..errors import InvalidParameterError
from ..oracles import PreferenceOracle

__all__ = ["PrefixOracle"]


class PrefixOracle(PreferenceOracle):
    """P(a ≻ b) = σ(k·(s(a) − s(b))) with s(y) = 1 when ``y`` (leading white space ignored) starts with ``prefix``.

    Args:
        prefix: the opening text that wins (case-sensitive, non-empty).
        sharpness: k > 0.
    """

    def __init__(self, prefix: str, *, sharpness: float = 4.0) -> None:
        super().__init__()
        if not isinstance(prefix, str) or not prefix.strip():
            raise InvalidParameterError(f"starts-with needs a non-empty text, e.g. starts-with:The; got {prefix!r}.")
        if not isinstance(sharpness, int | float) or not math.isfinite(sharpness) or sharpness <= 0:
            raise InvalidParameterError(f"sharpness must be a finite positive number, got {sharpness!r}.")
        self.prefix = prefix.strip()
        self.sharpness = float(sharpness)

    def feature(self, completions: Sequence[Any]) -> FloatArray:
        """s(y) for each completion: 1.0 if it opens with the prefix, else 0.0."""
        return np.array([float(str(y).lstrip().startswith(self.prefix)) for y in completions])

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        return expit(self.sharpness * (self.feature(a) - self.feature(b)))
