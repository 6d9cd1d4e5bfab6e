r"""The one KL-proximal step every algorithm in nashmp is built from.

.. math::

    \mathrm{prox}(g;\{(w_i, a_i)\}) = \arg\max_{\pi\in\Delta}\ \langle \pi, g\rangle - \sum_i w_i\,\mathrm{KL}(\pi\|a_i)
    = \mathrm{softmax}\Big(\frac{\sum_i w_i \log a_i + g}{\sum_i w_i}\Big).

Every update of Nash-MP, proximal point, Nash-MD, OMD/INPO, EGPO, MPO, SPPO, ONPO and the
self-play policy gradient is this step with a particular payoff ``g`` and anchors:

* **Nash-MP** (moonlight notation, η relative to the KL-to-ref weight): anchors (π_k, β/η), (π_ref, β),
  payoff ``P μ`` — :func:`regularized_prox` with ``center_weight = β/η``.
* **Mirror-descent form** ``π' ∝ π_k^{1−ηβ} π_ref^{ηβ} e^{η g}`` (OMD, EGPO, Nash-MD, ONPO): the same
  step with ``center_weight = (1 − ηβ)/η`` (:func:`md_center_weight`). Hence Nash-MP's η and the
  mirror-descent η_MD describe the same update iff ``η_MD = η / (β (1 + η))``
  (:func:`md_step_from_nash_mp`).

The step is computed in log space (``log_normalize``), with ``-inf`` kept outside the support.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._numerics import FloatArray, log_normalize
from ..errors import InvalidParameterError
from ..games.game import PreferenceGame

__all__ = [
    "prox_step",
    "regularized_prox",
    "md_center_weight",
    "md_step_from_nash_mp",
    "nash_mp_step_from_md",
]

Weight = float | FloatArray


def prox_step(payoff: FloatArray, anchors: Sequence[tuple[Weight, FloatArray]]) -> FloatArray:
    r"""Log of ``argmax_π ⟨π, g⟩ − Σ_i w_i KL(π‖a_i)``, batched over the leading axes.

    Args:
        payoff: ``g``, shape ``(X, n)``.
        anchors: pairs ``(w_i, log a_i)``; ``w_i`` a scalar or an array broadcastable to ``(X, 1)``,
            ``≥ 0`` with a positive total. Anchors of weight exactly 0 are skipped (so a ``-inf`` log
            anchor with weight 0 does not produce NaN).

    Returns:
        ``log softmax((Σ w_i log a_i + g) / Σ w_i)``.
    """
    total: Weight = 0.0
    acc = np.asarray(payoff, dtype=np.float64)
    for w, log_a in anchors:
        if np.isscalar(w) and w == 0:
            continue
        acc = acc + w * log_a
        total = total + w
    if np.any(np.asarray(total) <= 0):
        raise InvalidParameterError("prox_step needs anchor weights with a positive sum.")
    return log_normalize(acc / total)


def regularized_prox(
    game: PreferenceGame, log_center: FloatArray, payoff: FloatArray, center_weight: Weight
) -> FloatArray:
    r"""``argmax_π ⟨π, g⟩ − β KL(π‖π_ref) − w_c KL(π‖center)``: the prox step of a β-regularised game."""
    return prox_step(payoff, [(center_weight, log_center), (game.beta, game.log_ref)])


def md_center_weight(beta: float, eta_md: float) -> float:
    r"""Centre weight ``(1 − η β)/η`` that turns :func:`regularized_prox` into ``π_k^{1−ηβ} π_ref^{ηβ} e^{η g}``.

    Requires ``η β ≤ 1`` (at equality the step is the regularised best response).
    """
    if eta_md * beta > 1 + 1e-12:
        raise InvalidParameterError(
            f"the mirror-descent step needs eta*beta ≤ 1 (the exponent 1 − ηβ of π_k must be ≥ 0); "
            f"got eta={eta_md:g}, beta={beta:g}. Use eta ≤ {1 / beta:g}."
        )
    return max(0.0, (1.0 - eta_md * beta) / eta_md)


def md_step_from_nash_mp(eta: float, beta: float) -> float:
    r"""η_MD = η / (β(1 + η)): the mirror-descent step with the same update as Nash-MP's η."""
    return eta / (beta * (1.0 + eta))


def nash_mp_step_from_md(eta_md: float, beta: float) -> float:
    r"""Inverse of :func:`md_step_from_nash_mp`: η = η_MD β / (1 − η_MD β), for η_MD β < 1."""
    if eta_md * beta >= 1:
        raise InvalidParameterError(f"eta_md*beta must be < 1 to map to a finite Nash-MP step, got {eta_md * beta:g}.")
    return eta_md * beta / (1.0 - eta_md * beta)
