"""What an algorithm is: a pair of pure functions over an explicit state (optax style).

``init(game) -> State`` and ``step(game, state, query) -> State``. ``query(μ)`` is the only access an
algorithm has to the preferences: it returns ``P(·≻μ)`` for every context and is counted by the
runner as **one preference query**, so the query counts in nashmp are measured, not declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._numerics import FloatArray
from ..games.game import PreferenceGame

__all__ = ["State", "Query", "Algorithm"]

#: ``query(policy (X, n)) -> P(·≻policy) (X, n)``; each call is one preference query.
Query = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True)
class State:
    """Iterate of an algorithm: ``log_policy`` (X, n), the iteration count and algorithm-specific data."""

    log_policy: FloatArray
    iteration: int = 0
    aux: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Algorithm:
    """A named algorithm: ``init`` and ``step`` plus the parameters it was built with (for reports)."""

    name: str
    init: Callable[[PreferenceGame], State]
    step: Callable[[PreferenceGame, State, Query], State]
    params: Mapping[str, Any] = field(default_factory=dict)


def init_at_reference(game: PreferenceGame) -> State:
    """π_0 = π_ref, the initialisation behind the paper's KL(π*‖π_0) ≤ 1/β constant."""
    return State(log_policy=game.log_ref.copy())
