r"""Distances to the regularised equilibrium and exploitability, per context and aggregated.

Conventions (the paper leaves them open; these are ours, tested in ``tests/test_metrics.py``):

* ``kl_to_star`` is KL(π*‖π) — the direction of the paper's rate — and ``kl_from_star`` is KL(π‖π*).
* ``exploitability`` is :math:`\mathcal E_\beta(\pi)=\max_{\pi'}\mathcal P_\beta(\pi'\succ\pi)-\tfrac12`,
  computed through the closed-form best response :math:`b\propto\pi_{\rm ref}e^{P\pi/\beta}` as
  :math:`\mathcal E_\beta(\pi)=\beta\,\mathrm{KL}(\pi\|b)` (an identity: it needs no cancellation).
* ``duality_gap`` is :math:`\max_{\pi'}\mathcal P_\beta(\pi'\succ\pi)-\min_{\pi'}\mathcal P_\beta(\pi\succ\pi')
  =2\,\mathcal E_\beta(\pi)` (the game is symmetric and constant-sum).
* ``span`` is :math:`\max_y(\log\pi-\log\pi^\star)(y)-\min_y(\cdot)` over the support of π_ref.
* ``unregularized_exploitability`` is :math:`\max_y(P\pi)_y-\tfrac12` over the support.
* Aggregation over contexts: the plain name is the ρ-weighted mean (so ``kl_to_star`` is KL_ρ), and
  ``<name>_max`` is the maximum over contexts (the "uniform" version, e.g. ``span_max`` = sup_x).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ._numerics import FloatArray, kl_from_logs, log_normalize, span
from .errors import InvalidParameterError
from .games.game import PreferenceGame

__all__ = [
    "METRICS",
    "DESCRIPTIONS",
    "best_response",
    "exploitability",
    "duality_gap",
    "kl_to_star",
    "kl_from_star",
    "span_seminorm",
    "unregularized_exploitability",
    "context_metrics",
    "aggregate",
]

#: Metric names (the ``metrics=`` of :func:`~nashmp.run`), in the order they are written to CSV files, where
#: each is the column ``eval/<name>`` (see :data:`nashmp.runner.COLUMNS`).
METRICS: tuple[str, ...] = (
    "kl_to_star",
    "kl_from_star",
    "exploitability",
    "duality_gap",
    "span",
    "unregularized_exploitability",
)
#: What each metric measures, per context (the module docstring has the conventions).
DESCRIPTIONS: dict[str, str] = {
    "kl_to_star": "KL(π*‖π), the direction of the paper's rate",
    "kl_from_star": "KL(π‖π*)",
    "exploitability": "𝓔_β(π) = max_π' 𝒫_β(π' ≻ π) − ½ = β·KL(π‖BR(π))",
    "duality_gap": "max_π' 𝒫_β(π' ≻ π) − min_π' 𝒫_β(π ≻ π') = 2𝓔_β(π)",
    "span": "max_y (log π − log π*)(y) − min_y (·) over the support of π_ref",
    "unregularized_exploitability": "max_y (Pπ)_y − ½ over the support",
}


def best_response(game: PreferenceGame, log_pi: FloatArray, payoff: FloatArray | None = None) -> FloatArray:
    """Log of the regularised best response ``b ∝ π_ref · exp(P(·≻π)/β)``, shape ``(X, n)``."""
    if payoff is None:
        payoff = game.payoff(np.exp(log_pi))
    return log_normalize(game.log_ref + payoff / game.beta)


def exploitability(game: PreferenceGame, log_pi: FloatArray, payoff: FloatArray | None = None) -> FloatArray:
    """Per-context 𝓔_β(π) = β · KL(π ‖ BR(π)) ≥ 0."""
    return game.beta * kl_from_logs(log_pi, best_response(game, log_pi, payoff))


def duality_gap(game: PreferenceGame, log_pi: FloatArray, payoff: FloatArray | None = None) -> FloatArray:
    """Per-context duality gap of the regularised game, equal to 2 𝓔_β(π)."""
    return 2.0 * exploitability(game, log_pi, payoff)


def kl_to_star(log_star: FloatArray, log_pi: FloatArray) -> FloatArray:
    """Per-context KL(π*‖π)."""
    return kl_from_logs(log_star, log_pi)


def kl_from_star(log_star: FloatArray, log_pi: FloatArray) -> FloatArray:
    """Per-context KL(π‖π*)."""
    return kl_from_logs(log_pi, log_star)


def span_seminorm(game: PreferenceGame, log_star: FloatArray, log_pi: FloatArray) -> FloatArray:
    """Per-context span of log π − log π* over the support (inf if π vanishes on the support)."""
    with np.errstate(invalid="ignore"):
        return span(log_pi - log_star, game.support)


def unregularized_exploitability(game: PreferenceGame, payoff: FloatArray) -> FloatArray:
    """Per-context ``max_y P(y≻π) − ½`` over the support (≥ 0 by symmetry of P)."""
    return np.max(np.where(game.support, payoff, -np.inf), axis=-1) - 0.5


def context_metrics(
    game: PreferenceGame,
    log_star: FloatArray,
    log_pi: FloatArray,
    names: Iterable[str] = METRICS,
) -> dict[str, FloatArray]:
    """Every requested metric per context (arrays of shape ``(X,)``), one matvec at most."""
    names = tuple(names)
    out: dict[str, FloatArray] = {}
    payoff = None
    if {"exploitability", "duality_gap", "unregularized_exploitability"} & set(names):
        payoff = game.payoff(np.exp(log_pi))
    for name in names:
        if name == "kl_to_star":
            out[name] = kl_to_star(log_star, log_pi)
        elif name == "kl_from_star":
            out[name] = kl_from_star(log_star, log_pi)
        elif name == "exploitability":
            out[name] = exploitability(game, log_pi, payoff)
        elif name == "duality_gap":
            out[name] = 2.0 * out["exploitability"] if "exploitability" in out else duality_gap(game, log_pi, payoff)
        elif name == "span":
            out[name] = span_seminorm(game, log_star, log_pi)
        elif name == "unregularized_exploitability":
            assert payoff is not None
            out[name] = unregularized_exploitability(game, payoff)
        else:
            raise InvalidParameterError(f"unknown metric {name!r}; choose from {METRICS}.")
    return out


def aggregate(game: PreferenceGame, per_context: Mapping[str, FloatArray]) -> dict[str, float]:
    """ρ-weighted mean (plain name) and maximum (``<name>_max``) over contexts."""
    out: dict[str, float] = {}
    for name, values in per_context.items():
        v = np.asarray(values)
        with np.errstate(invalid="ignore"):
            out[name] = float(np.sum(game.weights * v)) if np.all(np.isfinite(v)) else float(np.inf)
        out[f"{name}_max"] = float(np.max(v))
    return out
