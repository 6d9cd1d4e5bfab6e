"""Vectorised gymnasium environments that can be checkpointed and resumed exactly.

``gym.make_vec`` and some vector wrappers hold closures that cannot be pickled, so we build a
:class:`gymnasium.vector.SyncVectorEnv` from a module-level factory and use only picklable wrappers
(actions are clipped by the agent, as in MDPO's release). Pure-Python environments pickle with their
state; MuJoCo environments re-create their model on unpickling, so :func:`env_state` /
:func:`restore_env_state` also carry ``qpos``/``qvel`` and every random generator.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from ..errors import InvalidParameterError

__all__ = ["make_env", "make_vec_env", "check_env_id", "env_state", "restore_env_state", "observation_normalizer"]


def make_env(env_id: str) -> gym.Env:
    """One environment (module-level so that vector environments pickle)."""
    return gym.make(env_id)


def check_env_id(env_id: str) -> gym.Env:
    """Build one environment or raise :class:`InvalidParameterError` with the reason."""
    try:
        return make_env(env_id)
    except gym.error.Error as exc:
        raise InvalidParameterError(f"cannot make environment {env_id!r}: {exc}") from None
    except ImportError as exc:  # e.g. MuJoCo missing
        raise InvalidParameterError(f"environment {env_id!r} needs a missing package: {exc}") from None


def make_vec_env(env_id: str, num_envs: int, *, normalize: bool, gamma: float) -> gym.vector.VectorEnv:
    """Synchronous vector env with episode statistics and (optionally) observation/reward normalisation."""
    # NEXT_STEP autoreset (gymnasium's default, the only one its normalisation wrappers accept): the step that
    # ends an episode returns the final observation, and the following step resets that sub-env (its action is
    # ignored). The agent masks those reset transitions out.
    env: gym.vector.VectorEnv = gym.vector.SyncVectorEnv([functools.partial(make_env, env_id)] * num_envs)
    env = vw.RecordEpisodeStatistics(env)
    if normalize:
        env = vw.NormalizeObservation(env)
        env = vw.NormalizeReward(env, gamma=gamma)
    return env


def _sub_envs(env: gym.vector.VectorEnv) -> list[gym.Env]:
    return list(env.unwrapped.envs)  # type: ignore[attr-defined]


def env_state(env: gym.vector.VectorEnv) -> list[dict[str, Any]]:
    """Physics state and RNG of each sub-environment (what rebuilding a MuJoCo env loses).

    MuJoCo's full *integration* state (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, actuator
    activations, the constraint solver's warm start, ...) is saved, not only qpos/qvel: without the warm
    start the first step after a resume differs by ~1e-15 and contacts amplify it to O(1).
    """
    out = []
    for sub in _sub_envs(env):
        base = sub.unwrapped
        state: dict[str, Any] = {"rng": base.np_random.bit_generator.state}
        data, model = getattr(base, "data", None), getattr(base, "model", None)
        if data is not None and model is not None and hasattr(data, "qpos"):
            import mujoco

            kind = mujoco.mjtState.mjSTATE_INTEGRATION
            full = np.empty(mujoco.mj_stateSize(model, kind))
            mujoco.mj_getState(model, data, full, kind)
            state["mujoco_integration_state"] = full
        out.append(state)
    return out


def restore_env_state(env: gym.vector.VectorEnv, states: list[dict[str, Any]]) -> None:
    """Inverse of :func:`env_state`, applied to a freshly built copy of the same vector env."""
    for sub, state in zip(_sub_envs(env), states, strict=True):
        base = sub.unwrapped
        base.np_random.bit_generator.state = state["rng"]
        if "mujoco_integration_state" in state:
            import mujoco

            kind = mujoco.mjtState.mjSTATE_INTEGRATION
            full = np.asarray(state["mujoco_integration_state"], dtype=np.float64)
            if full.shape != (mujoco.mj_stateSize(base.model, kind),):  # type: ignore[attr-defined]
                raise ValueError("the saved MuJoCo state does not fit this environment's model")
            mujoco.mj_setState(base.model, base.data, full, kind)  # type: ignore[attr-defined]
            mujoco.mj_forward(base.model, base.data)  # type: ignore[attr-defined]


def observation_normalizer(env: gym.vector.VectorEnv) -> Any | None:
    """The running mean/std of the observation-normalisation wrapper, if any (for evaluation)."""
    current: Any = env
    while current is not None:
        if isinstance(current, vw.NormalizeObservation):
            return current.obs_rms
        current = getattr(current, "env", None)
    return None
