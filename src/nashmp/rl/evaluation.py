"""Deterministic evaluation episodes of a policy, during training and after it (``nashmp rl eval``).

One protocol everywhere: a fresh environment built as in training (id, ``gym.make`` keywords, wrappers),
episode ``i`` reset with seed ``seed + i`` (10 000 + i by default), the mean action, observation
normalisation frozen at the policy's statistics, raw (unnormalised) rewards summed to the episode's end.
It draws from no training random generator, so evaluating during a run leaves the run unchanged (tested).

Video: ``video_dir`` records every episode through gymnasium's ``RecordVideo`` (``render_mode="rgb_array"``;
needs moviepy, and for MuJoCo without a display ``MUJOCO_GL=egl``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    from .policy_file import Policy

__all__ = ["EVAL_SEED", "EvalResult", "evaluate_policy", "check_video_support", "record_eval"]

EVAL_SEED = 10_000


@dataclass
class EvalResult:
    """Returns and lengths of the evaluation episodes, in order."""

    returns: np.ndarray
    lengths: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {
            "episodes": len(self.returns),
            "mean_return": float(self.returns.mean()),
            "std_return": float(self.returns.std()),
            "returns": [float(r) for r in self.returns],
            "lengths": [int(n) for n in self.lengths],
        }


def check_video_support() -> None:
    """Refuse ``--video`` in one line when moviepy (what RecordVideo writes files with) is missing."""
    if importlib.util.find_spec("moviepy") is None:
        raise InvalidParameterError(
            "--video needs moviepy, which is not installed: pip install moviepy (MuJoCo without a display also "
            "needs MUJOCO_GL=egl)."
        )


def evaluate_policy(
    policy: Policy,
    episodes: int,
    *,
    seed: int = EVAL_SEED,
    deterministic: bool = True,
    video_dir: str | Path | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes of ``policy`` on a fresh copy of its environment (see the module docstring)."""
    if type(episodes) is not int or episodes < 1:
        raise InvalidParameterError(f"episodes must be a positive integer, got {episodes!r}.")
    if video_dir is not None:
        check_video_support()
        from gymnasium.wrappers import RecordVideo

        env: Any = RecordVideo(
            policy.make_env(render_mode="rgb_array"),
            str(video_dir),
            episode_trigger=lambda _: True,
            name_prefix="eval",
        )
    else:
        env = policy.make_env()
    returns, lengths = [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, steps, finished = 0.0, 0, False
            while not finished:
                obs, r, te, tr, _ = env.step(policy.predict(obs, deterministic=deterministic))
                total, steps, finished = total + float(r), steps + 1, bool(te or tr)
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return EvalResult(np.asarray(returns), np.asarray(lengths))


def record_eval(agent: Any, row: dict[str, float], out_dir: str | Path | None) -> None:
    """A periodic evaluation inside ``learn``: ``eval/*`` into ``row``; a new best return is kept in the agent's
    progress (so a resumed run compares against it) and, with a run folder, as ``best_policy.pt``."""
    result = evaluate_policy(agent.policy(), agent.cfg.eval_episodes)
    mean = float(result.returns.mean())
    row["eval/mean_return"], row["eval/std_return"] = mean, float(result.returns.std())
    if mean > agent.progress.best_eval:
        agent.progress.best_eval = mean
        if out_dir is not None:
            agent.save_policy(Path(out_dir) / "best_policy.pt")
