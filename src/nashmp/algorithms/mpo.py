r"""Magnetic mirror descent with magnet reset (MPO, Wang et al. 2024), on the β-regularised game.

.. math::
    \pi_{k+1}=\arg\max_\pi\ \mathcal P(\pi\succ\pi_k)-\beta\mathrm{KL}(\pi\|\pi_{\rm ref})
    -\alpha\,\mathrm{KL}(\pi\|\pi_{\rm mag})-\tfrac1\eta\mathrm{KL}(\pi\|\pi_k),

with the magnet :math:`\pi_{\rm mag}` reset to the current iterate every ``reset_every`` iterations
(one query per iteration). Between resets this is magnetic mirror descent on a game regularised by
β + α, which converges linearly to that game's equilibrium; since a fixed point has π = π_mag, the
α-term then vanishes and the resets drive the iterates to π*_β (MPO's construction, which targets
the unregularised game when β = 0). With ``reset_every=None`` the magnet stays at π_ref (plain MMD).
Default η = 2(β+α) (half of the MMD stability bound (β+α)/L², L = ½), α = 1, reset every 20.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State, init_at_reference
from .prox import prox_step

__all__ = ["mpo"]


def mpo(eta: float | None = None, alpha: float = 1.0, reset_every: int | None = 20) -> Algorithm:
    """MPO / magnetic mirror descent with magnet weight α and magnet reset period."""
    if eta is not None:
        check_positive("eta", eta)
    check_positive("alpha", alpha)
    if reset_every is not None and (int(reset_every) != reset_every or reset_every < 1):
        raise InvalidParameterError(f"reset_every must be a positive integer or None, got {reset_every!r}.")

    def init(game: PreferenceGame) -> State:
        s = init_at_reference(game)
        return State(s.log_policy, 0, {"log_magnet": game.log_ref.copy()})

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = 2.0 * (game.beta + alpha) if eta is None else eta
        lp, mag = state.log_policy, state.aux["log_magnet"]
        g = query(np.exp(lp))
        new = prox_step(g, [(1.0 / e, lp), (game.beta, game.log_ref), (alpha, mag)])
        k = state.iteration + 1
        if reset_every is not None and k % reset_every == 0:
            mag = new
        return State(new, k, {"log_magnet": mag})

    return Algorithm(
        "mpo",
        init,
        step,
        {"eta": eta if eta is not None else "2*(beta+alpha)", "alpha": alpha, "reset_every": reset_every},
    )
