r"""On-policy Mirror Descent Policy Optimization (Tomar et al., 2020), one readable file (CleanRL style).

Each iteration k approximately solves the trust-region (mirror-descent) sub-problem

.. math::
    \theta_{k+1}\approx\arg\min_\theta\ -\mathbb E\big[r_\theta(s,a)\,\hat A_k(s,a)\big]
    +\frac1{t_k}\,\mathbb E_s\big[\mathrm{KL}(\pi_\theta(\cdot|s)\,\|\,\pi_{\theta_k}(\cdot|s))\big],
    \qquad r_\theta=\frac{\pi_\theta(a|s)}{\pi_{\theta_k}(a|s)},

by ``m`` Adam steps on the **full batch** — the KL-prox step of the rest of nashmp with the advantage in
place of the preference payoff and π_k as the centre (no reference term). Details (the defaults of the
official release unless marked *ours*):

* KL: analytic, reverse direction KL(π_new‖π_old), diagonal Gaussian (continuous) or categorical (discrete);
* step schedule: t_k = 1 − (k−1)/K, so the KL weight 1/t_k rises from 1. The release sets K from a 10M-step
  budget; *ours*: K is ``schedule_steps // n_steps`` with ``schedule_steps`` defaulting to the run's
  ``total_steps`` (``--preset release`` sets 10_000_000, the paper's slower schedule), and the weight is
  capped (below);
* no ratio clipping, no entropy bonus; policy gradient-norm clip 0.5; Adam eps 1e-5; the release's actor
  lr 3e-4 (*ours*: 1e-3, below);
* critic: separate 64-64 tanh MLP, lr 3e-4, 5 epochs of minibatches of 128, PPO-style value clip 0.2;
* GAE(γ = 0.99, λ = 0.95), advantages standardised over the batch; *ours*: time-limit truncations bootstrap
  from V(s_T) instead of cutting (the release cut at any ``done``);
* observation and reward normalisation (gymnasium wrappers), actions clipped to the Box before ``step``;
* 64-64 tanh actor, orthogonal init (gain √2, head 0.01), state-independent log-std initialised at 0
  (nashmp.rl.networks).

**The step: ours, not the release's.** With the release's step (m = 10 Adam steps at lr 3e-4, 1/t_k
uncapped) an iteration moves KL(π_{k+1}‖π_k) ≈ 1e-3, a tenth of PPO's on the same data, and less as 1/t_k
grows (issue 12; benchmarks/mdpo_kl_sweep.py). The defaults therefore are: actor lr 1e-3, adapted on the
measured KL per iteration (``kl_target`` 0.01: rl_games' rule), 1/t_k capped at 2 (``kl_weight_max``), and
normalised observations and rewards clipped at ±10 (``clip_obs``, ``clip_reward``: SB3 VecNormalize's
values). Chosen by a pre-registered rule on 1M-step returns, 5 seeds on HalfCheetah-, Hopper- and
Walker2d-v5 (docs/rl-benchmarks.md); ``--preset release`` restores the release's step. ``anneal_lr``
(linear step-size annealing) stays off. Formulas: :mod:`nashmp.rl.schedules`.

Metrics: :data:`METRICS` (CleanRL's names where they mean the same thing; the table in docs/rl.md).
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
from torch.distributions import Distribution, Normal, kl_divergence

from ..errors import InvalidParameterError
from ..games.game import check_positive, check_positive_int
from .checkpoint import checkpoint_config, load_agent_state, read_checkpoint, save_agent
from .envs import check_env_id, check_run_fields, make_vec_env, observation_normalizer
from .evaluation import EVAL_SEED, evaluate_policy, record_eval
from .networks import Actor, critic
from .policy_file import Policy
from .run_log import check_report_to, current_names, episode_charts, open_run_log
from .schedules import adapt_lr, anneal_factor, check_schedule_fields, kl_weight

__all__ = ["MDPOConfig", "MDPO", "METRICS", "Actor", "mdpo_loss", "policy_kl"]

#: every column of ``metrics.csv`` (in order) and every scalar sent to a tracker: name → meaning
METRICS: dict[str, str] = {
    "global_step": "environment steps so far, over all envs (x-axis)",
    "iteration": "MDPO iterations so far, k (x-axis)",
    "charts/episodic_return": "mean raw return of the last 10 finished training episodes",
    "charts/episodic_length": "mean length of the last 10 finished training episodes",
    "charts/learning_rate": "the actor's Adam step size in this iteration",
    "charts/SPS": "environment steps per second of this iteration (rollout + update)",
    "losses/policy_loss": "MDPO surrogate −r·Â + (1/t_k)·KL(π_θ‖π_k) at the last of the m Adam steps",
    "losses/value_loss": "critic loss (clipped squared error) of the last minibatch",
    "losses/approx_kl": "KL(π_{k+1}‖π_k), mean over the batch, exact (analytic); CleanRL estimates the other "
    "direction from samples (equal to second order)",
    "losses/entropy": "mean entropy of π_{k+1} over the batch",
    "losses/grad_norm": "actor gradient norm before clipping, mean over the m Adam steps",
    "losses/explained_variance": "1 − Var(returns − V)/Var(returns) of the rollout's values",
    "train/kl_weight": "w_k = min(1/t_k, kl_weight_max), the weight of the KL term",
    "train/log_std": "mean log-std of the Gaussian policy after the update (blank for discrete actions)",
    "eval/mean_return": "mean return of the periodic deterministic evaluation (rows with an evaluation)",
    "eval/std_return": "std of the evaluation returns",
}
#: names logged before the namespaced set (old → new), renamed when an older checkpoint resumes
LEGACY_NAMES = {"losses/policy": "losses/policy_loss", "losses/value": "losses/value_loss", "losses/kl": "losses/approx_kl",
                "losses/kl_weight": "train/kl_weight"}  # fmt: skip


@dataclass
class MDPOConfig:
    """On-policy MDPO hyper-parameters (defaults: the official release, see the module docstring)."""

    env_id: str = "Pendulum-v1"
    """gymnasium environment id (a registered id; ``nashmp rl train --env``)."""
    total_steps: int = 1_000_000
    """Environment steps of the whole run (``--steps``); the run stops at the last full iteration."""
    seed: int = 0
    """Seed of the environments, the networks and the action noise (``--seed``)."""
    num_envs: int = 1
    """Parallel environments (a gymnasium vector env); n_steps must be a multiple of it."""
    n_steps: int = 2048
    """Environment steps per iteration (over all envs)."""
    sgd_steps: int = 10
    """m: full-batch Adam steps on the MDPO loss per iteration."""
    schedule_steps: int | None = None
    """Budget that defines K in t_k = 1 − (k−1)/K (None: total_steps; the paper's release used 10M)."""
    lr: float = 1e-3
    """Adam step size of the actor (MDPO loss); with kl_target, its starting value (the release: 3e-4)."""
    vf_lr: float = 3e-4
    """Adam step size of the critic."""
    gamma: float = 0.99
    """γ, the discount factor (0 < γ ≤ 1)."""
    gae_lambda: float = 0.95
    """λ of generalised advantage estimation (0 ≤ λ ≤ 1)."""
    vf_epochs: int = 5
    """Epochs of critic minibatch updates per iteration."""
    vf_minibatch: int = 128
    """Critic minibatch size."""
    vf_clip: float = 0.2
    """PPO-style value clip: the critic loss is the max of the plain and the clipped error, the new value kept
    within ±vf_clip of the iteration's old value."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip of the actor and the critic."""
    hidden: int = 64
    """Width of the two tanh hidden layers of the actor and the critic."""
    normalize: bool = True
    """Normalise observations and rewards (gymnasium wrappers; their statistics are checkpointed)."""
    clip_obs: float | None = 10.0
    """Clip normalised observations to ±clip_obs, in training and in the policy file (SB3 VecNormalize's 10;
    None: off, as the release; part of the normalisation, so no effect with normalize=False)."""
    clip_reward: float | None = 10.0
    """Clip normalised rewards to ±clip_reward (SB3 VecNormalize's 10; None: off, as the release; no effect
    with normalize=False: clip raw rewards with --wrapper ClipReward)."""
    anneal_lr: bool = False
    """Anneal both step sizes linearly, by 1 − (k−1)/N in iteration k of N (CleanRL/SB3 PPO; nashmp.rl.schedules)."""
    kl_target: float | None = 0.01
    """Adaptive actor lr on the measured KL(π_{k+1}‖π_k) per iteration: ÷1.5 above 2·kl_target, ×1.5 below
    kl_target/2, within [lr_min, lr_max] (rl_games' rule; None: a constant lr, as the release;
    nashmp.rl.schedules)."""
    lr_min: float = 1e-6
    """Lower bound of the adaptive actor lr (kl_target only)."""
    lr_max: float = 1e-2
    """Upper bound of the adaptive actor lr (kl_target only)."""
    kl_weight_max: float | None = 2.0
    """Cap on the KL weight 1/t_k, i.e. t_k ≥ 1/kl_weight_max (None: uncapped, rising to K, as the release)."""
    eval_episodes: int = 10
    """Episodes of each deterministic evaluation, periodic and final (``--eval-episodes``; ≥ 1)."""
    eval_every: int = 0
    """Evaluate every this many iterations while training, logging eval/* and keeping best_policy.pt (0: off)."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments of ``gym.make`` (``--env-kwargs KEY=VALUE``, values JSON literals; None: none)."""
    wrappers: list[str] | None = None
    """gymnasium wrappers around each environment, innermost first: ``Name`` or ``Name:key=value,...`` from the
    allow-list nashmp.rl.envs.WRAPPERS (``--wrapper``)."""
    torch_threads: int = 1
    """torch intra-op threads (1: robust on a loaded machine)."""

    def __post_init__(self) -> None:
        for name in (
            "total_steps",
            "num_envs",
            "n_steps",
            "sgd_steps",
            "vf_epochs",
            "vf_minibatch",
            "hidden",
            "torch_threads",
        ):
            check_positive_int(name, getattr(self, name))
        if self.n_steps % self.num_envs:
            raise InvalidParameterError(f"n_steps ({self.n_steps}) must be a multiple of num_envs ({self.num_envs}).")
        for name in ("lr", "vf_lr", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise InvalidParameterError("need 0 < gamma ≤ 1 and 0 ≤ gae_lambda ≤ 1.")
        check_schedule_fields(self)
        check_run_fields(self)

    @classmethod
    def from_preset(cls, preset: str | Sequence[str], **fields: Any) -> MDPOConfig:
        """The config of the named preset(s) from nashmp/rl/presets.json (later ones win), then ``fields``."""
        from .presets import config_from_preset

        return config_from_preset("mdpo", preset, **fields)


# The step options as they were before they existed (the release's step). A checkpoint written before them
# lacks these fields and must resume as it was trained, not with today's defaults.
OPTIONS_OFF: dict[str, Any] = {"clip_obs": None, "clip_reward": None, "kl_target": None, "kl_weight_max": None}


# --------------------------------------------------------------------------- pure functions (tested by hand)
def policy_kl(new: Distribution, old: Distribution) -> Tensor:
    """Analytic KL(π_new(·|s) ‖ π_old(·|s)) per state (summed over action dimensions for a Gaussian)."""
    kl = kl_divergence(new, old)
    return kl.sum(-1) if isinstance(new, Normal) else kl


def mdpo_loss(log_ratio: Tensor, advantages: Tensor, kl: Tensor, kl_weight: float) -> Tensor:
    r"""MDPO surrogate :math:`-\mathrm{mean}(e^{\log r}\hat A) + \frac1{t_k}\mathrm{mean}(\mathrm{KL})`."""
    return -(log_ratio.exp() * advantages).mean() + kl_weight * kl.mean()


def _check_spaces(cfg: MDPOConfig) -> gym.Env:
    env, env_id = check_env_id(cfg.env_id, cfg.env_kwargs, cfg.wrappers or ()), cfg.env_id
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape or ()) != 1:
        raise InvalidParameterError(f"{env_id}: MDPO needs a flat Box observation space, got {env.observation_space}.")
    if not isinstance(env.action_space, gym.spaces.Box | gym.spaces.Discrete):
        raise InvalidParameterError(f"{env_id}: MDPO supports Box or Discrete actions, got {env.action_space}.")
    return env


# --------------------------------------------------------------------------- the algorithm
@dataclass
class _Progress:
    iteration: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_eval: float = -math.inf
    actor_lr: float | None = None  # η_k of the kl_target rule (None: not adapted yet, i.e. cfg.lr)


class MDPO:
    """On-policy MDPO agent: ``learn()`` runs to ``total_steps``; ``save``/``load`` resume exactly."""

    ALGO = "mdpo"
    STATEFUL = ("actor", "critic", "opt", "vf_opt")

    def __init__(self, config: MDPOConfig) -> None:
        self.cfg = config
        probe = _check_spaces(config)
        self.action_space = probe.action_space
        probe.close()
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.env = make_vec_env(config.env_id, config.num_envs, normalize=config.normalize, gamma=config.gamma,
                                env_kwargs=config.env_kwargs, wrappers=config.wrappers or (),
                                clip_obs=config.clip_obs, clip_reward=config.clip_reward)  # fmt: skip
        obs_dim = int(np.prod(self.env.single_observation_space.shape))  # type: ignore[arg-type]
        self.actor = Actor(obs_dim, self.action_space, config.hidden)
        self.critic = critic(obs_dim, config.hidden)
        self.opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr, eps=1e-5)  # persists across iterations
        self.vf_opt = torch.optim.Adam(self.critic.parameters(), lr=config.vf_lr)
        self.progress = _Progress()
        self.obs, _ = self.env.reset(seed=config.seed)
        self.reset_next = np.zeros(config.num_envs, bool)  # sub-envs whose next step is an autoreset
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self._predict_generator = torch.Generator().manual_seed(config.seed)  # predict() never draws training noise

    # ---------------------------------------------------------------- helpers
    @property
    def num_iterations(self) -> int:
        return self.cfg.total_steps // self.cfg.n_steps

    def kl_weight(self, k: int) -> float:
        """w_k = min(1/t_k, kl_weight_max), t_k = 1 − (k−1)/K (k counts from 1; :func:`schedules.kl_weight`)."""
        K = max(1, (self.cfg.schedule_steps or self.cfg.total_steps) // self.cfg.n_steps)
        return kl_weight(k, K, self.cfg.kl_weight_max)

    def learning_rates(self, k: int) -> tuple[float, float]:
        """The actor's and the critic's Adam step sizes in iteration k: η_k·f_k and vf_lr·f_k (nashmp.rl.schedules)."""
        cfg = self.cfg
        f = anneal_factor(k, self.num_iterations) if cfg.anneal_lr else 1.0
        return self._eta * f, cfg.vf_lr * f

    @property
    def _eta(self) -> float:  # η_k: the adapted step size with kl_target, otherwise (and before any) cfg.lr
        return self.cfg.lr if self.cfg.kl_target is None or self.progress.actor_lr is None else self.progress.actor_lr

    def _act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)
            d = self.actor.dist(o)
            a = d.sample()
            return a.numpy(), self.critic(o)[:, 0].numpy()

    def _env_action(self, a: np.ndarray) -> np.ndarray:
        if self.actor.discrete:
            return a
        space = self.action_space
        return np.clip(a, space.low, space.high)  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- one iteration
    def collect(self) -> dict[str, np.ndarray]:
        """Roll out ``n_steps`` transitions; GAE advantages, bootstrapping through time-limit truncations.

        With gymnasium's NEXT_STEP autoreset the step after an episode's end only resets the sub-env:
        that row is masked out, and the observation returned at the end step is the true final state,
        whose value bootstraps a truncation (a termination bootstraps 0).
        """
        cfg, T, E = self.cfg, self.cfg.n_steps // self.cfg.num_envs, self.cfg.num_envs
        obs_buf = np.zeros((T, E, *self.obs.shape[1:]), np.float32)
        act_buf: list[np.ndarray] = []
        rew, val = np.zeros((T, E), np.float32), np.zeros((T, E), np.float32)
        term, done, valid = (np.zeros((T, E), bool) for _ in range(3))
        for t in range(T):
            obs_buf[t] = self.obs
            valid[t] = ~self.reset_next
            a, v = self._act(self.obs)
            act_buf.append(a)
            val[t] = v
            self.obs, r, te, tr, info = self.env.step(self._env_action(a))
            rew[t], term[t], done[t] = r, te, te | tr
            self.reset_next = te | tr
            if "episode" in info:
                for i in np.nonzero(info["_episode"])[0]:
                    self.returns.append(float(info["episode"]["r"][i]))
                    self.lengths.append(int(info["episode"]["l"][i]))
        with torch.no_grad():
            last_v = self.critic(torch.as_tensor(self.obs, dtype=torch.float32))[:, 0].numpy()
        adv = np.zeros((T, E), np.float32)
        gae = np.zeros(E, np.float32)
        for t in reversed(range(T)):
            next_v = last_v if t == T - 1 else val[t + 1]  # at an episode end: V(final observation)
            delta = rew[t] + cfg.gamma * np.where(term[t], 0.0, next_v) - val[t]
            gae = delta + cfg.gamma * cfg.gae_lambda * np.where(done[t], 0.0, gae)
            adv[t] = gae
        self.progress.global_step += T * E
        keep = valid.reshape(-1)
        return {
            "obs": obs_buf.reshape(T * E, -1)[keep],
            "actions": np.stack(act_buf).reshape(T * E, *act_buf[0].shape[1:])[keep],
            "advantages": adv.reshape(-1)[keep],
            "returns": (adv + val).reshape(-1)[keep],
            "values": val.reshape(-1)[keep],
        }

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """m full-batch Adam steps on the MDPO loss, then the critic; returns the ``losses/`` and ``train/`` stats."""
        cfg = self.cfg
        k = self.progress.iteration + 1
        w = self.kl_weight(k)
        lrs = self.learning_rates(k)
        for opt, lr in zip((self.opt, self.vf_opt), lrs, strict=True):
            for group in opt.param_groups:
                group["lr"] = lr
        obs = torch.as_tensor(batch["obs"])
        actions = torch.as_tensor(batch["actions"])
        adv = torch.as_tensor(batch["advantages"])
        adv = (adv - adv.mean()) / adv.std()  # standardised over the batch (no ε, as released)
        old = copy.deepcopy(self.actor)
        with torch.no_grad():
            old_dist = old.dist(obs)
            old_logp = old.log_prob(old_dist, actions)
        grad_norms = []
        for _ in range(cfg.sgd_steps):
            d = self.actor.dist(obs)
            loss = mdpo_loss(self.actor.log_prob(d, actions) - old_logp, adv, policy_kl(d, old_dist), w)
            self.opt.zero_grad()
            loss.backward()
            grad_norms.append(float(nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)))
            self.opt.step()
        with torch.no_grad():
            new_dist = self.actor.dist(obs)
            kl = float(policy_kl(new_dist, old_dist).mean())
            per_dim = new_dist.entropy()
            entropy = float((per_dim if self.actor.discrete else per_dim.sum(-1)).mean())
        returns, values = torch.as_tensor(batch["returns"]), torch.as_tensor(batch["values"])
        n = len(returns)
        vf_loss = torch.zeros(())
        for _ in range(cfg.vf_epochs):
            perm = torch.as_tensor(self.rng.permutation(n))
            for s in range(0, n - cfg.vf_minibatch + 1, cfg.vf_minibatch):  # partial minibatch dropped
                idx = perm[s : s + cfg.vf_minibatch]
                v = self.critic(obs[idx])[:, 0]
                v_clip = values[idx] + (v - values[idx]).clamp(-cfg.vf_clip, cfg.vf_clip)
                vf_loss = torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2).mean()
                self.vf_opt.zero_grad()
                vf_loss.backward()
                self.vf_opt.step()
        self.progress.iteration = k
        if cfg.kl_target is not None:  # η_{k+1} from this iteration's KL, used from the next iteration on
            self.progress.actor_lr = adapt_lr(self._eta, kl, cfg.kl_target, cfg.lr_min, cfg.lr_max)
        var_returns = float(returns.var())
        explained = 1 - float((returns - values).var()) / var_returns if var_returns > 0 else math.nan
        log_std = math.nan if self.actor.log_std is None else float(self.actor.log_std.detach().mean())
        return {
            "losses/policy_loss": float(loss.detach()),
            "losses/value_loss": float(vf_loss.detach()),
            "losses/approx_kl": kl,
            "losses/entropy": entropy,
            "losses/grad_norm": float(np.mean(grad_norms)),
            "losses/explained_variance": explained,
            "train/kl_weight": w,
            "train/log_std": log_std,
        }

    # ---------------------------------------------------------------- loop, evaluation, checkpoints
    def learn(
        self,
        *,
        out_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        progress: bool = False,
        stop_after: int | None = None,
        report_to: Any = "none",
    ) -> list[dict[str, float]]:
        """Train until ``total_steps`` (or ``stop_after`` more iterations); returns the metric history.

        ``out_dir``: the run folder — ``metrics.csv`` (a row per iteration, flushed as it lands),
        ``checkpoint.pt`` every ``checkpoint_every`` iterations, ``best_policy.pt`` (periodic evaluation) and,
        with ``report_to="tensorboard"``, ``tensorboard/``.
        """
        cfg = self.cfg
        check_report_to(report_to)
        if self.progress.iteration == 0 and self.num_iterations == 0:
            warnings.warn(
                f"total_steps ({cfg.total_steps}) is shorter than one iteration (n_steps = {cfg.n_steps}): nothing "
                "will train; raise the steps or lower n_steps (--param n_steps=...).",
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
        done_now = 0
        try:
            while self.progress.iteration < self.num_iterations and (stop_after is None or done_now < stop_after):
                start = time.perf_counter()
                stats = self.update(self.collect())
                done_now += 1
                row = {"global_step": self.progress.global_step, "iteration": self.progress.iteration,
                       **episode_charts(self.returns, self.lengths),
                       "charts/learning_rate": float(self.opt.param_groups[0]["lr"]),
                       "charts/SPS": cfg.n_steps / (time.perf_counter() - start), **stats}  # fmt: skip
                if cfg.eval_every and self.progress.iteration % cfg.eval_every == 0:
                    record_eval(self, row, out_dir)  # before the checkpoint, which then holds the best return
                self.progress.history.append(row)
                if log is not None:
                    log.log(row)
                if bar is not None:
                    bar.update(cfg.n_steps)
                    bar.set_postfix(ret=f"{row['charts/episodic_return']:.1f}")
                if out_dir and checkpoint_every and self.progress.iteration % checkpoint_every == 0:
                    self.save(Path(out_dir) / "checkpoint.pt")
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        return self.progress.history

    def policy(self, generator: torch.Generator | None = None) -> Policy:
        """The actor with the current observation statistics (frozen copy) and action space, for inference."""
        wrapper = observation_normalizer(self.env)
        norm = None
        if wrapper is not None:
            rms = wrapper.obs_rms
            norm = {"mean": np.array(rms.mean, np.float64), "var": np.array(rms.var, np.float64),
                    "epsilon": float(wrapper.epsilon), "clip": self.cfg.clip_obs}  # fmt: skip
        cfg = self.cfg
        env = {"env_id": cfg.env_id, "env_kwargs": dict(cfg.env_kwargs or {}), "wrappers": list(cfg.wrappers or [])}
        return Policy(self.ALGO, self.actor, self.action_space, norm, env, generator=generator)  # type: ignore[arg-type]

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw observation(s) — see :meth:`nashmp.rl.policy_file.Policy.predict`."""
        return self.policy(self._predict_generator).predict(obs, deterministic)

    def save_policy(self, path: str | Path) -> Path:
        """The light policy file (actor, observation statistics, action space): :func:`~nashmp.rl.load_policy`."""
        return self.policy().save(path)

    def evaluate(self, episodes: int | None = None, seed: int = EVAL_SEED, deterministic: bool = True) -> np.ndarray:
        """Returns of ``episodes`` evaluation episodes (mean action; frozen observation normalisation)."""
        return evaluate_policy(self.policy(), episodes or self.cfg.eval_episodes, seed=seed,
                               deterministic=deterministic).returns  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Everything needed to continue bit-for-bit: networks, optimisers, env (+physics), RNGs, counters."""
        return save_agent(self, path)

    @classmethod
    def load(cls, path: str | Path, *, blob: dict[str, Any] | None = None, **overrides: Any) -> MDPO:
        """Resume from :meth:`save` (``overrides`` may extend e.g. ``total_steps``; ``blob``: the file already
        read by :func:`~nashmp.rl.checkpoint.read_checkpoint`, so that a large replay buffer is read once)."""
        blob = read_checkpoint(path) if blob is None else blob
        agent = cls(checkpoint_config(MDPOConfig, blob, overrides, absent=OPTIONS_OFF))
        load_agent_state(agent, blob)
        agent.progress.history = current_names(agent.progress.history, LEGACY_NAMES)
        return agent
