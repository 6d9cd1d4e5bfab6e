"""``nashmp rl train``: MDPO on a gymnasium environment, with checkpoints, resume and a learning curve."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from .._fields import coerce_fields
from ..errors import InvalidParameterError
from ..games.game import check_positive_int
from ..rl.checkpoint import read_checkpoint

__all__ = ["rl_train", "plot_learning_curve"]


def plot_learning_curve(history: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    steps = [h["global_step"] for h in history]
    ax.plot(steps, [h["charts/episodic_return"] for h in history], lw=1.4)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return (mean of last 10 training episodes)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rl_train(
    algo: str,
    env_id: str | None,
    steps: int,
    seed: int | None,
    out: Path,
    *,
    params: dict[str, Any],
    resume: bool,
    overwrite: bool = False,
    checkpoint_every: int,
    eval_episodes: int,
    progress: bool,
) -> dict[str, Any]:
    """Train (or resume) and write ``metrics.csv``, ``curve.png``, ``checkpoint.pt`` and ``eval.json``."""
    from ..rl.mdpo import MDPO, MDPOConfig
    from ..rl.mdpo_off import MDPOOff, MDPOOffConfig

    agents: dict[str, tuple[Any, Any]] = {"mdpo": (MDPO, MDPOConfig), "mdpo-off": (MDPOOff, MDPOOffConfig)}
    if algo not in agents:
        raise ValueError(f"unknown RL algorithm {algo!r}; available: {sorted(agents)}")
    cls, config_cls = agents[algo]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:  # checked here, so that a TypeError inside a run is never mistaken for a bad --param
        raise InvalidParameterError(f"unknown --param {unknown} for {algo}; its fields are {sorted(fields)}.")
    params = coerce_fields(config_cls, params)  # `--param normalize=False` is the bool False, not a string
    flagged = {"env_id": "--env", "seed": "--seed", "total_steps": "--steps", "eval_episodes": "--eval-episodes"}
    for key in sorted(set(params) & set(flagged)):
        raise InvalidParameterError(f"--param {key}=... is set by {flagged[key]}; use that flag instead.")
    check_positive_int("steps", steps)
    check_positive_int("eval_episodes", eval_episodes)
    check_positive_int("checkpoint_every", checkpoint_every)
    if seed is not None and seed < 0:
        raise InvalidParameterError(f"--seed must be ≥ 0, got {seed}.")
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"--resume given but no checkpoint at {ckpt}")
        blob = read_checkpoint(ckpt)
        saved = blob["config"]
        for flag, given, key in (("--env", env_id, "env_id"), ("--seed", seed, "seed")):
            if given is not None and given != saved.get(key):
                raise InvalidParameterError(
                    f"{flag} {given!r} differs from the checkpoint's {saved.get(key)!r}; drop {flag} to resume, "
                    "or start a new run in another --out."
                )
        agent = cls.load(ckpt, blob=blob, total_steps=steps, **({"env_id": env_id} if env_id else {}), **params)
    else:
        cfg = config_cls(env_id=env_id or "Pendulum-v1", total_steps=steps, seed=seed or 0,
                         eval_episodes=eval_episodes, **params)  # fmt: skip
        agent = cls(cfg)  # validates the environment first
        if algo == "mdpo" and steps < cfg.n_steps:
            raise InvalidParameterError(
                f"--steps {steps} is less than one iteration of mdpo (n_steps = {cfg.n_steps}): nothing would train."
            )
        if ckpt.exists() and not overwrite:
            raise InvalidParameterError(
                f"{out} already holds a run ({ckpt.name}); pass --resume to continue it or --overwrite to start afresh."
            )
    # on-policy checkpoints count iterations, off-policy ones environment steps (and log every ~2% of the run)
    extra = {} if algo == "mdpo" else {"log_every": max(1, min(1000, steps // 50))}
    every = checkpoint_every if algo == "mdpo" else checkpoint_every * 1000
    history = agent.learn(checkpoint_dir=out, checkpoint_every=every, progress=progress, **extra)
    agent.save(ckpt)
    keys = sorted({k for h in history for k in h})
    with (out / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    if history:
        plot_learning_curve(history, out / "curve.png", f"{algo} on {agent.cfg.env_id}, seed {agent.cfg.seed}")
    returns = agent.evaluate(eval_episodes)
    report = {
        "algo": algo,
        "env": agent.cfg.env_id,
        "steps": agent.progress.global_step,
        "seed": agent.cfg.seed,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "eval_episodes": len(returns),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report
