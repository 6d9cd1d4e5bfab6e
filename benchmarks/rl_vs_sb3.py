r"""nashmp MDPO vs Stable-Baselines3 (PPO, SAC) on the same environments, step budgets and seeds.

What is measured, per environment and seed (every run in its own process):

* **on-policy**: nashmp ``MDPO`` (our defaults: 1 env, n_steps 2048, m = 10 full-batch Adam steps, lr 3e-4,
  eps 1e-5, KL weight 1/t_k with t_k = 1 − (k−1)/K and K = budget/2048, critic 5 epochs × minibatch 128 with
  value clip 0.2, GAE(0.99, 0.95), grad-norm clip 0.5, 64-64 tanh, obs + reward normalisation with γ = 0.99)
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

Commands (from the repository root)::

    .venv/bin/python benchmarks/rl_vs_sb3.py                      # the full budgets (many hours on 2 cores)
    .venv/bin/python benchmarks/rl_vs_sb3.py --quick              # smoke test (~1 min) into runs/rl_vs_sb3_quick/
    # the runs reported in docs/rl-benchmarks.md:
    .venv/bin/python benchmarks/rl_vs_sb3.py --envs Pendulum-v1 --onpolicy-steps 200000 --offpolicy-steps 20000
    .venv/bin/python benchmarks/rl_vs_sb3.py --envs HalfCheetah-v5 --onpolicy-steps 100000 --algos mdpo ppo
    .venv/bin/python benchmarks/rl_vs_sb3.py --report-only        # rebuild tables/plots from the run cache

Every finished run is cached as JSON in ``runs/rl_vs_sb3/`` (keyed by env, algorithm, budget and seed; cached
runs are reused unless ``--force``), and the outputs are rebuilt from *all* cached runs, so runs at different
budgets and on different envs accumulate: ``benchmarks/results/rl_vs_sb3_{runs,summary,curves}.csv``,
``benchmarks/results/rl_vs_sb3.md``, ``benchmarks/results/rl_vs_sb3_meta.json`` and one learning-curve
figure per environment ``docs/img/rl/rl_vs_sb3_<env>.png`` (largest budget per env and algorithm family).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, machine, md_table, reexec_with_blas_threads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALGOS: dict[str, tuple[str, str, str]] = {  # name → (family, library, label)
    "mdpo": ("on-policy", "nashmp", "MDPO"),
    "ppo": ("on-policy", "sb3", "PPO"),
    "mdpo-off": ("off-policy", "nashmp", "MDPO-off"),
    "sac": ("off-policy", "sb3", "SAC"),
}
N_STEPS = 2048  # rollout length of both MDPO and SB3 PPO (defaults)
EVAL_SEED = 10_000
WARMUP = {"mdpo": 0, "ppo": 0, "mdpo-off": 10_000, "sac": 100}  # learning_starts (random-action steps)
NOMINAL_SPS = {"mdpo": 750.0, "ppo": 750.0, "mdpo-off": 50.0, "sac": 55.0}  # 1 process on this machine (probe)


def nominal_cost(task: dict[str, Any]) -> float:
    """Rough training seconds of a run, to schedule the longest runs first (less idle time at the end)."""
    warm = min(warmup_of(task), task["steps"])
    return warm / 3000 + (task["steps"] - warm) / NOMINAL_SPS[task["algo"]]


CURVE_WINDOW = 10  # curve value: mean return of the last 10 finished training episodes
COLORS = {"nashmp": "tab:blue", "sb3": "tab:orange"}

HYPERPARAMETERS = {
    "mdpo": "nashmp MDPOConfig defaults: num_envs 1, n_steps 2048, sgd_steps m=10 (full batch), lr 3e-4 (Adam eps 1e-5), "
    "KL weight 1/t_k, t_k = 1-(k-1)/K, K = budget//2048, vf 5 epochs x mb 128, vf_lr 3e-4, value clip 0.2, "
    "GAE(0.99, 0.95), grad clip 0.5, 64-64 tanh, gymnasium NormalizeObservation + NormalizeReward(gamma 0.99)",
    "ppo": "SB3 PPO('MlpPolicy') defaults: n_envs 1, n_steps 2048, batch_size 64, n_epochs 10, lr 3e-4, clip 0.2, "
    "GAE(0.99, 0.95), ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, 64-64 tanh, ortho init, log_std_init 0; "
    "VecNormalize(norm_obs, norm_reward, gamma 0.99, clip_obs 10, clip_reward 10)",
    "mdpo-off": "nashmp MDPOOffConfig defaults: learning_starts 10000, buffer 1e6, batch 256, lr 3e-4, tau 0.005, "
    "gamma 0.99, entropy lambda 0.2 (fixed), kl_coeff c 1.0, old_refresh 1000, 256-256 ReLU, actor_reg 1e-3, "
    "stochastic collection",
    "sac": "SB3 SAC('MlpPolicy') defaults: learning_starts 100, buffer 1e6, batch 256, lr 3e-4, tau 0.005, gamma 0.99, "
    "ent_coef 'auto' (init 1.0, target_entropy -dim(A)), train_freq 1, gradient_steps 1, 256-256 ReLU",
}


# ------------------------------------------------------------------------------------------------ runs
def budget(algo: str, steps: int) -> int:
    """On-policy budgets are rounded down to whole 2048-step iterations (what MDPO runs)."""
    return max(N_STEPS, steps // N_STEPS * N_STEPS) if ALGOS[algo][0] == "on-policy" else steps


def curve_every(algo: str, steps: int) -> int:
    if ALGOS[algo][0] == "on-policy":
        return N_STEPS
    return max(100, steps // 100 // 100 * 100)


def run_key(env: str, algo: str, steps: int, seed: int, eval_episodes: int, learning_starts: int | None) -> str:
    ls = "" if learning_starts is None or ALGOS[algo][0] == "on-policy" else f"__ls{learning_starts}"
    return f"{env}__{algo}__{steps}__s{seed}__e{eval_episodes}{ls}"


def warmup_of(run: dict[str, Any]) -> int:
    """Random-action warm-up steps of a run (the library default unless ``--learning-starts`` was given)."""
    ls = run.get("learning_starts")
    return WARMUP[run["algo"]] if ls is None or ALGOS[run["algo"]][0] == "on-policy" else int(ls)


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


def _train_nashmp(
    algo: str, env_id: str, steps: int, seed: int, every: int, episodes: int, ls: int | None
) -> dict[str, Any]:
    from nashmp.rl.mdpo import MDPO, MDPOConfig
    from nashmp.rl.mdpo_off import MDPOOff, MDPOOffConfig

    if algo == "mdpo":
        agent: Any = MDPO(MDPOConfig(env_id=env_id, total_steps=steps, seed=seed, torch_threads=1))
        start = time.perf_counter()
        history = agent.learn()
    else:
        extra = {} if ls is None else {"learning_starts": ls}
        agent = MDPOOff(MDPOOffConfig(env_id=env_id, total_steps=steps, seed=seed, torch_threads=1, **extra))
        start = time.perf_counter()
        history = agent.learn(log_every=every)
    wall = time.perf_counter() - start
    curve = [
        (int(h["global_step"]), float(h["charts/episodic_return"]), float(h.get("charts/SPS", math.nan)))
        for h in history
    ]
    t0 = time.perf_counter()
    returns = agent.evaluate(episodes, seed=EVAL_SEED)
    return {
        "steps_done": int(agent.progress.global_step),
        "train_wall_s": wall,
        "curve": curve,
        "eval_returns": [float(x) for x in returns],
        "eval_wall_s": time.perf_counter() - t0,
        "train_episodes": len(agent.returns),
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
        """Mean of the last 10 finished training episodes (Monitor: raw rewards) every ``every`` steps."""

        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.points: list[tuple[int, float, float]] = []
            self.last = time.perf_counter()

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
    if algo == "ppo":
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.99)
        model: Any = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)
    else:
        extra = {} if ls is None else {"learning_starts": ls}
        model = SAC("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **extra)
    cb = Curve()
    start = time.perf_counter()
    cb.last = start
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - start
    if algo == "ppo":
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
        "eval_returns": [float(x) for x in returns],
        "eval_wall_s": time.perf_counter() - t0,
        "train_episodes": len(cb.returns),
    }


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One (env, algo, seed) run in a worker process; the result is also cached as JSON."""
    import torch

    torch.set_num_threads(1)
    env_id, algo, steps, seed, episodes = task["env"], task["algo"], task["steps"], task["seed"], task["eval_episodes"]
    every = curve_every(algo, steps)
    train = _train_nashmp if ALGOS[algo][1] == "nashmp" else _train_sb3
    t0 = time.time()
    res = train(algo, env_id, steps, seed, every, episodes, task.get("learning_starts"))
    family, library, label = ALGOS[algo]
    out = {
        **task,
        "family": family,
        "library": library,
        "label": label,
        **res,
        "sps": res["steps_done"] / res["train_wall_s"],
        "eval_mean": float(np.mean(res["eval_returns"])),
        "eval_std": float(np.std(res["eval_returns"])),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    path = Path(task["cache"]) / f"{task['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)
    return out


# ------------------------------------------------------------------------------------------------ report
def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}" if np.isfinite(std) else f"{mean:.1f}"


def _phase_sps(run: dict[str, Any]) -> tuple[float, float]:
    """(warm-up, steady) env-steps/s of one run from its per-interval speeds.

    Steady: median over the second half of the intervals that start after the warm-up (by default MDPO-off
    10k random steps, SAC 100; none on-policy); warm-up: median over the intervals that end within it (nan if none).
    """
    curve = run["curve"]
    starts = [0.0, *[c[0] for c in curve[:-1]]]
    warmup = warmup_of(run)
    after = [c[2] for s, c in zip(starts, curve, strict=True) if s >= warmup and np.isfinite(c[2]) and c[2] > 0]
    during = [c[2] for c in curve if c[0] <= warmup and np.isfinite(c[2]) and c[2] > 0]
    steady = float(np.median(after[len(after) // 2 :])) if after else math.nan
    return (float(np.median(during)) if during else math.nan), steady


def estimate_hours(algo: str, full: int, warm_sps: float, steady_sps: float) -> float:
    """Training time of one run at budget ``full`` from the measured phase speeds."""
    warmup = min(WARMUP[algo], full)
    warm = warmup / warm_sps if warmup and np.isfinite(warm_sps) else warmup / steady_sps
    return (warm + (full - warmup) / steady_sps) / 3600


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["env"], r["algo"], r["steps"], r["eval_episodes"], warmup_of(r))].append(r)
    order = {a: i for i, a in enumerate(ALGOS)}
    rows = []
    for (env, algo, steps, episodes, warmup), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2])
    ):
        means = np.array([r["eval_mean"] for r in rs])
        sps = np.array([r["sps"] for r in rs])
        phases = np.array([_phase_sps(r) for r in rs])
        family, library, label = ALGOS[algo]
        rows.append(
            {
                "env": env,
                "family": family,
                "algo": algo,
                "label": label,
                "library": library,
                "steps": steps,
                "seeds": len(rs),
                "seed_list": " ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"])),
                "eval_episodes": episodes,
                "learning_starts": warmup,
                "return_mean": float(means.mean()),
                "return_std": float(means.std(ddof=1)) if len(rs) > 1 else math.nan,
                "return_min": float(means.min()),
                "return_max": float(means.max()),
                "sps_mean": float(sps.mean()),
                "sps_std": float(sps.std(ddof=1)) if len(rs) > 1 else math.nan,
                "warmup_sps": _nanmean(phases[:, 0]),
                "steady_sps": _nanmean(phases[:, 1]),
                "train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in rs])),
            }
        )
    return rows


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0]) if rows else []
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def plot_env(env: str, runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Training-return curves, mean ± std band over seeds; one panel per family (its largest budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    families = [f for f in ("on-policy", "off-policy") if any(r["family"] == f for r in runs)]
    if not families:
        return None
    fig, axes = plt.subplots(
        1, len(families), figsize=(5.2 * len(families), 3.6), constrained_layout=True, squeeze=False
    )
    for ax, family in zip(axes[0], families, strict=True):
        fam = [r for r in runs if r["family"] == family]
        steps = max(r["steps"] for r in fam)
        for algo in (a for a, v in ALGOS.items() if v[0] == family):
            rs = [r for r in fam if r["algo"] == algo and r["steps"] == steps]
            if not rs:
                continue
            grid = sorted(set.intersection(*(set(int(c[0]) for c in r["curve"]) for r in rs)))
            if not grid:
                continue
            ys = np.array([[dict((int(c[0]), c[1]) for c in r["curve"])[s] for s in grid] for r in rs], float)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, std = np.nanmean(ys, 0), np.nanstd(ys, 0)
            x = np.array(grid)
            _, library, label = ALGOS[algo]
            name = f"{label} ({'nashmp' if library == 'nashmp' else 'SB3'}), {len(rs)} seeds"
            ax.plot(x, mean, color=COLORS[library], lw=1.5, label=name)
            ax.fill_between(x, mean - std, mean + std, color=COLORS[library], alpha=0.2, lw=0)
        ax.set_title(f"{env}, {family}, {steps:,} steps", fontsize=10)
        ax.set_xlabel("environment steps (thousands)")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}"))
        ax.set_ylabel("training return (last 10 episodes)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def sb3_version() -> str:
    try:
        import stable_baselines3

        return stable_baselines3.__version__
    except ImportError:
        return "not installed"


def report(cache: Path, results: Path, img: Path, budgets: dict[str, int], workers: int, seeds: int) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]
    if not runs:
        print(f"no cached runs in {cache}")
        return
    results.mkdir(parents=True, exist_ok=True)
    per_run = [
        {k: r[k] for k in ("env", "family", "algo", "library", "steps", "seed", "steps_done", "eval_mean", "eval_std")}
        | {
            "eval_episodes": r["eval_episodes"],
            "sps": r["sps"],
            "learning_starts": warmup_of(r),
            "steady_sps": _phase_sps(r)[1],
            "train_wall_s": r["train_wall_s"],
            "eval_wall_s": r["eval_wall_s"],
            "train_episodes": r["train_episodes"],
            "started": r["started"],
            "loadavg_end_1min": r["loadavg_end"][0],
        }
        for r in runs
    ]
    _write_csv(results / "rl_vs_sb3_runs.csv", per_run)
    curves = [
        {"env": r["env"], "algo": r["algo"], "library": r["library"], "steps": r["steps"], "seed": r["seed"]}
        | {"global_step": int(c[0]), "train_return": c[1], "sps": c[2]}
        for r in runs
        for c in r["curve"]
    ]
    _write_csv(results / "rl_vs_sb3_curves.csv", curves)
    summary = summarise(runs)
    _write_csv(results / "rl_vs_sb3_summary.csv", summary)

    images = []
    envs = sorted({r["env"] for r in runs})
    for env in envs:
        p = plot_env(env, [r for r in runs if r["env"] == env], img / f"rl_vs_sb3_{env}.png")
        if p is not None:
            images.append(p)

    table = md_table(
        [
            "env",
            "family",
            "algorithm",
            "library",
            "steps",
            "seeds",
            "final eval return",
            "env-steps/s",
            "train time/run",
        ],
        [
            [
                s["env"],
                s["family"],
                s["label"],
                "nashmp" if s["library"] == "nashmp" else f"SB3 {sb3_version()}",
                f"{s['steps']:,}",
                s["seeds"],
                _fmt(s["return_mean"], s["return_std"]),
                _fmt(s["sps_mean"], s["sps_std"]),
                f"{s['train_wall_s_mean'] / 60:.1f} min",
            ]
            for s in summary
        ],
        ["l", "l", "l", "l", "r", "r", "r", "r", "r"],
    )
    # time needed for the default (issue) budgets, from the measured steady-state speed of each (env, algo)
    est_rows = []
    for s in summary:
        full = budgets["on-policy"] if s["family"] == "on-policy" else budgets["off-policy"]
        steady = s["steady_sps"] if np.isfinite(s["steady_sps"]) else s["sps_mean"]
        hours = estimate_hours(s["algo"], full, s["warmup_sps"], steady)
        est_rows.append(
            [
                s["env"],
                s["label"],
                f"{s['steps']:,}",
                f"{steady:.0f}",
                f"{full:,}",
                f"{hours:.2f} h",
                f"{hours * seeds:.1f} h",
            ]
        )
    est = md_table(
        ["env", "algorithm", "measured at", "steady env-steps/s", "full budget", "per run", f"{seeds} seeds (sum)"],
        est_rows,
    )
    m = machine()
    lines = [
        "# nashmp MDPO vs Stable-Baselines3 (PPO, SAC)",
        "",
        f"Written by `benchmarks/rl_vs_sb3.py` ({command_line()}); runs from the cache `{_rel(cache)}`.",
        f"Stable-Baselines3 {sb3_version()}, torch {_torch_version()}, gymnasium {_gym_version()}, "
        f"{m['cpu']}, {m['cores']} cores, `--workers {workers}` (1 torch thread per run); nashmp at {m['nashmp']}.",
        "",
        "Final eval return: mean ± sample std over seeds of the per-seed mean of "
        "deterministic evaluation episodes (seeds 10000+i, frozen observation normalisation). env-steps/s: training "
        "steps / wall time of `learn()`, runs sharing the machine with other jobs.",
        "",
        table,
        "",
        "## Hyper-parameters",
        "",
        *[f"* **{a}**: {h}" for a, h in HYPERPARAMETERS.items()],
        "",
        "## Wall-time estimate for the default budgets",
        "",
        "Steady env-steps/s = median per-interval speed over the second half of the post-warm-up part of each run, "
        "mean over seeds; the estimate adds the warm-up (random actions) at its measured speed. The speeds were "
        f"measured with {workers} runs in parallel, so the last column divided by {workers} approximates the wall time "
        "with the same `--workers` and machine load.",
        "",
        est,
        "",
        "## Learning curves",
        "",
        *[f"![{p.stem}]({os.path.relpath(p, results)})" for p in images],
        "",
    ]
    (results / "rl_vs_sb3.md").write_text("\n".join(lines))
    meta = {
        "command": command_line(),
        "machine": m,
        "stable_baselines3": sb3_version(),
        "torch": _torch_version(),
        "gymnasium": _gym_version(),
        "hyperparameters": HYPERPARAMETERS,
        "eval_protocol": {
            "episodes": "per run, see eval_episodes",
            "reset_seeds": f"{EVAL_SEED}+i",
            "action": "deterministic",
        },
        "curve": f"mean return of the last {CURVE_WINDOW} training episodes",
        "runs": len(runs),
        "summary": summary,
        "images": [_rel(p) for p in images],
    }
    (results / "rl_vs_sb3_meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    print(table)
    print("\n" + est)
    for p in images:
        print(f"{_rel(p)}: {p.stat().st_size / 1024:.0f} KB")


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _torch_version() -> str:
    import torch

    return torch.__version__


def _gym_version() -> str:
    import gymnasium

    return gymnasium.__version__


# ------------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--envs", nargs="+", default=None, help="default: Pendulum-v1 HalfCheetah-v5 Hopper-v5")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    ap.add_argument("--onpolicy-steps", type=int, default=None, help="MDPO and PPO budget (default 1_000_000)")
    ap.add_argument("--offpolicy-steps", type=int, default=None, help="MDPO-off and SAC budget (default 200_000)")
    ap.add_argument("--algos", nargs="+", choices=list(ALGOS), default=list(ALGOS))
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (processes), 1 torch thread each")
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
        "outputs in runs/rl_vs_sb3_quick/",
    )
    ap.add_argument("--force", action="store_true", help="re-run runs that are already in the cache")
    ap.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the cache")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--img-dir", type=Path, default=None)
    ap.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS/OMP/MKL threads (0: library default)")
    args = ap.parse_args(argv)
    reexec_with_blas_threads(args.blas_threads)

    q = args.quick
    envs = args.envs or (["Pendulum-v1"] if q else ["Pendulum-v1", "HalfCheetah-v5", "Hopper-v5"])
    seeds = args.seeds or (2 if q else 3)
    on_steps = args.onpolicy_steps or (2 * N_STEPS if q else 1_000_000)
    off_steps = args.offpolicy_steps or (1_500 if q else 200_000)
    ls = args.learning_starts if args.learning_starts is not None else (1_000 if q else None)  # quick: 500 updates
    episodes = args.eval_episodes or (2 if q else 10)
    base = ROOT / "runs" / "rl_vs_sb3_quick" if q else None
    cache = args.cache_dir or (base / "cache" if base else ROOT / "runs" / "rl_vs_sb3")
    results = args.results_dir or (base / "results" if base else ROOT / "benchmarks" / "results")
    img = args.img_dir or (base / "img" if base else ROOT / "docs" / "img" / "rl")
    budgets = {"on-policy": 1_000_000, "off-policy": 200_000}

    if not args.report_only:
        tasks = []
        for env in envs:
            for seed in range(seeds):
                for algo in args.algos:  # interleaved: nashmp and SB3 runs see the same machine load
                    steps = budget(algo, on_steps if ALGOS[algo][0] == "on-policy" else off_steps)
                    key = run_key(env, algo, steps, seed, episodes, ls)
                    if not args.force and (cache / f"{key}.json").is_file():
                        continue
                    tasks.append({"env": env, "algo": algo, "steps": steps, "seed": seed, "eval_episodes": episodes,
                                  "learning_starts": ls, "key": key, "cache": str(cache)})  # fmt: skip
        tasks.sort(key=lambda t: -nominal_cost(t))  # stable: nashmp/SB3 stay interleaved
        print(f"{len(tasks)} runs to do with {args.workers} workers; cache {_rel(cache)}", flush=True)
        t0 = time.perf_counter()
        ctx = mp.get_context("spawn")
        with ctx.Pool(max(1, args.workers), maxtasksperchild=1) as pool:
            for i, r in enumerate(pool.imap_unordered(run_one, tasks), 1):
                print(
                    f"[{i}/{len(tasks)} {time.perf_counter() - t0:7.0f}s] {r['env']} {r['algo']} seed {r['seed']} "
                    f"{r['steps_done']:,} steps: eval {r['eval_mean']:.1f} ± {r['eval_std']:.1f}, "
                    f"{r['sps']:.0f} steps/s, {r['train_wall_s']:.0f}s",
                    flush=True,
                )
    report(cache, results, img, budgets, args.workers, seeds)


if __name__ == "__main__":
    main()
