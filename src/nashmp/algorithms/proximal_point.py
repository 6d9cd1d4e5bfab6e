r"""Exact proximal point (the outer loop of Nash-MP v2 / "Nash Prox"), inner fixed point solved to tolerance.

.. math::
    \pi_{k+1}=\text{the NE of } \mathcal P(\pi\succ\pi')-\beta\mathrm{KL}(\pi\|\pi_{\rm ref})
    +\beta\mathrm{KL}(\pi'\|\pi_{\rm ref})-\tfrac\beta\eta\mathrm{KL}(\pi\|\pi_k)+\tfrac\beta\eta\mathrm{KL}(\pi'\|\pi_k),

i.e. the fixed point of :math:`T_{\pi_k}(\mu)=\mathrm{prox}(P\mu;(\pi_k,\beta/\eta),(\pi_{\rm ref},\beta))`.
For any η, KL(π*‖π_{k+1}) ≤ KL(π*‖π_k)/(1+η). Plain repetition of T diverges for η ≫ 2β, so the inner
game — a regularised game of temperature λ = β(1+η)/η — is itself solved by Nash-MP at its safe step
2λ (prox anchors (μ_j, ½), (π_ref, β), (π_k, β/η)) until ``span(log μ − log T(μ)) ≤ inner_tol``.
Every inner evaluation of Pμ is a counted query.
"""

from __future__ import annotations

import numpy as np

from .._numerics import span
from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State, init_at_reference
from .prox import prox_step, regularized_prox

__all__ = ["proximal_point"]


def proximal_point(eta: float | None = None, inner_tol: float = 1e-10, max_inner: int = 10_000) -> Algorithm:
    """Proximal point with outer step η (default 2β) and inner tolerance on the fixed-point residual."""
    if eta is not None:
        check_positive("eta", eta)
    check_positive("inner_tol", inner_tol)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = 2.0 * game.beta if eta is None else eta
        lpk, w = state.log_policy, game.beta / e
        mu = lpk
        t_mu = lpk
        for _ in range(max_inner):
            g = query(np.exp(mu))
            t_mu = regularized_prox(game, lpk, g, w)  # T(μ), free once Pμ is known
            with np.errstate(invalid="ignore"):
                if np.max(span(mu - t_mu, game.support)) <= inner_tol:
                    break
            inner = [(0.5, mu), (game.beta, game.log_ref), (w, lpk)]
            half = prox_step(g, inner)
            mu = prox_step(query(np.exp(half)), inner)
        return State(t_mu, state.iteration + 1)

    return Algorithm(
        "proximal-point", init_at_reference, step, {"eta": eta if eta is not None else "2*beta", "inner_tol": inner_tol}
    )
