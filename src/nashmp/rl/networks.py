"""The on-policy MDPO networks (the release's): 64-64 tanh MLPs with orthogonal init (gain √2, head 0.01 for the
actor, 1 for the critic); a Gaussian with a state-independent log-std initialised at 0, or categorical logits."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

__all__ = ["Actor", "critic"]


def _layer(inp: int, out: int, gain: float = float(np.sqrt(2))) -> nn.Linear:
    layer = nn.Linear(inp, out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Actor(nn.Module):
    """64-64 tanh MLP; Gaussian with state-independent log-std, or categorical logits."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(action_space, gym.spaces.Discrete):
            out = int(action_space.n)
        else:
            out = int(np.prod(action_space.shape or (1,)))
        self.body = nn.Sequential(
            _layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, out, 0.01)
        )
        self.log_std = None if self.discrete else nn.Parameter(torch.zeros(out))

    def dist(self, obs: Tensor) -> Distribution:
        head = self.body(obs)
        if self.discrete:
            return Categorical(logits=head)
        assert self.log_std is not None
        return Normal(head, self.log_std.exp().expand_as(head))

    def log_prob(self, d: Distribution, actions: Tensor) -> Tensor:
        lp = d.log_prob(actions)
        return lp if self.discrete else lp.sum(-1)

    def act(self, obs: Tensor, deterministic: bool, generator: torch.Generator | None = None) -> Tensor:
        """Inference: the mean (most likely) action, or a sample from ``generator`` (not the global RNG)."""
        d = self.dist(obs)
        if self.discrete:
            probs = d.probs  # type: ignore[attr-defined]
            return probs.argmax(-1) if deterministic else torch.multinomial(probs, 1, generator=generator)[:, 0]
        mean = d.mean
        return mean if deterministic else mean + d.stddev * torch.randn(mean.shape, generator=generator)


def critic(obs_dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(_layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, 1, 1.0))
