"""Approximate Nash-MP: sampled preferences and policy-gradient proximal steps (needs torch).

``import nashmp.approx`` loads torch; ``import nashmp`` does not.
"""

from .losses import exact_prox_objective, ipo_loss, masked_kl, prox_pg_loss, sampled_prox_loss
from .policies import MLPPolicy, TabularPolicy, make_policy
from .recipes import RECIPES, ApproxConfig, ApproxLearner
from .runner import run_approx

__all__ = [
    "ApproxConfig",
    "ApproxLearner",
    "RECIPES",
    "run_approx",
    "TabularPolicy",
    "MLPPolicy",
    "make_policy",
    "prox_pg_loss",
    "sampled_prox_loss",
    "exact_prox_objective",
    "masked_kl",
    "ipo_loss",
]
