r"""Off-policy MDPO (Tomar et al., 2020): a SAC-like actor–critic whose actor takes mirror-descent steps.

Every ``old_refresh`` environment steps the actor is copied into a frozen *old policy* π_old; in between,
each environment step makes one gradient step on

.. math::
    \mathcal L_\pi(\theta)=\mathbb E_{s\sim\mathcal D,\ \tilde a=f_\theta(s,\epsilon)}\Big[
    c\,\big(\log\pi_\theta(\tilde a|s)-\log\pi_{\rm old}(\tilde a|s)\big)+\lambda\log\pi_{\rm old}(\tilde a|s)
    -\min_j Q_j(s,\tilde a)\Big],

a reparameterised estimate of :math:`\mathrm{KL}(\pi_\theta\|\pi_{\rm old})` with weight c = 1/t_k (fixed) plus
the soft-Q objective with temperature λ — the KL-prox step of the rest of nashmp, centred at π_old. With
c = λ the old-policy terms cancel and the loss is SAC's actor loss (tested).

Choices (release behaviour in brackets): twin Q-networks with Polyak-averaged *target Q-networks* (the
modern equivalent of the release's V-network with a target V); the actor uses min(Q1, Q2) [Q1 only];
**data are collected with the stochastic policy** [the release collected with the deterministic action:
``deterministic_collection=True`` reproduces it]; time-limit truncations bootstrap [``done`` cut them];
tanh-squashed Gaussian, state-dependent log σ ∈ [−20, 2], actions rescaled to the Box bounds; fixed
λ = 0.2, c = 1, T = 1000, batch 256, Adam 3e-4, τ = 0.005, γ = 0.99, 10k uniform warm-up steps,
256-256 ReLU networks, regulariser 1e-3·(μ² + log σ²) on the actor.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InvalidParameterError
from ..games.game import check_positive, check_positive_int
from .checkpoint import checkpoint_config, load_agent_state, read_checkpoint, save_agent
from .envs import check_env_id, make_vec_env

__all__ = ["MDPOOffConfig", "MDPOOff", "TanhGaussianActor", "actor_loss"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


@dataclass
class MDPOOffConfig:
    """Off-policy MDPO hyper-parameters (the release's defaults unless the module docstring says otherwise)."""

    env_id: str = "Pendulum-v1"
    """gymnasium environment id with a Box action space (``nashmp rl train --env``)."""
    total_steps: int = 1_000_000
    """Environment steps of the whole run (``--steps``); one gradient step per environment step."""
    seed: int = 0
    """Seed of the environment, the networks and the exploration noise (``--seed``)."""
    buffer_size: int = 1_000_000
    """Capacity of the replay buffer, in transitions."""
    learning_starts: int = 10_000
    """Environment steps of uniformly random actions before the first gradient step (≥ 0)."""
    batch_size: int = 256
    """Transitions sampled from the replay buffer per gradient step."""
    lr: float = 3e-4
    """Adam step size of the actor and the critics."""
    gamma: float = 0.99
    """γ, the discount factor (0 < γ ≤ 1)."""
    tau: float = 0.005
    """Polyak rate of the target critics (0 < τ ≤ 1)."""
    entropy: float = 0.2
    """λ, the fixed temperature."""
    kl_coeff: float = 1.0
    """c = 1/t_k, the weight of KL(π_θ‖π_old) (fixed, as in the paper's off-policy variant)."""
    old_refresh: int = 1000
    """T: environment steps (= gradient steps) between refreshes of π_old."""
    hidden: int = 256
    """Width of the two ReLU hidden layers of the actor and the critics."""
    actor_reg: float = 1e-3
    """Weight of the actor regulariser ``actor_reg · (mean(μ²) + mean(log σ²))`` on its pre-squash head (release: 1e-3)."""
    deterministic_collection: bool = False
    """Collect experience with the actor's mean action instead of a sample (no exploration noise)."""
    eval_episodes: int = 10
    """Episodes of the final deterministic evaluation (``--eval-episodes``; ≥ 1)."""
    torch_threads: int = 1
    """torch intra-op threads (1: robust on a loaded machine; 2 is ~1.5× faster on an idle 2-core one)."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "buffer_size", "batch_size", "old_refresh", "hidden", "torch_threads"):
            check_positive_int(name, getattr(self, name))
        if self.learning_starts < 0:
            raise InvalidParameterError(f"learning_starts must be ≥ 0, got {self.learning_starts!r}.")
        for name in ("lr", "kl_coeff"):
            check_positive(name, getattr(self, name))
        if self.entropy < 0 or not 0 < self.tau <= 1 or not 0 < self.gamma <= 1:
            raise InvalidParameterError("need entropy ≥ 0, 0 < tau ≤ 1 and 0 < gamma ≤ 1.")


def _mlp(inp: int, out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


class TanhGaussianActor(nn.Module):
    """a = low + (tanh(u) + 1)(high − low)/2 with u ∼ N(μ(s), σ(s)²); log-probs include the squash Jacobian."""

    scale: Tensor
    offset: Tensor

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.net = _mlp(obs_dim, 2 * act_dim, hidden)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("offset", torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.net(obs).chunk(2, -1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def log_prob_from_params(self, mu: Tensor, log_std: Tensor, u: Tensor) -> Tensor:
        """log π(a|s) for the pre-squash sample u (a = squash(u)) given the head's (μ, log σ)."""
        # the diagonal-Normal log-density written out (the formula of torch.distributions.Normal.log_prob):
        # building a Distribution object per call costs more than the arithmetic at batch 256
        normal = -((u - mu) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - _HALF_LOG_2PI
        # log|da/du| = log scale + log(1 − tanh²u), the latter written stably as 2(log 2 − u − softplus(−2u))
        jac = torch.log(self.scale) + 2 * (np.log(2.0) - u - nn.functional.softplus(-2 * u))
        return (normal - jac).sum(-1)

    def log_prob_u(self, obs: Tensor, u: Tensor) -> Tensor:
        """log π(a|s) for the pre-squash sample u (a = squash(u))."""
        return self.log_prob_from_params(*self.params(obs), u)

    def sample_with_params(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Reparameterised (action, pre-squash u, log π(action|s), μ, log σ) from one forward pass."""
        mu, log_std = self.params(obs)
        eps = torch.randn(mu.shape, generator=generator)
        u = mu + log_std.exp() * eps
        return self.squash(u), u, self.log_prob_from_params(mu, log_std, u), mu, log_std

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reparameterised (action, pre-squash u, log π(action|s))."""
        return self.sample_with_params(obs, generator)[:3]

    def squash(self, u: Tensor) -> Tensor:
        return self.offset + self.scale * torch.tanh(u)


def actor_loss(logp_new: Tensor, logp_old: Tensor, q: Tensor, kl_coeff: float, entropy: float) -> Tensor:
    r"""Mean of c(log π_θ − log π_old) + λ log π_old − Q at reparameterised actions (see the module docstring)."""
    return (kl_coeff * (logp_new - logp_old) + entropy * logp_old - q).mean()


@dataclass
class _Progress:
    global_step: int = 0
    updates: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class MDPOOff:
    """Off-policy MDPO agent with ``learn``/``evaluate``/``save``/``load`` (exact resume)."""

    STATEFUL = ("actor", "old", "q", "q_target", "actor_opt", "q_opt")

    def __init__(self, config: MDPOOffConfig) -> None:
        self.cfg = config
        probe = check_env_id(config.env_id)
        space = probe.action_space
        if not isinstance(space, gym.spaces.Box) or not isinstance(probe.observation_space, gym.spaces.Box):
            raise InvalidParameterError(
                f"{config.env_id}: off-policy MDPO needs Box observations and Box (continuous) actions, got "
                f"{probe.observation_space} and {space}."
            )
        probe.close()
        self.action_space = space
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.env = make_vec_env(config.env_id, 1, normalize=False, gamma=config.gamma)
        obs_dim = int(np.prod(self.env.single_observation_space.shape or (1,)))
        act_dim = int(np.prod(space.shape))
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.hidden, space.low, space.high)
        self.old = copy.deepcopy(self.actor).requires_grad_(False)
        self.q = nn.ModuleList([_mlp(obs_dim + act_dim, 1, config.hidden) for _ in range(2)])
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=config.lr)
        size = min(config.buffer_size, config.total_steps)
        self.buffer = {
            "obs": np.zeros((size, obs_dim), np.float32),
            "act": np.zeros((size, act_dim), np.float32),
            "rew": np.zeros(size, np.float32),
            "next": np.zeros((size, obs_dim), np.float32),
            "term": np.zeros(size, np.float32),
        }
        self.size = 0
        self.progress = _Progress()
        self.obs, _ = self.env.reset(seed=config.seed)
        self.reset_next = np.zeros(1, bool)
        self.returns: list[float] = []

    # ---------------------------------------------------------------- acting and storing
    def _action(self, obs: np.ndarray) -> np.ndarray:
        if self.progress.global_step < self.cfg.learning_starts:
            return self.rng.uniform(self.action_space.low, self.action_space.high)[None].astype(np.float32)
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)
            if self.cfg.deterministic_collection:
                return self.actor.squash(self.actor.params(o)[0]).numpy()
            return self.actor.sample(o, self.generator)[0].numpy()

    def _store(self, obs: np.ndarray, act: np.ndarray, rew: float, nxt: np.ndarray, term: bool) -> None:
        i = self.size % len(self.buffer["rew"])
        b = self.buffer
        b["obs"][i], b["act"][i], b["rew"][i], b["next"][i], b["term"][i] = obs, act, rew, nxt, float(term)
        self.size += 1

    # ---------------------------------------------------------------- one gradient step
    def update(self) -> dict[str, float]:
        cfg = self.cfg
        n = min(self.size, len(self.buffer["rew"]))
        idx = self.rng.integers(0, n, cfg.batch_size)
        obs, act, rew, nxt, term = (torch.as_tensor(self.buffer[k][idx]) for k in ("obs", "act", "rew", "next", "term"))
        # actor: a mirror-descent step centred at π_old (before the critic step, as released)
        a_new, u_new, logp_new, mu, log_std = self.actor.sample_with_params(obs, self.generator)
        logp_old = self.old.log_prob_u(obs, u_new)
        sa = torch.cat([obs, a_new], -1)
        # the actor step needs ∂Q/∂a, not ∂Q/∂φ: freezing the critics skips their weight gradients
        self.q.requires_grad_(False)
        try:
            q_new = torch.min(self.q[0](sa), self.q[1](sa))[:, 0]
            loss_pi = actor_loss(logp_new, logp_old, q_new, cfg.kl_coeff, cfg.entropy)
            loss_pi = loss_pi + cfg.actor_reg * (mu.pow(2).mean() + log_std.pow(2).mean())
            self.actor_opt.zero_grad()
            loss_pi.backward()
            self.actor_opt.step()
        finally:  # an interrupted step must not leave the critics untrainable
            self.q.requires_grad_(True)
        # critic: soft Bellman target with target Q-networks; truncations bootstrap (term = 0)
        with torch.no_grad():
            a2, _, logp2 = self.actor.sample(nxt, self.generator)
            sa2 = torch.cat([nxt, a2], -1)
            q_next = torch.min(self.q_target[0](sa2), self.q_target[1](sa2))[:, 0] - cfg.entropy * logp2
            target = rew + cfg.gamma * (1 - term) * q_next
        sa = torch.cat([obs, act], -1)
        loss_q = sum(0.5 * ((qf(sa)[:, 0] - target) ** 2).mean() for qf in self.q)
        self.q_opt.zero_grad()
        loss_q.backward()
        self.q_opt.step()
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                pt.lerp_(p, cfg.tau)
        self.progress.updates += 1
        return {"losses/actor": float(loss_pi.detach()), "losses/q": float(loss_q.detach()),
                "losses/kl_old": float((logp_new - logp_old).mean().detach())}  # fmt: skip

    # ---------------------------------------------------------------- loop, evaluation, checkpoints
    def learn(self, *, checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, progress: bool = False,
              stop_after: int | None = None, log_every: int = 1000) -> list[dict[str, float]]:  # fmt: skip
        """Run until ``total_steps`` environment steps (or ``stop_after`` more); checkpoint every k steps."""
        cfg = self.cfg
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.torch_threads)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.progress.global_step, unit="step", disable=None)
        start, steps_now, stats = time.perf_counter(), 0, {}
        try:
            while self.progress.global_step < cfg.total_steps and (stop_after is None or steps_now < stop_after):
                a = self._action(self.obs)
                nxt, r, te, tr, info = self.env.step(a)
                if not self.reset_next[0]:  # NEXT_STEP autoreset: this step only reset the env
                    self._store(self.obs[0], a[0], float(r[0]), nxt[0], bool(te[0]))
                self.reset_next = te | tr
                if "episode" in info and info["_episode"][0]:
                    self.returns.append(float(info["episode"]["r"][0]))
                self.obs = nxt
                self.progress.global_step += 1
                steps_now += 1
                if self.progress.global_step % cfg.old_refresh == 0:
                    self.old.load_state_dict(self.actor.state_dict())
                if self.progress.global_step > cfg.learning_starts and self.size >= cfg.batch_size:
                    stats = self.update()
                if self.progress.global_step % log_every == 0:
                    stats = {**stats, "global_step": float(self.progress.global_step),
                             "charts/episodic_return": float(np.mean(self.returns[-10:])) if self.returns else float("nan"),
                             "charts/SPS": log_every / (time.perf_counter() - start)}  # fmt: skip
                    start = time.perf_counter()
                    self.progress.history.append(stats)
                    if bar is not None:
                        bar.update(log_every)
                if checkpoint_dir and checkpoint_every and self.progress.global_step % checkpoint_every == 0:
                    self.save(Path(checkpoint_dir) / "checkpoint.pt")
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        return self.progress.history

    def evaluate(self, episodes: int | None = None, seed: int = 10_000) -> np.ndarray:
        """Returns of evaluation episodes with the deterministic (mean) action."""
        env = gym.make(self.cfg.env_id)
        out = []
        for ep in range(episodes or self.cfg.eval_episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, finished = 0.0, False
            while not finished:
                with torch.no_grad():
                    o = torch.as_tensor(obs[None], dtype=torch.float32)
                    a = self.actor.squash(self.actor.params(o)[0]).numpy()[0]
                obs, r, te, tr, _ = env.step(a)
                total, finished = total + float(r), te or tr
            out.append(total)
        env.close()
        return np.asarray(out)

    def save(self, path: str | Path) -> Path:
        """Networks, optimisers, replay buffer, env (+physics), RNGs and counters, written atomically."""
        n = min(self.size, len(self.buffer["rew"]))
        extra = {"buffer": {k: v[:n].copy() for k, v in self.buffer.items()}, "size": self.size,
                 "generator": self.generator.get_state()}  # fmt: skip
        return save_agent(self, path, extra)

    @classmethod
    def load(cls, path: str | Path, *, blob: dict[str, Any] | None = None, **overrides: Any) -> MDPOOff:
        """Resume from :meth:`save` (``overrides`` may extend e.g. ``total_steps``; ``blob``: the file already
        read by :func:`~nashmp.rl.checkpoint.read_checkpoint`, so that a large replay buffer is read once)."""
        blob = read_checkpoint(path) if blob is None else blob
        agent = cls(checkpoint_config(MDPOOffConfig, blob, overrides))
        extra = load_agent_state(agent, blob)
        try:
            for k, v in extra["buffer"].items():
                agent.buffer[k][: len(v)] = v
            agent.size = int(extra["size"])
            agent.generator.set_state(extra["generator"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"the checkpoint's replay buffer does not fit this agent ({exc}).") from None
        return agent
