"""The β-regularised preference game: P(y≻y'|x), π_ref(·|x), context weights ρ(x) and β.

Support restriction
-------------------
A zero in π_ref(·|x) removes that response from context x: KL(π‖π_ref) is infinite for any π that puts
mass there, so π*_β and every iterate of every algorithm are exactly zero on it (their log-probabilities
are ``-inf``). Metrics are computed on the support. The rows and columns of P for removed responses
must still be valid preferences (they are simply never used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._numerics import FloatArray
from ..errors import InvalidParameterError, InvalidPolicyError, InvalidPreferenceError, InvalidReferenceError

__all__ = ["PreferenceGame", "stack_games", "check_positive", "check_positive_int"]

#: Default absolute tolerance on |P + Pᵀ − 1| and on Σ π_ref − 1.
DEFAULT_ATOL = 1e-8


def check_positive(name: str, value: float, hint: str = "") -> float:
    """Return ``float(value)`` or raise :class:`InvalidParameterError` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a positive number, got {value!r}.{hint}") from None
    if not np.isfinite(v) or v <= 0:
        raise InvalidParameterError(f"{name} must be a finite number > 0, got {value!r}.{hint}")
    return v


def check_positive_int(name: str, value: object) -> int:
    """Return ``int(value)`` or raise :class:`InvalidParameterError` unless it is an integer ≥ 1 (not a bool)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1  # type: ignore[call-overload]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)  # type: ignore[call-overload]


def _as_float_array(name: str, value: ArrayLike, error: type[ValueError]) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be a numeric array: {exc}") from None
    return arr


def _validate_preference(P: FloatArray, atol: float) -> None:
    if P.ndim not in (2, 3):
        raise InvalidPreferenceError(
            f"P must have shape (n, n) for one game or (X, n, n) for X contexts, got shape {P.shape}."
        )
    if P.shape[-1] != P.shape[-2]:
        raise InvalidPreferenceError(f"P must be square in its last two axes, got shape {P.shape}.")
    if P.shape[-1] < 1 or P.size == 0:
        raise InvalidPreferenceError(f"P must have at least one response, got shape {P.shape}.")
    if not np.all(np.isfinite(P)):
        bad = np.argwhere(~np.isfinite(P))[0]
        raise InvalidPreferenceError(f"P contains NaN or inf (first at index {tuple(int(i) for i in bad)}).")
    lo, hi = float(P.min()), float(P.max())
    if lo < -atol or hi > 1 + atol:
        raise InvalidPreferenceError(
            f"P holds probabilities P(y≻y'), so entries must lie in [0, 1]; found range [{lo:.6g}, {hi:.6g}]."
        )
    asym = np.abs(P + np.swapaxes(P, -1, -2) - 1.0)
    worst = float(asym.max())
    if worst > atol:
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(asym)), asym.shape))
        raise InvalidPreferenceError(
            f"P must satisfy P(y≻y') + P(y'≻y) = 1; the largest violation is {worst:.3g} at index {idx} "
            f"(tolerance {atol:g}). Symmetrise with P = (P + 1 - Pᵀ) / 2 if the data are noisy."
        )


def _validate_reference(ref: FloatArray, shape: tuple[int, int], atol: float) -> None:
    if ref.shape != shape:
        raise InvalidReferenceError(
            f"ref must have shape {shape} to match P (one distribution over {shape[1]} responses per context), "
            f"got shape {ref.shape}."
        )
    if not np.all(np.isfinite(ref)):
        raise InvalidReferenceError("ref contains NaN or inf; it must be a probability distribution.")
    if float(ref.min()) < 0:
        raise InvalidReferenceError(f"ref must be non-negative, found {float(ref.min()):.6g}.")
    sums = ref.sum(axis=-1)
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > max(atol, 1e-12 * shape[1]):
        raise InvalidReferenceError(
            f"ref must sum to 1 over responses in every context; worst sum is "
            f"{float(sums[np.argmax(np.abs(sums - 1.0))]):.12g}. Normalise it with ref / ref.sum(-1, keepdims=True)."
        )


@dataclass(frozen=True, eq=False)
class PreferenceGame:
    """A (contextual) β-regularised preference game.

    The game is ``P_β(π≻π') = E_{x∼ρ}[π(x)ᵀ P(x) π'(x)] − β KL_ρ(π‖π_ref) + β KL_ρ(π'‖π_ref)``; its unique
    symmetric Nash equilibrium π*_β is the target of every algorithm in nashmp.

    Args:
        P: preference probabilities ``P[x, y, y'] = P(y≻y'|x)``, shape ``(n, n)`` or ``(X, n, n)``, with
            ``P + Pᵀ = 1`` up to ``atol``.
        ref: reference policy π_ref, shape ``(n,)`` or ``(X, n)``; zeros restrict the support.
        beta: regularisation strength β > 0.
        weights: optional context distribution ρ, shape ``(X,)``, non-negative (normalised to sum 1).
        atol: tolerance of the validation checks.

    Internally everything is batched: ``P`` is ``(X, n, n)``, ``log_ref`` is ``(X, n)``. ``batched``
    records whether the user passed a contextual game, so results can be returned in the same shape.
    """

    P: FloatArray
    ref: FloatArray
    beta: float
    weights: FloatArray
    batched: bool
    log_ref: FloatArray = field(repr=False)
    support: NDArray[np.bool_] = field(repr=False)

    def __init__(
        self,
        P: ArrayLike,
        ref: ArrayLike,
        beta: float,
        weights: ArrayLike | None = None,
        *,
        atol: float = DEFAULT_ATOL,
    ) -> None:
        try:
            atol_ok = not isinstance(atol, bool) and math.isfinite(float(atol)) and float(atol) >= 0
        except (TypeError, ValueError):
            atol_ok = False
        if not atol_ok:  # NaN would turn every tolerance check into False, i.e. off
            raise InvalidParameterError(f"atol must be a finite number ≥ 0, got {atol!r}.")
        atol = float(atol)
        P_arr = _as_float_array("P", P, InvalidPreferenceError)
        _validate_preference(P_arr, atol)
        batched = P_arr.ndim == 3
        P3 = P_arr if batched else P_arr[None]
        X, n, _ = P3.shape
        ref_arr = _as_float_array("ref", ref, InvalidReferenceError)
        if batched and ref_arr.ndim == 1 and ref_arr.shape == (n,):
            ref_arr = np.broadcast_to(ref_arr, (X, n))  # one reference shared by every context
        ref2 = ref_arr if ref_arr.ndim == 2 and batched else ref_arr[None] if ref_arr.ndim == 1 else ref_arr
        _validate_reference(ref2, (X, n), atol)
        beta_f = check_positive("beta", beta, " β is the KL-regularisation strength, e.g. beta=0.1.")
        if weights is None:
            w = np.full(X, 1.0 / X)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (X,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
                raise InvalidParameterError(
                    f"weights must be a non-negative finite array of shape ({X},) with a positive sum, got {weights!r}."
                )
            # rescaled by the largest weight first: [1e308, 1e308] sums to inf and would normalise to zeros
            w = w / w.max()
            w = w / w.sum()
        ref2 = np.ascontiguousarray(ref2 / ref2.sum(axis=-1, keepdims=True))
        support = ref2 > 0
        with np.errstate(divide="ignore"):
            log_ref = np.log(ref2)
        object.__setattr__(self, "P", np.ascontiguousarray(P3))
        object.__setattr__(self, "ref", ref2)
        object.__setattr__(self, "beta", beta_f)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "batched", batched)
        object.__setattr__(self, "log_ref", log_ref)
        object.__setattr__(self, "support", support)

    # ------------------------------------------------------------------ shape helpers
    @property
    def num_contexts(self) -> int:
        """X, the number of contexts (1 for a single game)."""
        return int(self.P.shape[0])

    @property
    def num_responses(self) -> int:
        """n, the number of responses per context."""
        return int(self.P.shape[-1])

    def unbatch(self, arr: FloatArray) -> FloatArray:
        """Drop the leading context axis if the game was given as a single (n, n) game."""
        return arr if self.batched else arr[0]

    def with_beta(self, beta: float) -> PreferenceGame:
        """The same preferences, reference and weights with another β."""
        return PreferenceGame(
            self.P if self.batched else self.P[0], self.unbatch(self.ref), beta, self.weights if self.batched else None
        )

    # ------------------------------------------------------------------ the one query
    def payoff(self, policy: FloatArray) -> FloatArray:
        """``P(y≻μ|x) = Σ_y' P(y≻y'|x) μ(y'|x)`` for every context: one *preference query*.

        ``policy`` has shape ``(X, n)`` (probabilities). Returns shape ``(X, n)``.
        """
        if self.P.shape[0] == 1:  # a plain gemv: as fast as a raw ``P @ x``
            return (self.P[0] @ policy[0])[None]
        return np.matmul(self.P, policy[..., None])[..., 0]

    # ------------------------------------------------------------------ policy validation
    def as_log_policy(self, policy: ArrayLike, name: str = "policy", atol: float = 1e-8) -> FloatArray:
        """Validate a probability policy of the game's shape and return its batched log-probabilities."""
        arr = np.asarray(policy, dtype=np.float64)
        X, n = self.num_contexts, self.num_responses
        if arr.shape == (n,) and not self.batched:
            arr = arr[None]
        if arr.shape != (X, n):
            raise InvalidPolicyError(f"{name} must have shape {(X, n) if self.batched else (n,)}, got {arr.shape}.")
        if not np.all(np.isfinite(arr)) or float(arr.min()) < 0:
            raise InvalidPolicyError(f"{name} must be finite and non-negative.")
        if float(np.max(np.abs(arr.sum(-1) - 1))) > atol:
            raise InvalidPolicyError(f"{name} must sum to 1 in every context.")
        with np.errstate(divide="ignore"):
            return np.log(arr)


def stack_games(games: Sequence[PreferenceGame]) -> PreferenceGame:
    """Stack single or contextual games with the same n and β into one batched game.

    Context weights are concatenated and renormalised with equal mass per input game.
    """
    if not games:
        raise InvalidParameterError("stack_games needs at least one game.")
    betas = {g.beta for g in games}
    sizes = {g.num_responses for g in games}
    if len(betas) != 1 or len(sizes) != 1:
        raise InvalidParameterError(
            f"stack_games needs games with one β and one n; got β in {sorted(betas)} and n in {sorted(sizes)}."
        )
    P = np.concatenate([g.P for g in games])
    ref = np.concatenate([g.ref for g in games])
    w = np.concatenate([g.weights / len(games) for g in games])
    return PreferenceGame(P, ref, games[0].beta, w)
