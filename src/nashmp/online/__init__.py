"""The online algorithm family shared by the approximate layer and the LLM trainer: estimators and recipes."""

from .estimators import (
    grouped_ipo_loss,
    pair_indices,
    pair_matrix,
    paired_advantages,
    reward_to_go,
    selfplay_advantages,
    token_pg_loss,
)
from .recipes import ALIASES, OPPONENTS, RECIPES, Recipe, get_recipe

__all__ = [
    "ALIASES",
    "OPPONENTS",
    "RECIPES",
    "Recipe",
    "get_recipe",
    "grouped_ipo_loss",
    "pair_indices",
    "pair_matrix",
    "paired_advantages",
    "reward_to_go",
    "selfplay_advantages",
    "token_pg_loss",
]
