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

Metrics: :data:`METRICS` (CleanRL's SAC names where they mean the same thing; the table in docs/rl.md).
Checkpoints carry the replay buffer whole, incrementally or not at all (``save_buffer``; nashmp.rl.replay).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
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
from .envs import check_env_id, check_run_fields, make_vec_env
from .evaluation import EVAL_SEED, evaluate_policy, record_eval
from .policy_file import Policy
from .replay import BUFFER_MODES, restore_buffer_state, save_buffer_state
from .run_log import check_report_to, current_names, episode_charts, open_run_log

__all__ = ["MDPOOffConfig", "MDPOOff", "METRICS", "TanhGaussianActor", "actor_loss"]

#: every column of ``metrics.csv`` (in order) and every scalar sent to a tracker: name → meaning. ``losses/``
#: and ``train/`` values are those of the gradient step at the row's step (blank during the warm-up).
METRICS: dict[str, str] = {
    "global_step": "environment steps so far (= gradient steps + warm-up steps; x-axis)",
    "charts/episodic_return": "mean raw return of the last 10 finished training episodes",
    "charts/episodic_length": "mean length of the last 10 finished training episodes",
    "charts/learning_rate": "Adam step size of the actor and the critics",
    "charts/SPS": "environment steps per second since the previous row",
    "losses/actor_loss": "the actor's MDPO loss c(log π_θ − log π_old) + λ log π_old − min Q (+ regulariser)",
    "losses/qf_loss": "mean of the two critics' squared Bellman errors, halved (CleanRL's qf_loss / 2 convention)",
    "losses/qf1_values": "mean Q1(s, a) over the batch",
    "losses/qf2_values": "mean Q2(s, a) over the batch",
    "losses/approx_kl": "KL(π_θ‖π_old) estimated at the actor step's reparameterised samples; at a step that "
    "refreshes π_old, the last value before the refresh (how far the period moved the actor)",
    "losses/entropy": "−mean log π_θ(ã|s) at those samples (squashed-Gaussian entropy estimate)",
    "losses/grad_norm": "the actor's gradient norm (no clipping in off-policy MDPO)",
    "train/log_std": "mean pre-squash log σ(s) of the actor over the batch",
    "eval/mean_return": "mean return of the periodic deterministic evaluation (rows with an evaluation)",
    "eval/std_return": "std of the evaluation returns",
}
#: names logged before the namespaced set (old → new), renamed when an older checkpoint resumes
LEGACY_NAMES = {"losses/actor": "losses/actor_loss", "losses/q": "losses/qf_loss", "losses/kl_old": "losses/approx_kl"}

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
    """Episodes of each deterministic evaluation, periodic and final (``--eval-episodes``; ≥ 1)."""
    eval_every: int = 0
    """Evaluate every this many environment steps while training, logging eval/* and keeping best_policy.pt (0: off)."""
    save_buffer: str = "full"
    """Replay buffer in checkpoints (``--save-buffer``): full (inside checkpoint.pt, exact resume), incremental (new
    transitions only, as chunk files; exact resume) or none (resume refills it from fresh experience; not exact)."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments of ``gym.make`` (``--env-kwargs KEY=VALUE``, values JSON literals; None: none)."""
    wrappers: list[str] | None = None
    """gymnasium wrappers around the environment, innermost first: ``Name`` or ``Name:key=value,...`` from the
    allow-list nashmp.rl.envs.WRAPPERS (``--wrapper``)."""
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
        if self.save_buffer not in BUFFER_MODES:
            raise InvalidParameterError(
                f"save_buffer must be one of {', '.join(BUFFER_MODES)}, got {self.save_buffer!r}."
            )
        check_run_fields(self)

    @classmethod
    def from_preset(cls, preset: str | Sequence[str], **fields: Any) -> MDPOOffConfig:
        """The config of the named preset(s) from nashmp/rl/presets.json (later ones win), then ``fields``."""
        from .presets import config_from_preset

        return config_from_preset("mdpo-off", preset, **fields)


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

    def act(self, obs: Tensor, deterministic: bool, generator: torch.Generator | None = None) -> Tensor:
        """Inference: the squashed mean action, or a squashed sample drawn from ``generator``."""
        return self.squash(self.params(obs)[0]) if deterministic else self.sample(obs, generator)[0]


def actor_loss(logp_new: Tensor, logp_old: Tensor, q: Tensor, kl_coeff: float, entropy: float) -> Tensor:
    r"""Mean of c(log π_θ − log π_old) + λ log π_old − Q at reparameterised actions (see the module docstring)."""
    return (kl_coeff * (logp_new - logp_old) + entropy * logp_old - q).mean()


@dataclass
class _Progress:
    global_step: int = 0
    updates: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_eval: float = -math.inf


class MDPOOff:
    """Off-policy MDPO agent with ``learn``/``evaluate``/``save``/``load`` (exact resume)."""

    ALGO = "mdpo-off"
    STATEFUL = ("actor", "old", "q", "q_target", "actor_opt", "q_opt")

    def __init__(self, config: MDPOOffConfig) -> None:
        self.cfg = config
        probe = check_env_id(config.env_id, config.env_kwargs, config.wrappers or ())
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
        self.env = make_vec_env(config.env_id, 1, normalize=False, gamma=config.gamma, env_kwargs=config.env_kwargs,
                                wrappers=config.wrappers or ())  # fmt: skip
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
        self.min_fill = config.batch_size  # transitions needed before gradient steps (more after a buffer-less resume)
        self.buffer_chunks: list[dict[str, Any]] = []  # save_buffer="incremental": chunks on disk, and where
        self.chunk_folder: Path | None = None
        self.progress = _Progress()
        self.obs, _ = self.env.reset(seed=config.seed)
        self.reset_next = np.zeros(1, bool)
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self._predict_generator = torch.Generator().manual_seed(config.seed)  # predict() never draws training noise

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
    def update(self, diagnostics: bool = False) -> dict[str, float]:
        """One gradient step of the actor, then of the critics; its ``losses/`` and ``train/`` stats.

        ``diagnostics=True`` adds the actor's gradient norm (an extra pass over its gradients; nan otherwise):
        ``learn`` asks for it only on the steps it logs, so the other steps cost what they did before.
        """
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
            grad_norm = math.nan
            if diagnostics:
                grads = [p.grad for p in self.actor.parameters() if p.grad is not None]
                grad_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
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
        q1, q2 = (qf(sa)[:, 0] for qf in self.q)
        loss_q = sum(0.5 * ((q - target) ** 2).mean() for q in (q1, q2))
        self.q_opt.zero_grad()
        loss_q.backward()
        self.q_opt.step()
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                pt.lerp_(p, cfg.tau)
        self.progress.updates += 1
        return {"losses/actor_loss": float(loss_pi.detach()), "losses/qf_loss": float(loss_q.detach()),
                "losses/qf1_values": float(q1.detach().mean()), "losses/qf2_values": float(q2.detach().mean()),
                "losses/approx_kl": float((logp_new - logp_old).mean().detach()),
                "losses/entropy": float(-logp_new.detach().mean()), "losses/grad_norm": grad_norm,
                "train/log_std": float(log_std.detach().mean())}  # fmt: skip

    # ---------------------------------------------------------------- loop, evaluation, checkpoints
    def learn(self, *, out_dir: str | Path | None = None, checkpoint_every: int = 0, progress: bool = False,
              stop_after: int | None = None, log_every: int = 1000, report_to: Any = "none") -> list[dict[str, float]]:  # fmt: skip
        """Run until ``total_steps`` environment steps (or ``stop_after`` more); a row every ``log_every`` steps.

        ``out_dir``: the run folder — ``metrics.csv`` (flushed row by row), ``checkpoint.pt`` every
        ``checkpoint_every`` steps, ``best_policy.pt`` (periodic evaluation, every ``eval_every`` steps, which
        also writes a row) and, with ``report_to="tensorboard"``, ``tensorboard/``.
        """
        cfg = self.cfg
        check_report_to(report_to)
        check_positive_int("log_every", log_every)
        if self.progress.global_step == 0 and cfg.total_steps <= cfg.learning_starts:
            warnings.warn(
                f"total_steps ({cfg.total_steps}) ≤ learning_starts ({cfg.learning_starts}): every step is a random "
                "warm-up step and nothing will train; raise the steps or lower learning_starts.",
                UserWarning,
                stacklevel=2,
            )
        log = open_run_log(out_dir, list(METRICS), self.progress.history, report_to)
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.torch_threads)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.progress.global_step, unit="step", disable=None)
        start, last_row, steps_now = time.perf_counter(), self.progress.global_step, 0
        stats: dict[str, float] = {}
        try:
            while self.progress.global_step < cfg.total_steps and (stop_after is None or steps_now < stop_after):
                a = self._action(self.obs)
                nxt, r, te, tr, info = self.env.step(a)
                if not self.reset_next[0]:  # NEXT_STEP autoreset: this step only reset the env
                    self._store(self.obs[0], a[0], float(r[0]), nxt[0], bool(te[0]))
                self.reset_next = te | tr
                if "episode" in info and info["_episode"][0]:
                    self.returns.append(float(info["episode"]["r"][0]))
                    self.lengths.append(int(info["episode"]["l"][0]))
                self.obs = nxt
                self.progress.global_step += 1
                steps_now += 1
                step = self.progress.global_step
                evaluate = bool(cfg.eval_every) and step % cfg.eval_every == 0
                row_now = step % log_every == 0 or evaluate
                period_kl = None
                if step % cfg.old_refresh == 0:
                    # the last step's KL to π_old is how far this period moved the actor; the step right after
                    # the refresh is centred at the new π_old and would log 0 (every row, at the default cadence)
                    period_kl = stats.get("losses/approx_kl")
                    self.old.load_state_dict(self.actor.state_dict())
                if step > cfg.learning_starts and self.size >= self.min_fill:
                    stats = self.update(diagnostics=row_now)
                    if period_kl is not None:
                        stats["losses/approx_kl"] = period_kl
                if row_now:
                    row = {"global_step": step, **episode_charts(self.returns, self.lengths),
                           "charts/learning_rate": float(self.actor_opt.param_groups[0]["lr"]),
                           "charts/SPS": (step - last_row) / (time.perf_counter() - start), **stats}  # fmt: skip
                    if evaluate:
                        record_eval(self, row, out_dir)
                    start, last_row = time.perf_counter(), step
                    self.progress.history.append(row)
                    if log is not None:
                        log.log(row)
                    if bar is not None:
                        bar.update(step - bar.n)
                if out_dir and checkpoint_every and step % checkpoint_every == 0:
                    self.save(Path(out_dir) / "checkpoint.pt")
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        return self.progress.history

    def policy(self, generator: torch.Generator | None = None) -> Policy:
        """The actor and action space, for inference (no observation normalisation off-policy)."""
        cfg = self.cfg
        env = {"env_id": cfg.env_id, "env_kwargs": dict(cfg.env_kwargs or {}), "wrappers": list(cfg.wrappers or [])}
        return Policy(self.ALGO, self.actor, self.action_space, None, env, generator=generator)

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for observation(s) — see :meth:`nashmp.rl.policy_file.Policy.predict`."""
        return self.policy(self._predict_generator).predict(obs, deterministic)

    def save_policy(self, path: str | Path) -> Path:
        """The light policy file (actor and action space): :func:`~nashmp.rl.load_policy`."""
        return self.policy().save(path)

    def evaluate(self, episodes: int | None = None, seed: int = EVAL_SEED) -> np.ndarray:
        """Returns of evaluation episodes with the deterministic (mean) action."""
        return evaluate_policy(self.policy(), episodes or self.cfg.eval_episodes, seed=seed).returns

    def save(self, path: str | Path) -> Path:
        """Networks, optimisers, replay buffer (per ``save_buffer``), env (+physics), RNGs and counters, atomically."""
        buffer, stale = save_buffer_state(self, Path(path))
        out = save_agent(self, path, {**buffer, "generator": self.generator.get_state()})
        for chunk in stale:  # only once the checkpoint that no longer lists them is in place
            chunk.unlink(missing_ok=True)
        return out

    @classmethod
    def load(cls, path: str | Path, *, blob: dict[str, Any] | None = None, **overrides: Any) -> MDPOOff:
        """Resume from :meth:`save` (``overrides`` may extend e.g. ``total_steps``; ``blob``: the file already
        read by :func:`~nashmp.rl.checkpoint.read_checkpoint`, so that a large replay buffer is read once)."""
        blob = read_checkpoint(path) if blob is None else blob
        agent = cls(checkpoint_config(MDPOOffConfig, blob, overrides))
        extra = load_agent_state(agent, blob)
        agent.progress.history = current_names(agent.progress.history, LEGACY_NAMES)
        restore_buffer_state(agent, extra, Path(path))
        try:
            agent.generator.set_state(extra["generator"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint's generator state does not fit this agent ({exc}).") from None
        return agent
