r"""Nash Mirror Prox (Tiapkin et al., 2025), exact tabular form.

One iteration, both proximal steps centred at π_k (two preference queries):

1. :math:`\pi_{k+1/2}=\arg\max_\pi \mathcal P(\pi\succ\pi_k)-\beta\mathrm{KL}(\pi\|\pi_{\rm ref})-\tfrac\beta\eta\mathrm{KL}(\pi\|\pi_k)`
2. :math:`\pi_{k+1}=\arg\max_\pi \mathcal P(\pi\succ\pi_{k+1/2})-\beta\mathrm{KL}(\pi\|\pi_{\rm ref})-\tfrac\beta\eta\mathrm{KL}(\pi\|\pi_k)`

Closed form :math:`\log\pi' = \tfrac1{1+\eta}\log\pi_k+\tfrac\eta{1+\eta}(\log\pi_{\rm ref}+P\mu/\beta)-\log Z`.
With η = 2β (the default, the largest step the mirror-prox condition η·L ≤ 1 allows for the
1/(2β)-Lipschitz operator μ ↦ Pμ/β), KL(π*‖π_k) ≤ (1+2β)^{-k} KL(π*‖π_0): the (1+2β)^{-N/2} rate in N = 2k
queries. Any η > 0 is accepted; above 2β the guarantee is not claimed (see :mod:`.adaptive`).
"""

from __future__ import annotations

import numpy as np

from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State, init_at_reference
from .prox import regularized_prox

__all__ = ["nash_mp", "nash_mp_iteration"]


def nash_mp_iteration(
    game: PreferenceGame,
    log_pi: np.ndarray,
    eta: float | np.ndarray,
    query: Query,
    payoff_center: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Nash-MP iteration. Returns ``(log π_{k+1/2}, log π_{k+1}, Pπ_k, Pπ_{k+1/2})``.

    ``payoff_center`` (Pπ_k, if already queried) saves the first query; ``eta`` may be per context ``(X, 1)``.
    """
    w = game.beta / eta
    g0 = query(np.exp(log_pi)) if payoff_center is None else payoff_center
    log_half = regularized_prox(game, log_pi, g0, w)
    g1 = query(np.exp(log_half))
    return log_half, regularized_prox(game, log_pi, g1, w), g0, g1


def nash_mp(eta: float | None = None) -> Algorithm:
    """Exact Nash-MP with step η (default 2β)."""
    if eta is not None:
        check_positive("eta", eta, " η is Nash-MP's proximal step; the theory's default is 2*beta.")

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = 2.0 * game.beta if eta is None else eta
        _, new, _, _ = nash_mp_iteration(game, state.log_policy, e, query)
        return State(new, state.iteration + 1)

    return Algorithm("nash-mp", init_at_reference, step, {"eta": eta if eta is not None else "2*beta"})
