r"""The online algorithm family, written once: each algorithm is a short recipe over one KL-proximal step.

Every algorithm maximises, one stochastic step at a time, a KL-proximal objective of the form

.. math:: J_\mu(\theta)=\mathbb E_{y\sim\pi_\theta}[\mathcal P(y\succ\mu)]-\beta\,\mathrm{KL}(\pi_\theta\|\pi_{\rm ref})
   -\tfrac\beta\eta\,\mathrm{KL}(\pi_\theta\|\pi_{\bar\theta}),

and differs only in **who the opponent μ is**, **whether the prox centre** :math:`\pi_{\bar\theta}` **is
used**, **how the centre and snapshots move**, and **which loss** estimates the step (the policy gradient of
:func:`~nashmp.online.estimators.token_pg_loss`, or the online-IPO square loss). A :class:`Recipe` states
exactly that; the approximate layer (:class:`~nashmp.approx.ApproxLearner`) and the LLM trainer
(:class:`~nashmp.llm.NashMPTrainer`) read it and never branch on the algorithm's name.

=================  ===================  ===========  =====================================================
name               opponent μ           loss         centre / snapshots
=================  ===================  ===========  =====================================================
nash-mp            self (sg π_θ), the   PG + KLs     EMA θ̄ ← (1−κ)θ̄ + κθ after every step (practical
                   EMA, or a half copy               Nash-MP, paper v1 §5 and docs/approx-study.md)
nash-mp-faithful   π_k, then π_{k+½}    PG + KLs     M steps against the frozen centre π_k give π_{k+½};
                                                     M steps against π_{k+½} give π_{k+1} (Mirror Prox)
nash-prox          self (sg π_θ)        PG + KLs     centre hard-refreshed every K steps: self-play
                                                     inside a proximal-point loop (paper v2, COLT 2026)
nash-md            π_θ^{1−c} π_ref^c    PG, KL ref   none (Nash-MD-PG, Munos et al. 2024)
online-ipo         self                 IPO square   none (OMD / INPO form)
egpo               self                 IPO square   extragradient: look-ahead step, gradient there
=================  ===================  ===========  =====================================================

**Nash Prox is inferred** (no public code; ``../shared/docs/nash-mp.md`` §7): the v2 abstract describes
self-play policy-gradient updates (equivalent to online IPO) embedded in a proximal-point framework. We
implement the proximal point's outer loop literally — the centre π_k is a frozen snapshot refreshed to
the current θ every ``prox_every`` (K) steps — and solve each prox step, the regularised game of
temperature β(1+η)/η, by K self-play PG steps. With exact gradients this converges to π*_β on the exact
layer's games (tested); Nash-MP practical is the same objective with an EMA instead of a hard refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Recipe", "RECIPES", "RecipeParams", "get_recipe", "OPPONENTS", "ALIASES"]

#: what ``nash-mp``'s ``opponent`` field may be, and the snapshot each one samples from
OPPONENTS = {"self": "self", "ema": "anchor", "half": "half"}

#: former names, accepted with a deprecation warning by the configs
ALIASES = {"nash-md-pg": "nash-md"}


class RecipeParams(Protocol):
    """The hyper-parameters a recipe reads (fields of both ``ApproxConfig`` and ``NashMPConfig``)."""

    opponent: str
    inner_steps: int
    prox_every: int
    half_every: int
    ema: float


Events = tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """One online algorithm. Events are strings the learners execute:

    ``"anchor<-theta"`` / ``"half<-theta"`` copy θ into a snapshot, ``"reset-optimizer"`` clears the
    optimiser state (a fresh sub-problem), ``"ema"`` moves the anchor θ̄ ← (1−κ)θ̄ + κθ.
    """

    name: str
    summary: str
    loss: str  # "pg": token_pg_loss with the KL anchors; "ipo": grouped_ipo_loss
    anchor_kl: bool  # KL(π_θ‖π_θ̄) with weight β/η inside the PG loss
    opponent_at: Callable[[RecipeParams, int], str]  # step → "self" | "anchor" | "half" | "mixture"
    before: Callable[[RecipeParams, int], Events] = lambda hp, step: ()
    after: Callable[[RecipeParams, int], Events] = lambda hp, step: ()  # called with the new step count
    extragradient: bool = False
    half_copy: Callable[[RecipeParams], bool] = lambda hp: False  # keeps a frozen half-step copy of θ

    def snapshots(self, hp: RecipeParams) -> tuple[str, ...]:
        """The parameter snapshots this recipe keeps (nothing for Nash-MD, online IPO, EGPO)."""
        return tuple(name for name, kept in (("anchor", self.anchor_kl), ("half", self.half_copy(hp))) if kept)


def _practical_after(hp: RecipeParams, step: int) -> Events:
    refresh_half = hp.opponent == "half" and step % hp.half_every == 0
    return ("ema", "half<-theta") if refresh_half else ("ema",)


def _faithful_opponent(hp: RecipeParams, step: int) -> str:
    return "half" if step % (2 * hp.inner_steps) >= hp.inner_steps else "anchor"


def _faithful_before(hp: RecipeParams, step: int) -> Events:
    pos = step % (2 * hp.inner_steps)
    if pos == 0:  # a new outer iteration: π_k ← θ, fresh optimiser for the half-step sub-problem
        return ("anchor<-theta", "reset-optimizer")
    if pos == hp.inner_steps:  # π_{k+½} frozen; the full step warm-starts from it with a fresh optimiser
        return ("half<-theta", "reset-optimizer")
    return ()


def _prox_before(hp: RecipeParams, step: int) -> Events:
    return ("anchor<-theta",) if step % hp.prox_every == 0 else ()


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "nash-mp",
            "practical Nash-MP: PG prox step against `opponent`, KL to π_ref (β) and to an EMA anchor (β/η)",
            "pg",
            True,
            lambda hp, step: OPPONENTS[hp.opponent],
            after=_practical_after,
            half_copy=lambda hp: hp.opponent == "half",
        ),
        Recipe(
            "nash-mp-faithful",
            "two-phase Nash-MP: M steps against π_k give π_{k+½}; M steps against π_{k+½} give π_{k+1}",
            "pg",
            True,
            _faithful_opponent,
            before=_faithful_before,
            half_copy=lambda hp: True,
        ),
        Recipe(
            "nash-prox",
            "Nash Prox: self-play PG with KL to π_ref (β) and to a centre refreshed every prox_every steps (β/η)",
            "pg",
            True,
            lambda hp, step: "self",
            before=_prox_before,
        ),
        Recipe(
            "nash-md",
            "Nash-MD-PG: opponent sampled from the geometric mixture π_θ^{1−c} π_ref^c, KL to π_ref",
            "pg",
            False,
            lambda hp, step: "mixture",
        ),
        Recipe("online-ipo", "self-play online IPO square loss (OMD/INPO form)", "ipo", False, lambda hp, s: "self"),
        Recipe(
            "egpo",
            "extragradient online IPO: look-ahead step, then the update from θ_t with the look-ahead gradient",
            "ipo",
            False,
            lambda hp, s: "self",
            extragradient=True,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (KeyError if unknown; configs validate names first)."""
    return RECIPES[ALIASES.get(name, name)]
