r"""Online IPO = exact self-play policy gradient on softmax logits (Calandriello et al. 2024; Nash-MP v2).

Euler discretisation, step ``lr``, of the gradient flow of
:math:`J(\theta)=\mathcal P(\pi_\theta\succ\mathrm{sg}\,\pi_\theta)-\beta\mathrm{KL}(\pi_\theta\|\pi_{\rm ref})`
on tabular logits θ:

.. math::
    \theta\leftarrow\theta+\mathrm{lr}\;\pi_\theta\odot(A-\langle\pi_\theta,A\rangle),\qquad
    A=P\pi_\theta-\beta(\log\pi_\theta-\log\pi_{\rm ref}).

A logit step is a prox step centred at π_θ with payoff ``lr·π⊙(A − ⟨π, A⟩)`` (one query per
iteration); its fixed points are exactly π*_β.
"""

from __future__ import annotations

import numpy as np

from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State, init_at_reference
from .prox import prox_step

__all__ = ["online_ipo", "policy_gradient"]


def policy_gradient(game: PreferenceGame, log_pi: np.ndarray, payoff: np.ndarray) -> np.ndarray:
    """Exact gradient of ``⟨π_θ, payoff⟩ − β KL(π_θ‖π_ref)`` w.r.t. the logits θ (0 off the support)."""
    pi = np.exp(log_pi)
    with np.errstate(invalid="ignore"):
        A = np.where(game.support, payoff - game.beta * (log_pi - game.log_ref), 0.0)
    return pi * (A - np.sum(pi * A, axis=-1, keepdims=True))


def online_ipo(lr: float = 1.0) -> Algorithm:
    """Self-play policy gradient with logit step ``lr``."""
    check_positive("lr", lr)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        lp = state.log_policy
        grad = policy_gradient(game, lp, query(np.exp(lp)))
        return State(prox_step(lr * grad, [(1.0, lp)]), state.iteration + 1)

    return Algorithm("online-ipo", init_at_reference, step, {"lr": lr})
