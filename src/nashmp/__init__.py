"""nashmp: Nash Learning from Human Feedback with Nash Mirror Prox.

The exact (tabular) layer: preference games, the certified β-regularised equilibrium, metrics and
every baseline on one KL-prox core. ``import nashmp`` needs numpy and scipy only.
"""

from .algorithms import ALGORITHMS, Algorithm, State, make_algorithm, prox_step
from .equilibrium import Equilibrium, fixed_point_residual, solve_equilibrium
from .errors import (
    EquilibriumNotCertifiedError,
    InvalidOracleOutputError,
    InvalidParameterError,
    InvalidPolicyError,
    InvalidPreferenceError,
    InvalidReferenceError,
    NashMPValueError,
)
from .games import FAMILIES, PreferenceGame, make_game, stack_games
from .metrics import METRICS
from .oracles import CallableOracle, GameOracle, NoisyOracle, PreferenceOracle
from .runner import Trajectory, queries_to_reach, run

__version__ = "0.1.0"

__all__ = [
    "PreferenceGame",
    "stack_games",
    "make_game",
    "FAMILIES",
    "solve_equilibrium",
    "Equilibrium",
    "fixed_point_residual",
    "METRICS",
    "ALGORITHMS",
    "Algorithm",
    "State",
    "make_algorithm",
    "prox_step",
    "run",
    "Trajectory",
    "queries_to_reach",
    "NashMPValueError",
    "InvalidPreferenceError",
    "InvalidReferenceError",
    "InvalidParameterError",
    "InvalidPolicyError",
    "EquilibriumNotCertifiedError",
    "InvalidOracleOutputError",
    "PreferenceOracle",
    "GameOracle",
    "NoisyOracle",
    "CallableOracle",
    "__version__",
]
