"""Parametrised policies over a finite response set, in torch.

Both start at π_0 = π_ref and keep π = 0 outside the support of π_ref (their logits are masked).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..games.game import PreferenceGame

__all__ = ["Policy", "TabularPolicy", "MLPPolicy", "make_policy", "sample"]


class Policy(nn.Module):
    """Base class: a softmax policy over n responses per context with logits masked off the support."""

    log_ref: Tensor
    support: Tensor

    def __init__(self, game: PreferenceGame) -> None:
        super().__init__()
        log_ref = torch.as_tensor(game.log_ref, dtype=torch.float64)
        self.register_buffer("log_ref", log_ref)
        self.register_buffer("support", torch.as_tensor(game.support))

    def logits(self, contexts: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_probs(self, contexts: Tensor) -> Tensor:
        """log π_θ(·|x) for a batch of context indices, shape ``(B, n)`` (``-inf`` off the support)."""
        z = self.logits(contexts).masked_fill(~self.support[contexts], float("-inf"))
        return torch.log_softmax(z, dim=-1)


class TabularPolicy(Policy):
    """One logit vector per context (softmax policy), initialised at log π_ref."""

    def __init__(self, game: PreferenceGame) -> None:
        super().__init__(game)
        self.table = nn.Parameter(torch.where(self.support, self.log_ref, torch.zeros_like(self.log_ref)))

    def logits(self, contexts: Tensor) -> Tensor:
        return self.table[contexts]


class MLPPolicy(Policy):
    """logits = log π_ref(·|x) + MLP(features(x)); the last layer starts at zero, so π_0 = π_ref.

    ``features`` (X, d) default to a fixed random embedding of each context (seeded).
    """

    features: Tensor

    def __init__(self, game: PreferenceGame, hidden: int = 64, features: Tensor | None = None, seed: int = 0) -> None:
        super().__init__(game)
        X, n = game.num_contexts, game.num_responses
        if features is None:
            gen = torch.Generator().manual_seed(seed)
            features = torch.randn(X, 16, generator=gen, dtype=torch.float64)
        self.register_buffer("features", features.to(torch.float64))
        head = nn.Linear(hidden, n)
        nn.init.zeros_(head.weight)  # π_0 = π_ref exactly
        nn.init.zeros_(head.bias)
        self.net = nn.Sequential(
            nn.Linear(features.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), head
        ).to(torch.float64)

    def logits(self, contexts: Tensor) -> Tensor:
        base = torch.where(self.support[contexts], self.log_ref[contexts], torch.zeros_like(self.log_ref[contexts]))
        return base + self.net(self.features[contexts])


def make_policy(kind: str, game: PreferenceGame, hidden: int = 64, seed: int = 0) -> Policy:
    """``"tabular"`` or ``"mlp"``."""
    torch.manual_seed(seed)
    if kind == "tabular":
        return TabularPolicy(game)
    if kind == "mlp":
        return MLPPolicy(game, hidden=hidden, seed=seed)
    raise ValueError(f"unknown policy {kind!r}")


def sample(logp: Tensor, generator: torch.Generator) -> Tensor:
    """One response index per row of ``logp`` (B, n)."""
    return torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
