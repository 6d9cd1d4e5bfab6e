r"""Pairwise preference oracles: the one interface between learners and preference feedback.

An oracle answers, for a batch of contexts ``x`` and two responses ``a``, ``b`` per row,

* :meth:`PreferenceOracle.probability`: :math:`\mathcal P(a\succ b\mid x)\in[0,1]`, and
* :meth:`PreferenceOracle.outcome`: a Bernoulli draw with that probability (1 if ``a`` wins),

and counts **one query per compared pair** (``oracle.queries``). Contexts and responses are opaque
to the interface: indices for tabular games here, prompts and completions in the LLM layer.

Contract (checked on every answer, tested for every oracle): values are finite and in [0, 1], one
per row, and :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1`. A violation raises
:class:`~nashmp.errors.InvalidOracleOutputError` — it is never silently scored as a tie.

Note the two query conventions in nashmp: the exact layer counts one query per *full* evaluation of
P(·≻μ) for every context; oracles count one query per *pair* compared, the unit of sampled feedback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._numerics import FloatArray
from .errors import InvalidOracleOutputError, InvalidParameterError
from .games.game import PreferenceGame

__all__ = [
    "PreferenceOracle",
    "GameOracle",
    "NoisyOracle",
    "CallableOracle",
    "validate_probabilities",
]


def validate_probabilities(values: Any, rows: int, source: str) -> FloatArray:
    """Return ``values`` as a float array of shape ``(rows,)`` or raise :class:`InvalidOracleOutputError`."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidOracleOutputError(f"{source} returned non-numeric preferences: {exc}") from None
    if arr.shape != (rows,):
        raise InvalidOracleOutputError(f"{source} returned {arr.size} preferences for {rows} pairs; need one per pair.")
    if not np.all(np.isfinite(arr)):
        raise InvalidOracleOutputError(f"{source} returned NaN or inf preferences.")
    if arr.min(initial=0.5) < 0 or arr.max(initial=0.5) > 1:
        raise InvalidOracleOutputError(
            f"{source} returned preferences outside [0, 1] (range [{arr.min():.4g}, {arr.max():.4g}]); "
            "an oracle must return P(a ≻ b | x)."
        )
    return arr


class PreferenceOracle(ABC):
    """Answers P(a≻b|x) for batches of pairs and counts every compared pair as one query."""

    def __init__(self) -> None:
        self.queries = 0

    @abstractmethod
    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> Any:
        """Implementation hook: raw P(a≻b|x) per row (validated by :meth:`probability`)."""

    def probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        """``P(a_i ≻ b_i | x_i)`` for each row; counts ``len(a)`` queries."""
        rows = len(a)
        if len(b) != rows or len(contexts) != rows:
            raise InvalidParameterError(
                f"contexts, a and b must have the same length, got {len(contexts)}, {rows}, {len(b)}."
            )
        self.queries += rows
        return validate_probabilities(self._probability(contexts, a, b), rows, type(self).__name__)

    def outcome(
        self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any], rng: np.random.Generator
    ) -> FloatArray:
        """Bernoulli(P(a≻b|x)) outcomes in {0, 1} (1: ``a`` preferred); counts ``len(a)`` queries."""
        p = self.probability(contexts, a, b)
        return (rng.random(p.shape) < p).astype(np.float64)


class GameOracle(PreferenceOracle):
    """Exact preferences of a :class:`~nashmp.PreferenceGame`: ``P[x, a, b]``."""

    def __init__(self, game: PreferenceGame) -> None:
        super().__init__()
        self.game = game

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        x, ia, ib = (np.asarray(v, dtype=np.int64) for v in (contexts, a, b))
        return self.game.P[x, ia, ib]


class NoisyOracle(PreferenceOracle):
    """Bernoulli feedback: :meth:`probability` answers a single 0/1 draw from ``base`` (a human label).

    Its expectation is the base preference, so P(a≻b) + P(b≻a) = 1 holds in expectation; ties
    (``a == b``) are answered ½ exactly.
    """

    def __init__(self, base: PreferenceOracle, seed: int | None = 0) -> None:
        super().__init__()
        self.base = base
        self.rng = np.random.default_rng(seed)

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        p = self.base.probability(contexts, a, b)
        draws = (self.rng.random(p.shape) < p).astype(np.float64)
        same = np.array([x == y for x, y in zip(a, b, strict=True)], dtype=bool)
        return np.where(same, 0.5, draws)


class CallableOracle(PreferenceOracle):
    """Wrap ``fn(contexts, a, b) -> P(a≻b|x)``.

    With ``symmetrize=True`` the answer is ``(fn(x, a, b) + 1 − fn(x, b, a)) / 2``, which satisfies the
    contract by construction for any ``fn`` with values in [0, 1] (e.g. a position-biased judge); it
    costs two calls of ``fn`` per pair, and both count as queries.
    """

    def __init__(
        self, fn: Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], ArrayLike], *, symmetrize: bool = False
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise InvalidParameterError(f"CallableOracle needs a callable, got {type(fn).__name__}.")
        self.fn = fn
        self.symmetrize = symmetrize

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        name = getattr(self.fn, "__name__", "callable")
        forward = validate_probabilities(self.fn(contexts, a, b), len(a), f"preference function {name!r}")
        if not self.symmetrize:
            return forward
        self.queries += len(a)
        backward = validate_probabilities(self.fn(contexts, b, a), len(a), f"preference function {name!r}")
        return 0.5 * (forward + 1.0 - backward)
