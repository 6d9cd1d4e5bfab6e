"""Vectorised gymnasium environments that can be checkpointed and resumed exactly.

``gym.make_vec`` and some vector wrappers hold closures that cannot be pickled, so we build a
:class:`gymnasium.vector.SyncVectorEnv` from a module-level factory and use only picklable wrappers
(actions are clipped by the agent, as in MDPO's release). Pure-Python environments pickle with their
state; MuJoCo environments re-create their model on unpickling, so :func:`env_state` /
:func:`restore_env_state` also carry ``qpos``/``qvel`` and every random generator.

Each environment is ``gym.make(env_id, **env_kwargs)`` wrapped, innermost first, by the named
``wrappers``: classes of ``gymnasium.wrappers`` from the allow-list :data:`WRAPPERS` only, never a module
path (a wrapper name also reaches us from a checkpoint's config, which is untrusted), with keyword arguments
written ``Name:key=value,key=value`` (values JSON literals).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from ..errors import InvalidParameterError

__all__ = [
    "WRAPPERS",
    "make_env",
    "make_vec_env",
    "check_env_id",
    "check_env_kwargs",
    "check_run_fields",
    "parse_wrapper",
    "env_state",
    "restore_env_state",
    "observation_normalizer",
]


def _array(value: Any) -> Any:
    """JSON lists become float32 arrays (bounds per dimension); numbers stay numbers."""
    return np.asarray(value, dtype=np.float32) if isinstance(value, list) else value


def _shape(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: the gymnasium.wrappers classes a run may name, each with the conversion its JSON arguments need. Left out:
#: wrappers that take callables (TransformObservation, ...), the normalisers (``normalize`` already adds them
#: at the vector level, with checkpointed statistics) and image-only ones.
WRAPPERS: dict[str, dict[str, Any]] = {
    "ClipAction": {},
    "RescaleAction": {"min_action": _array, "max_action": _array},
    "ClipReward": {"min_reward": _array, "max_reward": _array},
    "TimeLimit": {"max_episode_steps": None},
    "TimeAwareObservation": {"flatten": None, "normalize_time": None},
    "FlattenObservation": {},
    "FrameStackObservation": {"stack_size": None, "padding_type": None},
    "DelayObservation": {"delay": None},
    "RescaleObservation": {"min_obs": _array, "max_obs": _array},
    "StickyAction": {"repeat_action_probability": None, "repeat_action_duration": _shape},
    "ReshapeObservation": {"shape": _shape},
}


def _split_top_level(text: str) -> list[str]:
    """``a=1,b=[1,2]`` → ``['a=1', 'b=[1,2]']``: commas inside brackets or quotes belong to the value."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quote = not quote
        elif not quote and ch in "[{":
            depth += 1
        elif not quote and ch in "]}":
            depth -= 1
        elif not quote and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def parse_wrapper(spec: str) -> tuple[str, dict[str, Any]]:
    """``'ClipReward:min_reward=-1,max_reward=1'`` → ``('ClipReward', {'min_reward': -1, 'max_reward': 1})``."""
    if not isinstance(spec, str):
        raise InvalidParameterError(f"a wrapper is named by a string, got {spec!r}.")
    name, _, args = spec.partition(":")
    name = name.strip()
    if name not in WRAPPERS:
        raise InvalidParameterError(
            f"unknown wrapper {name!r}; allowed gymnasium.wrappers classes: {', '.join(sorted(WRAPPERS))}."
        )
    kwargs: dict[str, Any] = {}
    for item in _split_top_level(args):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InvalidParameterError(f"wrapper {spec!r}: arguments are written Name:key=value,key=value.")
        if key not in WRAPPERS[name]:
            allowed = ", ".join(WRAPPERS[name]) or "none"
            raise InvalidParameterError(f"wrapper {name} has no argument {key!r} (its arguments: {allowed}).")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value.strip()  # a bare word (padding_type=zero) is a string
    return name, kwargs


def _plain(value: Any) -> bool:
    """A JSON literal: what ``--env-kwargs`` parses and a checkpoint may carry (never an object)."""
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def check_env_kwargs(env_kwargs: Any) -> None:
    """Raise :class:`InvalidParameterError` unless ``env_kwargs`` maps names to JSON literals."""
    if type(env_kwargs) is not dict or not all(type(k) is str and k.isidentifier() for k in env_kwargs):
        raise InvalidParameterError(f"env_kwargs must map keyword names to values, got {env_kwargs!r}.")
    for key, value in env_kwargs.items():
        if not _plain(value):
            raise InvalidParameterError(
                f"env_kwargs[{key!r}] = {value!r} is not a JSON literal (number, string, bool, null, list, dict)."
            )


def make_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[str] = (),
    render_mode: str | None = None,
) -> gym.Env:
    """One environment (module-level so that vector environments pickle): make, then wrap innermost first."""
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = gym.make(env_id, **kwargs)
    for spec in wrappers:
        name, args = parse_wrapper(spec)
        convert = WRAPPERS[name]
        args = {k: convert[k](v) if convert[k] else v for k, v in args.items()}
        env = getattr(gym.wrappers, name)(env, **args)
    return env


def check_env_id(env_id: str, env_kwargs: dict[str, Any] | None = None, wrappers: Sequence[str] = ()) -> gym.Env:
    """Build one environment or raise :class:`InvalidParameterError` with the reason."""
    where = f"environment {env_id!r}" + (f" with env_kwargs {env_kwargs}" if env_kwargs else "")
    try:
        return make_env(env_id, env_kwargs, wrappers)
    except gym.error.Error as exc:
        raise InvalidParameterError(f"cannot make {where}: {exc}") from None
    except ImportError as exc:  # e.g. MuJoCo missing
        raise InvalidParameterError(f"{where} needs a missing package: {exc}") from None
    except (TypeError, ValueError, AssertionError) as exc:  # a keyword the env (or a wrapper) does not take
        message = " ".join(str(exc).split())
        raise InvalidParameterError(f"cannot make {where} and wrappers {list(wrappers)}: {message}") from None


def make_vec_env(
    env_id: str,
    num_envs: int,
    *,
    normalize: bool,
    gamma: float,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[str] = (),
    clip_obs: float | None = None,
    clip_reward: float | None = None,
) -> gym.vector.VectorEnv:
    """Synchronous vector env with episode statistics and (optionally) observation/reward normalisation, the
    normalised values then clipped to ±``clip_obs`` / ±``clip_reward`` (SB3 VecNormalize's order; like its
    clips, part of the normalisation: without ``normalize`` nothing is clipped)."""
    # NEXT_STEP autoreset (gymnasium's default, the only one its normalisation wrappers accept): the step that
    # ends an episode returns the final observation, and the following step resets that sub-env (its action is
    # ignored). The agent masks those reset transitions out.
    factory = functools.partial(make_env, env_id, dict(env_kwargs or {}), tuple(wrappers))
    env: gym.vector.VectorEnv = gym.vector.SyncVectorEnv([factory] * num_envs)
    env = vw.RecordEpisodeStatistics(env)
    if not normalize:
        return env
    env = vw.NormalizeObservation(env)
    env = vw.NormalizeReward(env, gamma=gamma)
    if clip_obs is not None:  # gymnasium has no ClipObservation; np.clip through its TransformObservation
        env = vw.TransformObservation(env, functools.partial(np.clip, a_min=-clip_obs, a_max=clip_obs))
    if clip_reward is not None:
        env = vw.ClipReward(env, min_reward=-clip_reward, max_reward=clip_reward)
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
    """The observation-normalisation wrapper (``obs_rms``: running mean/var; ``epsilon``), if any."""
    current: Any = env
    while current is not None:
        if isinstance(current, vw.NormalizeObservation):
            return current
        current = getattr(current, "env", None)
    return None


def check_run_fields(cfg: Any) -> None:
    """The fields both MDPO configs share, checked before any environment is built: ``eval_every``, and
    ``env_kwargs`` / ``wrappers`` normalised in place (None — the dataclass default, since a default cannot be
    a mutable {} or [] — reads as none; a tuple of wrappers as its list)."""
    if type(cfg.eval_every) is not int or cfg.eval_every < 0:
        raise InvalidParameterError(
            f"eval_every must be an integer ≥ 0 (0: no periodic evaluation), got {cfg.eval_every!r}."
        )
    cfg.env_kwargs = {} if cfg.env_kwargs is None else cfg.env_kwargs
    if isinstance(cfg.wrappers, tuple):
        cfg.wrappers = list(cfg.wrappers)
    cfg.wrappers = [] if cfg.wrappers is None else cfg.wrappers
    check_env_kwargs(cfg.env_kwargs)
    if not isinstance(cfg.wrappers, list):
        raise InvalidParameterError(f"wrappers must be a list of wrapper names, got {cfg.wrappers!r}.")
    for spec in cfg.wrappers:
        parse_wrapper(spec)
