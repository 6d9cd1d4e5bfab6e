r"""Mirror-descent baselines, all in the form :math:`\pi'\propto\pi_k^{1-\eta\beta}\pi_{\rm ref}^{\eta\beta}e^{\eta g}`.

===========  =================================================================  =====================
algorithm    payoff g / extra                                                   queries per iteration
===========  =================================================================  =====================
OMD (INPO)   g = Pπ_k (exact INPO = online mirror descent with KL to π_ref)     1
EGPO         extragradient: π_{k+½} with g = Pπ_k, π_{k+1} with g = Pπ_{k+½}     2
Nash-MD      g = Pπ^μ_k against the geometric mixture π^μ ∝ π_k^{1−ηβ}π_ref^{ηβ}  1
ONPO         optimistic: g = 2Pπ_k − Pπ_{k−1} (optimism on the preference term)   1
SPPO         no reference: π' ∝ π_k e^{η Pπ_k}                                  1
===========  =================================================================  =====================

All are :func:`~nashmp.algorithms.prox.regularized_prox` with centre weight (1 − ηβ)/η, so ηβ ≤ 1.
EGPO with η_MD = η/(β(1+η)) produces exactly Nash-MP's iterates (tested).

Nash-MD with a constant step converges to a *biased* fixed point, π ∝ π_ref e^{Pπ^μ/β}, not to π*_β;
with ``decay=True`` its step is η_k = min(η, 2/(β(k+2))) (Munos et al.), which does converge, slowly.
"""

from __future__ import annotations

import numpy as np

from ..games.game import PreferenceGame, check_positive
from .base import Algorithm, Query, State, init_at_reference
from .prox import md_center_weight, md_step_from_nash_mp, prox_step, regularized_prox

__all__ = ["omd", "egpo", "nash_md", "onpo", "sppo"]


def _eta(eta: float | None, default: float) -> float:
    return default if eta is None else eta


def omd(eta: float | None = None) -> Algorithm:
    """Online mirror descent (= exact INPO). Default η_MD = β, a conservative stable step."""
    if eta is not None:
        check_positive("eta", eta)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = _eta(eta, game.beta)
        w = md_center_weight(game.beta, e)
        lp = state.log_policy
        return State(regularized_prox(game, lp, query(np.exp(lp)), w), state.iteration + 1)

    return Algorithm("omd", init_at_reference, step, {"eta": eta if eta is not None else "beta"})


def egpo(eta: float | None = None) -> Algorithm:
    """EGPO's extragradient in mirror-descent steps; default η_MD = 2/(1+2β), the image of Nash-MP's 2β."""
    if eta is not None:
        check_positive("eta", eta)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = _eta(eta, md_step_from_nash_mp(2.0 * game.beta, game.beta))
        w = md_center_weight(game.beta, e)
        lp = state.log_policy
        half = regularized_prox(game, lp, query(np.exp(lp)), w)
        return State(regularized_prox(game, lp, query(np.exp(half)), w), state.iteration + 1)

    return Algorithm("egpo", init_at_reference, step, {"eta": eta if eta is not None else "2/(1+2*beta)"})


def nash_md(eta: float | None = None, decay: bool = True) -> Algorithm:
    """Nash-MD: play against the geometric mixture of π_k and π_ref.

    ``decay=True`` (default) uses η_k = min(η, 2/(β(k+2))) (η defaults to 1/β); ``decay=False`` keeps η
    constant (default η = 1/(2β), i.e. mixture weight ηβ = ½ as TRL's ``mixture_coef``), which converges
    to a biased fixed point.
    """
    if eta is not None:
        check_positive("eta", eta)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        b = game.beta
        if decay:
            e = min(1.0 / b if eta is None else eta, 2.0 / (b * (state.iteration + 2)))
        else:
            e = _eta(eta, 0.5 / b)
        w = md_center_weight(b, e)
        lp = state.log_policy
        log_mix = prox_step(np.zeros_like(lp), [(w, lp), (b, game.log_ref)])  # π_k^{1−ηβ} π_ref^{ηβ}
        return State(regularized_prox(game, lp, query(np.exp(log_mix)), w), state.iteration + 1)

    return Algorithm(
        "nash-md",
        init_at_reference,
        step,
        {"eta": eta if eta is not None else ("1/beta" if decay else "0.5/beta"), "decay": decay},
    )


def onpo(eta: float | None = None) -> Algorithm:
    """Optimistic OMD (ONPO): payoff 2Pπ_k − Pπ_{k−1}, one query per iteration. Default η_MD = 1/(1+2β)."""
    if eta is not None:
        check_positive("eta", eta)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        e = _eta(eta, 1.0 / (1.0 + 2.0 * game.beta))
        w = md_center_weight(game.beta, e)
        lp = state.log_policy
        g = query(np.exp(lp))
        g_prev = state.aux.get("payoff", g)
        return State(regularized_prox(game, lp, 2.0 * g - g_prev, w), state.iteration + 1, {"payoff": g})

    return Algorithm("onpo", init_at_reference, step, {"eta": eta if eta is not None else "1/(1+2*beta)"})


def sppo(eta: float = 1.0) -> Algorithm:
    """SPPO's exact update π' ∝ π_k e^{η Pπ_k}: no π_ref term, so it does not target π*_β (reported as is)."""
    check_positive("eta", eta)

    def step(game: PreferenceGame, state: State, query: Query) -> State:
        lp = state.log_policy
        return State(prox_step(query(np.exp(lp)), [(1.0 / eta, lp)]), state.iteration + 1)

    return Algorithm("sppo", init_at_reference, step, {"eta": eta})
