"""Log-space helpers shared by every layer (the only place a softmax is normalised).

All policies are carried as log-probabilities with ``-inf`` outside the support of π_ref, so that
β down to 1e-4 (log-ratios of order 1/β = 10⁴) never overflows or underflows to NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def log_normalize(logits: FloatArray) -> FloatArray:
    """Return ``logits - logsumexp(logits)`` along the last axis.

    ``-inf`` entries stay ``-inf`` (they are outside the support); at least one entry per row must be
    finite.
    """
    m = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def logsumexp(logits: FloatArray) -> FloatArray:
    """``log Σ_y exp(logits_y)`` along the last axis, computed stably."""
    m = np.max(logits, axis=-1, keepdims=True)
    out = m + np.log(np.sum(np.exp(logits - m), axis=-1, keepdims=True))
    return np.asarray(out[..., 0], dtype=np.float64)


def kl_from_logs(log_p: FloatArray, log_q: FloatArray) -> FloatArray:
    """KL(p‖q) along the last axis from log-probabilities, accurate down to ~1e-30.

    Uses ``KL = Σ_{p>0} p·(d + expm1(-d)) + Σ_{p=0} q`` with ``d = log p − log q``: every term is
    non-negative, so there is no cancellation between large terms near convergence (the plain
    ``Σ p·d`` loses all digits once KL < 1e-16). Returns ``inf`` where q = 0 < p.
    """
    in_p = np.isfinite(log_p)
    p = np.exp(np.where(in_p, log_p, -np.inf))
    q = np.exp(log_q)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(in_p, log_p - log_q, 0.0)
        # p·(d + expm1(−d)) = p·d + q − p: the left form is exact for small |d|, the right one cannot
        # overflow when p ≪ q (d very negative, where expm1(−d) = inf).
        small = np.where(in_p & (d >= -1.0), d, 0.0)
        term = np.where(in_p, np.where(d >= -1.0, p * (small + np.expm1(-small)), p * d + q - p), 0.0)
    # p > 0 (even if it underflows) where q = 0: KL is infinite.
    not_abs_cont = np.any(in_p & ~np.isfinite(log_q), axis=-1)
    out = np.sum(term, axis=-1) + np.sum(np.where(in_p, 0.0, q), axis=-1)
    return np.where(not_abs_cont, np.inf, out)


def span(values: FloatArray, mask: NDArray[np.bool_]) -> FloatArray:
    """Span semi-norm ``max_y v_y − min_y v_y`` over the entries where ``mask`` is true (last axis)."""
    hi = np.max(np.where(mask, values, -np.inf), axis=-1)
    lo = np.min(np.where(mask, values, np.inf), axis=-1)
    with np.errstate(invalid="ignore"):
        out = hi - lo
    # inf - inf (a policy that is -inf on part of the support) is an infinite span, not NaN.
    return np.where(np.isnan(out), np.inf, out)
