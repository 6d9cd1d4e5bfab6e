"""Preference games and their generators (numpy only)."""

from .game import PreferenceGame, stack_games
from .generators import (
    FAMILIES,
    bradley_terry_game,
    cyclic_game,
    make_game,
    random_game,
    rps_game,
    skew_game,
    tie_game,
)

__all__ = [
    "PreferenceGame",
    "stack_games",
    "FAMILIES",
    "make_game",
    "random_game",
    "tie_game",
    "bradley_terry_game",
    "rps_game",
    "skew_game",
    "cyclic_game",
]
