r"""nashmp MDPO vs Stable-Baselines3 (PPO, TRPO, SAC) on the same environments, step budgets and seeds.

What is measured, per environment and seed (every run in its own process):

* **on-policy**: nashmp ``MDPO`` (our defaults: 1 env, n_steps 2048, m = 10 full-batch Adam steps, lr 1e-3
  adapted on the measured KL per iteration (target 0.01), eps 1e-5, KL weight min(1/t_k, 2) with
  t_k = 1 − (k−1)/K and K = budget/2048, critic lr 3e-4, 5 epochs × minibatch 128 with value clip 0.2,
  GAE(0.99, 0.95), grad-norm clip 0.5, 64-64 tanh, obs + reward normalisation with γ = 0.99, clipped at ±10)
  against SB3 ``PPO("MlpPolicy")`` with SB3 defaults (1 env, n_steps 2048, batch 64, 10 epochs, lr 3e-4,
  clip 0.2, GAE(0.99, 0.95), ent_coef 0, vf_coef 0.5, grad-norm clip 0.5, 64-64 tanh, ortho init) wrapped
  in ``VecNormalize(norm_obs=True, norm_reward=True, gamma=0.99)`` (clip_obs = clip_reward = 10, SB3's defaults).
  Both get the same budget, rounded down to a multiple of 2048 (MDPO runs whole iterations).
* **off-policy**: nashmp ``MDPOOff`` (our defaults: 10k uniform warm-up steps, batch 256, buffer 1M, Adam 3e-4,
  τ 0.005, γ 0.99, fixed λ = 0.2, c = 1, π_old refreshed every 1000 steps, 256-256 ReLU, twin Q + targets,
  stochastic collection) against SB3 ``SAC("MlpPolicy")`` with SB3 defaults (100 warm-up steps, batch 256,
  buffer 1M, lr 3e-4, τ 0.005, γ 0.99, ent_coef "auto" (init 1.0, target −dim A), train_freq 1,
  gradient_steps 1, 256-256 ReLU). No normalisation for either. ``--learning-starts N`` gives both the same
  random warm-up instead of their defaults (10_000 vs 100), as an ablation.

For every run: the **final evaluation return** — ``--eval-episodes`` (10) episodes of a fresh ``gym.make(env)``
reset with seeds 10_000 + i, deterministic (mean) action, observation normalisation frozen at the end of
training (MDPO: its running stats; PPO: ``VecNormalize`` with ``training=False, norm_reward=False``) — the
**training env-steps per second** (budget / wall time of ``learn()``, evaluation excluded; torch 1 thread,
``OPENBLAS_NUM_THREADS=1``, ``--workers`` runs in parallel, longest runs first, nashmp and SB3 runs of equal
cost interleaved) and the **learning curve**: the mean return of the last 10 finished
*training* episodes (raw rewards, Monitor / RecordEpisodeStatistics), every 2048 steps (on-policy) or every
``max(100, budget // 100)`` steps rounded to a multiple of 100 (off-policy). Tables report mean ± sample std
(ddof = 1) over seeds of the per-seed evaluation mean.

Algorithms: ``mdpo`` (MDPOConfig defaults), ``mdpo:<preset>`` (``MDPOConfig.from_preset(<preset>)``, any preset
of src/nashmp/rl/presets.json, e.g. ``mdpo:release``, ``mdpo:release-run-budget``), ``ppo``, ``trpo``
(sb3-contrib ``TRPO("MlpPolicy")`` defaults, same ``VecNormalize`` as PPO), ``mdpo-off[:<preset>]``, ``sac``. Every run also
records its **KL per iteration**: MDPO's ``losses/approx_kl`` (exact KL(π_{k+1}‖π_k) after the update), PPO's
``train/approx_kl`` and TRPO's ``train/kl_divergence_loss`` (read from the SB3 logger by a callback).

Commands (from the repository root)::

    .venv/bin/python benchmarks/rl_vs_sb3.py --suite issue12 --workers 1   # the issue-12 table; resumes
    .venv/bin/python benchmarks/rl_vs_sb3.py --suite issue12 --report-only # rebuild it from the run files
    .venv/bin/python benchmarks/rl_vs_sb3.py --quick              # smoke test (~1 min) into runs/rl_vs_sb3_quick/
    .venv/bin/python benchmarks/rl_vs_sb3.py --envs HalfCheetah-v5 --onpolicy-steps 100000 --algos mdpo mdpo:release ppo
    .venv/bin/python benchmarks/rl_vs_sb3.py --report-only        # rebuild the all-runs tables/plots

``--suite issue12``: on-policy 1M steps (999,424: whole iterations) on HalfCheetah-v5, Hopper-v5, Walker2d-v5,
seeds 0-4, mdpo, mdpo:release, mdpo:release-run-budget, ppo, trpo (if sb3-contrib imports); off-policy 100k
steps on Hopper-v5 and HalfCheetah-v5, seeds 0-2, mdpo-off vs sac. Runs are scheduled seed-major (seed 0 of every
(env, algorithm) cell, then seed 1, ...), so a partial table stays balanced.

Every finished run writes one **run file**, ``benchmarks/results/rl_vs_sb3/runs/<key>.json`` (a few KB: its row
of ``rl_vs_sb3_runs.csv``, its evaluation returns, its learning curve and KL series downsampled to 100
points; meant to be committed), and a run whose file exists is skipped (``--force`` re-runs it). The full-
resolution result also goes to the uncommitted cache ``runs/rl_vs_sb3/``. A nashmp run file records its
config; one whose config is no longer what its algorithm name builds (the defaults or a preset changed) is
**stale**: it is left out of the reports, named, and run again (:func:`is_current`); ``--rename-algo OLD NEW``
moves runs to the name that now builds their config. Several suite processes (or sessions) on one machine
share one plan: each run is claimed by a lock file in the cache (:func:`claim`), so a
second ``--suite issue12`` process started beside a first one takes the next unclaimed run. The reports are
rebuilt from the run files alone, plus ``benchmarks/results/rl_vs_sb3/legacy/`` (the rows from before run
files, converted once with ``--convert-legacy``): ``benchmarks/results/rl_vs_sb3_{runs,summary,curves}.csv``,
``rl_vs_sb3.md``, ``rl_vs_sb3_meta.json`` and ``docs/img/rl/rl_vs_sb3_<env>.png`` for every run; with
``--suite NAME`` also ``benchmarks/results/rl_vs_sb3_NAME.{md,json}`` (progress, mean ± std, per-seed values,
one-sided Mann-Whitney U of each MDPO variant against PPO, median KL per iteration) and
``docs/img/rl/rl_NAME_*.png`` (curves; KL per iteration).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, reexec_with_blas_threads, source_version  # noqa: E402
from _rl_report import (  # noqa: E402
    BASE_ALGOS,
    algo_info,
    base_of,
    convert_legacy,
    general_report,
    load_records,
    plan_report,
    run_record,
    update_docs,
    warmup_of,
    write_record,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS_DIR = RESULTS / "rl_vs_sb3" / "runs"  # committed, one small JSON per finished run
LEGACY_DIR = RESULTS / "rl_vs_sb3" / "legacy"  # the rows from before the run files (converted once)
N_STEPS = 2048  # rollout length of MDPO, SB3 PPO and sb3-contrib TRPO (defaults)
EVAL_SEED = 10_000
NOMINAL_SPS = {"mdpo": 750.0, "ppo": 750.0, "trpo": 750.0, "mdpo-off": 50.0, "sac": 55.0}  # 1 process (probe)
CURVE_WINDOW = 10  # curve value: mean return of the last 10 finished training episodes
KL_KEYS = ("train/approx_kl", "train/kl_divergence_loss")  # SB3 PPO, sb3-contrib TRPO

# --suite NAME: the planned runs, as (family, envs, algos, steps, seeds); scheduled seed-major (see plan_tasks)
SUITES: dict[str, list[tuple[str, list[str], list[str], int, int]]] = {
    "issue12": [
        ("on-policy", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"],
         ["mdpo", "mdpo:release", "mdpo:release-run-budget", "ppo", "trpo"], 1_000_000, 5),
        ("off-policy", ["Hopper-v5", "HalfCheetah-v5"], ["mdpo-off", "sac"], 100_000, 3),
    ],
}  # fmt: skip

HYPERPARAMETERS = {
    "mdpo": "nashmp MDPOConfig defaults: num_envs 1, n_steps 2048, sgd_steps m=10 (full batch), lr 1e-3 (Adam eps 1e-5) "
    "adapted on the measured KL per iteration (kl_target 0.01, within [1e-6, 1e-2]), KL weight min(1/t_k, 2), "
    "t_k = 1-(k-1)/K, K = budget//2048, vf 5 epochs x mb 128, vf_lr 3e-4, value clip 0.2, GAE(0.99, 0.95), grad "
    "clip 0.5, 64-64 tanh, gymnasium NormalizeObservation + NormalizeReward(gamma 0.99), both clipped at +-10",
    "mdpo:<preset>": "MDPOConfig.from_preset('<preset>', env_id=..., total_steps=..., seed=..., torch_threads=1): "
    "the defaults overridden by the preset's fields in src/nashmp/rl/presets.json (tabulated in docs/rl.md); "
    "release: lr 3e-4 constant, 1/t_k uncapped with K from a 10M-step budget, no clipping; release-run-budget: "
    "the same with K from the run's budget (the defaults until 2026-12-07); tuned: the defaults spelled out",
    "ppo": "SB3 PPO('MlpPolicy') defaults: n_envs 1, n_steps 2048, batch_size 64, n_epochs 10, lr 3e-4, clip 0.2, "
    "GAE(0.99, 0.95), ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, 64-64 tanh, ortho init, log_std_init 0; "
    "VecNormalize(norm_obs, norm_reward, gamma 0.99, clip_obs 10, clip_reward 10)",
    "trpo": "sb3-contrib TRPO('MlpPolicy') defaults: n_envs 1, n_steps 2048, target_kl 0.01, cg_max_steps 15, "
    "cg_damping 0.1, line search 10 x 0.8, critic lr 1e-3, n_critic_updates 10 x batch 128, GAE(0.99, 0.95), "
    "64-64 tanh; the same VecNormalize as PPO",
    "mdpo-off": "nashmp MDPOOffConfig defaults: learning_starts 10000, buffer 1e6, batch 256, lr 3e-4, tau 0.005, "
    "gamma 0.99, entropy lambda 0.2 (fixed), kl_coeff c 1.0, old_refresh 1000, 256-256 ReLU, actor_reg 1e-3, "
    "stochastic collection",
    "sac": "SB3 SAC('MlpPolicy') defaults: learning_starts 100, buffer 1e6, batch 256, lr 3e-4, tau 0.005, gamma 0.99, "
    "ent_coef 'auto' (init 1.0, target_entropy -dim(A)), train_freq 1, gradient_steps 1, 256-256 ReLU",
}


def check_algo(name: str) -> str:
    """``mdpo``, ``mdpo:<preset>`` (any preset of src/nashmp/rl/presets.json), ``ppo``, ``trpo``, ``mdpo-off[:<preset>]``, ``sac``."""
    base, _, preset = name.partition(":")
    if base not in BASE_ALGOS:
        raise argparse.ArgumentTypeError(f"unknown algorithm {name!r}; one of {', '.join(BASE_ALGOS)}[:preset]")
    if preset:
        from nashmp.rl.presets import preset_names

        if algo_info(name)[1] != "nashmp" or preset not in preset_names(base):
            raise argparse.ArgumentTypeError(
                f"{name!r}: presets exist for mdpo ({', '.join(preset_names('mdpo'))}) and mdpo-off "
                f"({', '.join(preset_names('mdpo-off'))})"
            )
    return name


def trpo_available() -> bool:
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return True


def nominal_cost(task: dict[str, Any]) -> float:
    """Rough training seconds of a run, to schedule the longest runs first (less idle time at the end)."""
    warm = min(warmup_of(task), task["steps"])
    return warm / 3000 + (task["steps"] - warm) / NOMINAL_SPS[base_of(task["algo"])]


# ------------------------------------------------------------------------------------------------ runs
def budget(algo: str, steps: int) -> int:
    """On-policy budgets are rounded down to whole 2048-step iterations (what MDPO runs)."""
    return max(N_STEPS, steps // N_STEPS * N_STEPS) if algo_info(algo)[0] == "on-policy" else steps


def curve_every(algo: str, steps: int) -> int:
    if algo_info(algo)[0] == "on-policy":
        return N_STEPS
    return max(100, steps // 100 // 100 * 100)


def run_key(env: str, algo: str, steps: int, seed: int, eval_episodes: int, learning_starts: int | None) -> str:
    ls = "" if learning_starts is None or algo_info(algo)[0] == "on-policy" else f"__ls{learning_starts}"
    return f"{env}__{algo.replace(':', '+')}__{steps}__s{seed}__e{eval_episodes}{ls}"


def make_task(
    env: str, algo: str, steps: int, seed: int, episodes: int, ls: int | None, dirs: dict[str, str]
) -> dict[str, Any]:
    steps = budget(algo, steps)
    ls = None if algo_info(algo)[0] == "on-policy" else ls
    key = run_key(env, algo, steps, seed, episodes, ls)
    return {"env": env, "algo": algo, "family": algo_info(algo)[0], "steps": steps, "seed": seed,
            "eval_episodes": episodes, "learning_starts": ls, "key": key, **dirs}  # fmt: skip


def plan_tasks(cells: list[tuple[str, list[str], list[str], int, int]], episodes: int, ls: int | None,
               dirs: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """Seed-major order: seed 0 of every (env, algo) cell, then seed 1, ...: a partial table stays balanced."""
    tasks = []
    for seed in range(max(c[4] for c in cells)):
        for _, envs, algos, steps, seeds in cells:
            if seed < seeds:
                tasks += [make_task(env, a, steps, seed, episodes, ls, dirs) for env in envs for a in algos]
    return tasks


def _eval_loop(env_id: str, act: Callable[[np.ndarray], np.ndarray], episodes: int) -> np.ndarray:
    """The protocol of ``MDPO.evaluate``/``MDPOOff.evaluate``, for the SB3 models."""
    import gymnasium as gym

    env = gym.make(env_id)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + ep)
        total, finished = 0.0, False
        while not finished:
            obs, r, te, tr, _ = env.step(act(obs))
            total, finished = total + float(r), bool(te or tr)
        out.append(total)
    env.close()
    return np.asarray(out)


def nashmp_config(algo: str, env_id: str, steps: int, seed: int, ls: int | None) -> Any:
    """The MDPOConfig / MDPOOffConfig that a run of ``algo`` (``mdpo[:preset]``, ``mdpo-off[:preset]``) trains."""
    from nashmp.rl.mdpo import MDPOConfig
    from nashmp.rl.mdpo_off import MDPOOffConfig

    base, _, preset = algo.partition(":")
    fields: dict[str, Any] = {"env_id": env_id, "total_steps": steps, "seed": seed, "torch_threads": 1}
    cls: Any = MDPOConfig if base == "mdpo" else MDPOOffConfig
    if base != "mdpo" and ls is not None:
        fields["learning_starts"] = ls
    return cls.from_preset(preset, **fields) if preset else cls(**fields)


def recorded_config(algo: str, cfg: Any) -> dict[str, Any]:
    """What a run file records of ``cfg``: its preset and its scalar fields."""
    import dataclasses

    scalars = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, int | float | str | bool | None)}
    return {"preset": algo.partition(":")[2] or None, **scalars}


def is_current(record: dict[str, Any]) -> bool:
    """False for a **stale** nashmp run file: its recorded config is not the one its algorithm name builds today
    (the defaults or a preset changed since it ran), so its numbers no longer belong to that name. SB3 runs
    and files without a config (legacy rows) are taken as they are."""
    if algo_info(record["algo"])[1] != "nashmp" or record.get("config") is None:
        return True
    cfg = nashmp_config(record["algo"], record["env"], record["steps"], record["seed"], record.get("learning_starts"))
    return recorded_config(record["algo"], cfg) == record["config"]


def current_run_file(task: dict[str, Any]) -> bool:
    """Whether ``task`` has a run file that is not stale (:func:`is_current`)."""
    path = Path(task["runs_dir"]) / f"{task['key']}.json"
    return path.is_file() and is_current(json.loads(path.read_text()))


def rename_algo(folders: Sequence[Path | None], old: str, new: str) -> int:
    """Rename the run files of ``old`` to ``new`` (key, file, algorithm, label, recorded preset), for when the
    defaults change and the runs keep their numbers under the name that now builds their config. A recorded
    config must equal the one ``new`` builds, field for field apart from the preset name (else nothing is
    renamed); a file without one (a legacy row) is renamed and says so in its ``source``. Returns the count."""
    moves = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder is not None and folder.is_dir() else []:
            record = json.loads(path.read_text())
            if record["algo"] != old:
                continue
            env = record["env"]  # the key with its algorithm part swapped: budget, seed, episodes, warm-up kept
            key = record["key"].replace(f"{env}__{old.replace(':', '+')}__", f"{env}__{new.replace(':', '+')}__", 1)
            if key == record["key"] or (folder / f"{key}.json").exists():
                raise SystemExit(f"cannot rename {path.name}: {key}.json exists or is the same file")
            if record.get("config") is not None:
                built = recorded_config(new, nashmp_config(new, record["env"], record["steps"], record["seed"],
                                                           record.get("learning_starts")))  # fmt: skip
                differ = sorted(k for k in built.keys() | record["config"].keys()
                                if k != "preset" and built.get(k) != record["config"].get(k))  # fmt: skip
                if differ:
                    raise SystemExit(f"cannot rename {path.name} to {new!r}: its config differs in {differ}")
                record["config"] = {**record["config"], "preset": built["preset"]}
            else:
                record["source"] = f"{record.get('source', '')}; renamed from {old!r} (no recorded config)"
            moves.append((path, {**record, "key": key, "algo": new, "label": algo_info(new)[2]}))
    for path, record in moves:
        write_record(record, path.parent)
        path.unlink()
    return len(moves)


def _train_nashmp(
    algo: str, env_id: str, steps: int, seed: int, every: int, episodes: int, ls: int | None
) -> dict[str, Any]:
    from nashmp.rl.mdpo import MDPO, MDPOConfig
    from nashmp.rl.mdpo_off import MDPOOff

    cfg = nashmp_config(algo, env_id, steps, seed, ls)
    if isinstance(cfg, MDPOConfig):
        agent: Any = MDPO(cfg)
        start = time.perf_counter()
        history = agent.learn()
    else:
        agent = MDPOOff(cfg)
        start = time.perf_counter()
        history = agent.learn(log_every=every)
    wall = time.perf_counter() - start
    curve = [
        (int(h["global_step"]), float(h["charts/episodic_return"]), float(h.get("charts/SPS", math.nan)))
        for h in history
    ]
    kl = [(int(h["global_step"]), float(h["losses/approx_kl"])) for h in history if "losses/approx_kl" in h]
    t0 = time.perf_counter()
    returns = agent.evaluate(episodes, seed=EVAL_SEED)
    return {
        "steps_done": int(agent.progress.global_step),
        "train_wall_s": wall,
        "curve": curve,
        "kl": kl,
        "kl_name": "losses/approx_kl" if kl else None,
        "eval_returns": [float(x) for x in returns],
        "eval_wall_s": time.perf_counter() - t0,
        "train_episodes": len(agent.returns),
        "config": recorded_config(algo, cfg),
    }


def _train_sb3(
    algo: str, env_id: str, steps: int, seed: int, every: int, episodes: int, ls: int | None
) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class Curve(BaseCallback):
        """Mean of the last 10 finished training episodes (Monitor: raw rewards) every ``every`` steps, and the
        KL that the previous ``train()`` logged (read from the logger before the next rollout and at the end)."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.points: list[tuple[int, float, float]] = []
            self.kl: list[tuple[int, float]] = []
            self.kl_name: str | None = None
            self.last = time.perf_counter()

        def _grab_kl(self) -> None:
            values = self.model.logger.name_to_value
            for name in KL_KEYS:
                if name in values and (not self.kl or self.kl[-1][0] != self.num_timesteps):
                    self.kl.append((self.num_timesteps, float(values[name])))
                    self.kl_name = name

        def _on_rollout_start(self) -> None:
            self._grab_kl()

        def _on_training_end(self) -> None:
            self._grab_kl()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            if self.num_timesteps % every == 0:
                now = time.perf_counter()
                ret = float(np.mean(self.returns[-CURVE_WINDOW:])) if self.returns else math.nan
                self.points.append((self.num_timesteps, ret, every / (now - self.last)))
                self.last = now
            return True

    venv: Any = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    if algo in ("ppo", "trpo"):
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.99)
        if algo == "ppo":
            model: Any = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)
        else:
            from sb3_contrib import TRPO

            model = TRPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)
    else:
        extra = {} if ls is None else {"learning_starts": ls}
        model = SAC("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **extra)
    cb = Curve()
    start = time.perf_counter()
    cb.last = start
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - start
    if algo in ("ppo", "trpo"):
        venv.training, venv.norm_reward = False, False  # frozen obs statistics for evaluation

        def act(obs: np.ndarray) -> np.ndarray:
            return model.predict(venv.normalize_obs(obs[None]), deterministic=True)[0][0]
    else:

        def act(obs: np.ndarray) -> np.ndarray:
            return model.predict(obs[None], deterministic=True)[0][0]

    t0 = time.perf_counter()
    returns = _eval_loop(env_id, act, episodes)
    return {
        "steps_done": int(model.num_timesteps),
        "train_wall_s": wall,
        "curve": cb.points,
        "kl": cb.kl,
        "kl_name": cb.kl_name,
        "eval_returns": [float(x) for x in returns],
        "eval_wall_s": time.perf_counter() - t0,
        "train_episodes": len(cb.returns),
        "config": {"class": type(model).__name__, "defaults": "library defaults", "VecNormalize": algo != "sac"},
    }


def _versions() -> dict[str, str]:
    out = {"nashmp": source_version()}
    for mod in ("stable_baselines3", "sb3_contrib", "torch", "gymnasium", "mujoco"):
        with contextlib.suppress(ImportError):
            out[mod] = __import__(mod).__version__
    return out


@contextlib.contextmanager
def claim(task: dict[str, Any]) -> Iterator[bool]:
    """Hold ``task`` for this process while the block runs; yields False when it is not ours to run.

    Not ours: another live process holds its lock, or it has a current run file (written by another process
    since this one planned; a stale file does not count) and ``task["force"]`` is not set. The lock is
    ``flock`` on ``<cache>/claims/<key>.lock``, which the kernel releases when its holder exits or is killed:
    a stopped session leaves no stale claim.
    """
    path = Path(task["cache"]) / "claims" / f"{task['key']}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield bool(task.get("force")) or not current_run_file(task)


def run_one(task: dict[str, Any]) -> dict[str, Any] | None:
    """One (env, algo, seed) run, or None when :func:`claim` says it is not ours; writes its full result to the
    cache and its run file to ``runs_dir``."""
    with claim(task) as ours:
        return _run_one(task) if ours else None


def _run_one(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    env_id, algo, steps, seed, episodes = task["env"], task["algo"], task["steps"], task["seed"], task["eval_episodes"]
    every = curve_every(algo, steps)
    train = _train_nashmp if algo_info(algo)[1] == "nashmp" else _train_sb3
    t0 = time.time()
    res = train(algo, env_id, steps, seed, every, episodes, task.get("learning_starts"))
    family, library, label = algo_info(algo)
    out = {
        **{k: v for k, v in task.items() if k not in ("cache", "runs_dir", "force")},
        "family": family,
        "library": library,
        "label": label,
        **res,
        "sps": res["steps_done"] / res["train_wall_s"],
        "eval_mean": float(np.mean(res["eval_returns"])),
        "eval_std": float(np.std(res["eval_returns"])),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "versions": _versions(),
    }
    if task.get("cache"):
        path = Path(task["cache"]) / f"{task['key']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(out))
        path.with_suffix(".tmp").replace(path)
    write_record(run_record(out, task["key"]), Path(task["runs_dir"]))
    return out


def hyperparameters(algos: Sequence[str]) -> dict[str, str]:
    out = dict(HYPERPARAMETERS)
    for a in algos:
        if ":" in a:
            from nashmp.rl.presets import load_presets

            base, _, preset = a.partition(":")
            out[a] = f"{HYPERPARAMETERS[base]}; then preset {preset!r}: {load_presets()[base][preset]['params']}"
    return out


# ------------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--suite", choices=list(SUITES), default=None,
                    help="a planned table: its envs, algorithms, budgets and seeds (overrides those options)")  # fmt: skip
    ap.add_argument("--envs", nargs="+", default=None, help="default: Pendulum-v1 HalfCheetah-v5 Hopper-v5")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    ap.add_argument("--onpolicy-steps", type=int, default=None, help="on-policy budget (default 1_000_000)")
    ap.add_argument("--offpolicy-steps", type=int, default=None, help="off-policy budget (default 200_000)")
    ap.add_argument("--algos", nargs="+", type=check_algo, default=None,
                    help="mdpo, mdpo:<preset> (e.g. mdpo:release, mdpo:release-run-budget), ppo, trpo, mdpo-off[:<preset>], sac "
                    "(default: mdpo ppo mdpo-off sac)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2,
                    help="parallel runs (processes), 1 torch thread each; 0: in this process, one after another")  # fmt: skip
    ap.add_argument("--eval-episodes", type=int, default=None, help="deterministic evaluation episodes per run (10)")
    ap.add_argument(
        "--learning-starts",
        type=int,
        default=None,
        help="random warm-up steps for BOTH MDPO-off and SAC (default: each library's own, 10000 and 100)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: Pendulum-v1, 2 seeds, 4096 / 1500 steps, --learning-starts 1000, 2 eval episodes, "
        "all outputs under runs/rl_vs_sb3_quick/ (plan report 'quick')",
    )
    ap.add_argument("--max-runs", type=int, default=None, help="stop after starting this many runs")
    ap.add_argument("--force", action="store_true", help="re-run runs whose run file exists")
    ap.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the run files")
    ap.add_argument("--runs-dir", type=Path, default=None, help=f"run files (default {RUNS_DIR.relative_to(ROOT)})")
    ap.add_argument("--legacy-dir", type=Path, default=None, help="older run files read by the report (none: 'none')")
    ap.add_argument("--cache-dir", type=Path, default=None, help="full-resolution results, not committed")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--img-dir", type=Path, default=None)
    ap.add_argument("--baseline", default=None, help="on-policy algorithm of the rank tests (default ppo; off: sac)")
    ap.add_argument("--rename-algo", nargs=2, metavar=("OLD", "NEW"), default=None,
                    help="rename the run files of algorithm OLD to NEW (in --runs-dir and --legacy-dir) where their "
                    "recorded config is what NEW builds, e.g. after a defaults change; then report")  # fmt: skip
    ap.add_argument("--convert-legacy", action="store_true",
                    help="convert benchmarks/results/rl_vs_sb3_{runs,curves}.csv into run files in --legacy-dir")  # fmt: skip
    ap.add_argument("--update-docs", action="store_true",
                    help="with --suite: write the suite table into docs/rl-benchmarks.md (between its markers)")  # fmt: skip
    ap.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS/OMP/MKL threads (0: library default)")
    args = ap.parse_args(argv)
    reexec_with_blas_threads(args.blas_threads)

    q = args.quick
    base = ROOT / "runs" / "rl_vs_sb3_quick" if q else None
    runs_dir = args.runs_dir or (base / "runs" if base else RUNS_DIR)
    legacy = None if str(args.legacy_dir) == "none" else (args.legacy_dir or (None if base else LEGACY_DIR))
    cache = args.cache_dir or (base / "cache" if base else ROOT / "runs" / "rl_vs_sb3")
    results = args.results_dir or (base / "results" if base else RESULTS)
    img = args.img_dir or (base / "img" if base else ROOT / "docs" / "img" / "rl")
    episodes = args.eval_episodes or (2 if q else 10)
    ls = args.learning_starts if args.learning_starts is not None else (1_000 if q else None)  # quick: 500 updates
    dirs = {"cache": str(cache), "runs_dir": str(runs_dir)}

    if args.convert_legacy:
        n = convert_legacy(
            RESULTS / "rl_vs_sb3_runs.csv", RESULTS / "rl_vs_sb3_curves.csv", legacy or LEGACY_DIR, run_key
        )
        print(f"converted {n} rows into {legacy or LEGACY_DIR}")
    if args.rename_algo:
        n = rename_algo([runs_dir, legacy], *(check_algo(a) for a in args.rename_algo))
        print(f"renamed {n} run files from {args.rename_algo[0]} to {args.rename_algo[1]}")
    if args.suite:
        cells = [list(c) for c in SUITES[args.suite]]
        if not trpo_available():
            print("sb3-contrib is not installed: TRPO left out of the suite (.venv/bin/pip install sb3-contrib)")
        cells = [(f, e, [a for a in al if a != "trpo" or trpo_available()], st, se) for f, e, al, st, se in cells]
        name = args.suite
    else:
        algos = args.algos or ["mdpo", "ppo", "mdpo-off", "sac"]
        envs = args.envs or (["Pendulum-v1"] if q else ["Pendulum-v1", "HalfCheetah-v5", "Hopper-v5"])
        seeds = args.seeds or (2 if q else 3)
        on_steps = args.onpolicy_steps or (2 * N_STEPS if q else 1_000_000)
        off_steps = args.offpolicy_steps or (1_500 if q else 200_000)
        cells = []
        for family, steps in (("on-policy", on_steps), ("off-policy", off_steps)):
            fam = [a for a in algos if algo_info(a)[0] == family]
            if fam:
                cells.append((family, envs, fam, steps, seeds))
        name = "quick" if q else None
    plan = plan_tasks(cells, episodes, ls, dirs)

    if not args.report_only:
        tasks = [dict(t, force=args.force) for t in plan if args.force or not current_run_file(t)]
        if args.workers > 1 and not args.suite:
            tasks.sort(key=lambda t: -nominal_cost(t))  # stable: the algorithms stay interleaved
        tasks = tasks[: args.max_runs] if args.max_runs is not None else tasks
        print(f"{len(plan) - len(tasks)} of {len(plan)} planned runs have run files; {len(tasks)} to do with "
              f"{args.workers} workers; run files in {runs_dir}", flush=True)  # fmt: skip
        t0 = time.perf_counter()

        def done(i: int, r: dict[str, Any] | None) -> None:
            if r is None:
                print(f"[{i}/{len(tasks)}] skipped: another process holds or has finished it", flush=True)
                return
            print(
                f"[{i}/{len(tasks)} {time.perf_counter() - t0:7.0f}s] {r['env']} {r['algo']} seed {r['seed']} "
                f"{r['steps_done']:,} steps: eval {r['eval_mean']:.1f} ± {r['eval_std']:.1f}, "
                f"{r['sps']:.0f} steps/s, {r['train_wall_s']:.0f}s -> {r['key']}.json",
                flush=True,
            )

        if args.workers <= 0:
            for i, task in enumerate(tasks, 1):
                done(i, run_one(task))
        else:
            with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
                for i, r in enumerate(
                    pool.imap(run_one, tasks) if args.suite else pool.imap_unordered(run_one, tasks), 1
                ):
                    done(i, r)
    runs = load_records([runs_dir, legacy])
    stale = [r["key"] for r in runs if not is_current(r)]
    if stale:
        print(f"{len(stale)} stale run file(s) left out of the reports (their config is not what their algorithm "
              f"builds today; the next run without --report-only runs them again): {', '.join(stale)}", flush=True)  # fmt: skip
    runs = [r for r in runs if r["key"] not in stale]
    algos_seen = sorted({r["algo"] for r in runs})
    sources = " and ".join(f"`{os.path.relpath(d, ROOT)}`" for d in (runs_dir, legacy) if d is not None)
    general_report(runs, results, img, hyperparameters(algos_seen), sources)
    if name:
        baselines = {"on-policy": args.baseline or "ppo", "off-policy": "sac"}
        cmd = f".venv/bin/python benchmarks/rl_vs_sb3.py --suite {name} --workers 1" if args.suite else command_line()
        rep = plan_report(name, plan, [r for r in load_records([runs_dir]) if r["key"] not in stale], results, img,
                          baselines, cmd)  # fmt: skip
        if args.update_docs:
            update_docs(ROOT / "docs" / "rl-benchmarks.md", name, rep["markdown"], results)


if __name__ == "__main__":
    main()
