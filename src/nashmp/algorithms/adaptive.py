r"""Adaptive-step Nash-MP with a per-iteration certificate (our extension, not in the paper).

For Nash-MP's step (centre π_k, weight τ = β/η) the three-point identity of the KL-prox gives, for the
half step h = π_{k+½} and the new iterate π_{k+1},

.. math::
    (\beta+\tau)\,\mathrm{KL}(\pi^\star\|\pi_{k+1}) \le \tau\,\mathrm{KL}(\pi^\star\|\pi_k) + \delta_k,\qquad
    \delta_k=\langle\pi_{k+1}-h,\;P h-P\pi_k\rangle-\tau\,\mathrm{KL}(h\|\pi_k)-(\beta+\tau)\,\mathrm{KL}(\pi_{k+1}\|h).

(The game's symmetry, ⟨h,Ph⟩ = ½, and the equilibrium identity P_β(π*≻h) = ½ + β KL(h‖π*) remove every
other term.) Pinsker and the ½-bound of the skew part of P show δ_k ≤ 0 whenever η ≤ 2β — that is Nash-MP's
theorem — but δ_k is *computable from the two queries already made*, so we can test it for any η:

* try η_k = min(grow · η_{k−1}, safety · η̂_{k−1}), where η̂ = β(A+B)/(C − βB) is the largest step the last
  measurements (δ = C − τA − (β+τ)B) would have certified — a prediction that avoids most rejections;
* if δ_k > 0 in some context, shrink η there (never below 2β) and redo the full step (Pπ_k is reused: one
  extra query per retry);
* accept: then KL(π*‖π_{k+1}) ≤ KL(π*‖π_k)/(1+η_k) holds *exactly as in the theorem*.

In fact the bound is an identity up to one dropped non-positive term (tested):
(β+τ)KL(π*‖π_{k+1}) = τKL(π*‖π_k) + δ_k − βKL(π_{k+½}‖π*).

The product Π_k (1+η_k)^{-1} is returned in ``state.aux["log_bound"]`` (per context): a checkable
guarantee KL(π*‖π_K) ≤ exp(log_bound)·KL(π*‖π_0) that is never worse than Nash-MP's (1+2β)^{-K}.
"""

from __future__ import annotations

import numpy as np

from .._numerics import kl_from_logs
from ..errors import InvalidParameterError
from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State
from .nash_mp import nash_mp_iteration

__all__ = ["adaptive_nash_mp", "mirror_prox_gap"]


def mirror_prox_terms(
    log_pi: np.ndarray, log_half: np.ndarray, log_new: np.ndarray, g0: np.ndarray, g1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per context: C = ⟨π_{k+1} − h, Ph − Pπ_k⟩, A = KL(h‖π_k), B = KL(π_{k+1}‖h), and Σ|terms of C|."""
    prod = (np.exp(log_new) - np.exp(log_half)) * (g1 - g0)
    return prod.sum(-1), kl_from_logs(log_half, log_pi), kl_from_logs(log_new, log_half), np.abs(prod).sum(-1)


def mirror_prox_gap(
    log_pi: np.ndarray,
    log_half: np.ndarray,
    log_new: np.ndarray,
    g0: np.ndarray,
    g1: np.ndarray,
    beta: float,
    tau: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """(δ_k, scale) per context (see the module docstring); δ_k ≤ 0 certifies the 1/(1+η) contraction.

    ``scale`` bounds the magnitude of the terms of δ_k, for a rounding-aware sign test.
    """
    C, A, B, size = mirror_prox_terms(log_pi, log_half, log_new, g0, g1)
    tau_x = np.ravel(np.broadcast_to(tau, (log_pi.shape[0], 1)))
    return C - tau_x * A - (beta + tau_x) * B, size + tau_x * A + (beta + tau_x) * B


def adaptive_nash_mp(grow: float = 1.5, shrink: float = 2.0, eta_max: float = 1e6, safety: float = 0.8) -> Algorithm:
    """Nash-MP whose step grows while the mirror-prox certificate δ_k ≤ 0 holds.

    The step tried next is ``min(grow·η_k, safety·η̂_k)`` where η̂_k = β(A+B)/(C − βB) is the largest step
    the current measurements (C, A, B of :func:`mirror_prox_terms`, held fixed) would certify; a
    rejected step is retried at ``max(2β, min(η/shrink, safety·η̂))``. Only the certificate decides
    acceptance — the prediction just avoids wasted retries (each costs one query).
    """
    check_positive("grow", grow)
    check_positive("eta_max", eta_max)
    if grow < 1 or shrink <= 1 or not 0 < safety <= 1:
        raise InvalidParameterError(
            f"need grow ≥ 1, shrink > 1 and 0 < safety ≤ 1, got grow={grow}, shrink={shrink}, safety={safety}."
        )

    def init(game: PreferenceGame) -> State:
        X = game.num_contexts
        aux = {"eta": np.full((X, 1), 2.0 * game.beta), "next_eta": np.full((X, 1), 2.0 * game.beta * grow),
               "log_bound": np.zeros(X), "retries": 0}  # fmt: skip
        return State(game.log_ref.copy(), 0, aux)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        b, lp = game.beta, state.log_policy
        floor = 2.0 * b
        eta = np.clip(state.aux["next_eta"], floor, max(eta_max, floor))
        g0 = query(np.exp(lp))
        retries = 0
        while True:
            half, new, _, g1 = nash_mp_iteration(game, lp, eta, query, payoff_center=g0)
            C, A, B, size = mirror_prox_terms(lp, half, new, g0, g1)
            tau = b / eta[:, 0]
            delta = C - tau * A - (b + tau) * B
            with np.errstate(divide="ignore", invalid="ignore"):
                predicted = np.where(C - b * B > 0, b * (A + B) / (C - b * B), np.inf)[:, None]
            # δ is a difference of O(KL) terms: allow relative rounding noise; at η = 2β the theorem applies.
            ok = (delta <= 1e-9 * (size + tau * A + (b + tau) * B)) | (eta[:, 0] <= floor * (1 + 1e-12))
            if ok.all():  # terminates: η reaches the always-accepted floor 2β after finitely many shrinks
                break
            retries += 1
            eta = np.where(ok[:, None], eta, np.maximum(np.minimum(eta / shrink, safety * predicted), floor))
        next_eta = np.minimum(eta * grow, np.maximum(safety * predicted, floor))
        aux = {"eta": eta, "next_eta": next_eta, "log_bound": state.aux["log_bound"] - np.log1p(eta[:, 0]),
               "retries": state.aux["retries"] + retries}  # fmt: skip
        return State(new, state.iteration + 1, aux)

    return Algorithm(
        "adaptive-nash-mp", init, step, {"grow": grow, "shrink": shrink, "eta_max": eta_max, "safety": safety}
    )
