"""The light policy file and inference: only what ``predict`` needs, in the checkpoint's safe format.

``policy.pt`` holds the actor's weights, the frozen observation-normalisation statistics, the action space
and the environment it was trained on (id, ``gym.make`` keywords, wrappers) — no optimiser, critic, replay
buffer or environment state, so it stays small (a few hundred kB) whatever the run. Like a checkpoint it is
plain data written with ``torch.save`` and read with ``torch.load(weights_only=True)``: loading a crafted
file cannot run code. The network sizes are read from the weights' shapes, not trusted from metadata::

    policy = load_policy("runs/hc/policy.pt")
    action = policy.predict(obs, deterministic=True)     # one observation or a batch

:func:`load_policy` also accepts a full training checkpoint (``checkpoint.pt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InvalidParameterError
from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import _decode, _encode, checkpoint_algo, read_plain_file, write_atomic
from .envs import check_env_kwargs, make_env, parse_wrapper

__all__ = ["POLICY_FORMAT", "Policy", "load_policy"]

POLICY_FORMAT = "nashmp-rl-policy/1"


class Policy:
    """An actor with its frozen observation statistics and action space: ``predict`` and ``save``.

    ``actor`` is the agent's own module when the policy comes from a live agent (``agent.policy()``), so it
    follows further training; :meth:`save` freezes it into a file.
    """

    def __init__(
        self,
        algo: str,
        actor: nn.Module,
        action_space: gym.spaces.Box | gym.spaces.Discrete,
        obs_norm: dict[str, Any] | None,
        env: dict[str, Any],
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        self.algo, self.actor, self.action_space, self.obs_norm, self.env = algo, actor, action_space, obs_norm, env
        self.obs_dim = int(_first_weight(actor).shape[1])
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the actor saw them in training (float32, normalised with the frozen statistics, then
        clipped to ±clip where the run clipped them: ``clip_obs``)."""
        o = np.asarray(obs).astype(np.float32)
        if self.obs_norm is not None:  # the formula of gymnasium's NormalizeObservation
            norm = self.obs_norm
            o = ((o - norm["mean"]) / np.sqrt(norm["var"] + norm["epsilon"])).astype(np.float32)
            if norm.get("clip") is not None:
                o = np.clip(o, -norm["clip"], norm["clip"])
        return o

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation (shape ``obs_space``) or a batch (``(n, *obs_space)``).

        ``deterministic``: the mean action (squashed for off-policy MDPO; the most likely one for discrete
        actions); otherwise a sample drawn with the policy's own generator (never the training RNG).
        """
        arr = np.asarray(obs)
        single = arr.ndim == 1
        batch = arr[None] if single else arr
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim or not np.issubdtype(batch.dtype, np.number):
            raise InvalidParameterError(
                f"predict expects an observation of {self.obs_dim} numbers (or a batch of them), got shape {arr.shape}."
            )
        with torch.no_grad():
            act = self.actor.act  # Actor.act / TanhGaussianActor.act
            action = act(torch.as_tensor(self.normalize(batch)), deterministic, self.generator).numpy()  # type: ignore[operator]
        if isinstance(self.action_space, gym.spaces.Box) and self.algo == "mdpo":  # the Gaussian is unbounded
            action = np.clip(action, self.action_space.low, self.action_space.high)
        return action[0] if single else action

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The environment the policy was trained on (its id, ``gym.make`` keywords and wrappers)."""
        env_id, kwargs, wrappers = self.env["env_id"], self.env["env_kwargs"], self.env["wrappers"]
        if not isinstance(env_id, str) or ":" in env_id or env_id not in gym.registry:
            # the file is untrusted: an id "module:Env" would make gymnasium import that module
            raise CheckpointError(f"the policy's env_id {env_id!r} is not a registered gymnasium id.")
        try:
            check_env_kwargs(kwargs)
            for spec in wrappers:
                parse_wrapper(spec)
        except InvalidParameterError as exc:
            raise CheckpointError(f"the policy's environment settings are invalid: {exc}") from None
        return make_env(env_id, kwargs, wrappers, render_mode=render_mode)

    def save(self, path: str | Path) -> Path:
        """Write the light policy file (atomically)."""
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            action = {"kind": "discrete", "n": int(space.n)}
        else:
            action = {"kind": "box", "low": torch.as_tensor(space.low), "high": torch.as_tensor(space.high)}
        norm = None
        if self.obs_norm is not None:
            norm = {"mean": torch.as_tensor(self.obs_norm["mean"]), "var": torch.as_tensor(self.obs_norm["var"]),
                    "epsilon": float(self.obs_norm["epsilon"]), "clip": self.obs_norm.get("clip")}  # fmt: skip
            norm["clip"] = None if norm["clip"] is None else float(norm["clip"])  # a config may hold an int
        blob = {
            "format": POLICY_FORMAT,
            "algo": self.algo,
            "actor": {k: v.detach().clone() for k, v in self.actor.state_dict().items()},
            "action_space": action,
            "obs_norm": norm,
            "env": _encode(self.env),
        }
        return write_atomic(blob, path)


def _first_weight(actor: nn.Module) -> torch.Tensor:
    return next(p for name, p in actor.named_parameters() if name.endswith("weight"))


def _action_space(info: Any) -> gym.spaces.Box | gym.spaces.Discrete:
    if not isinstance(info, dict):
        raise CheckpointError("the policy file's action space is malformed.")
    if info.get("kind") == "discrete" and type(info.get("n")) is int and info["n"] > 0:
        return gym.spaces.Discrete(info["n"])
    low, high = info.get("low"), info.get("high")
    if info.get("kind") == "box" and isinstance(low, torch.Tensor) and isinstance(high, torch.Tensor):
        lo, hi = low.numpy().astype(np.float32), high.numpy().astype(np.float32)
        if lo.shape == hi.shape and lo.ndim == 1:
            return gym.spaces.Box(lo, hi, dtype=np.float32)
    raise CheckpointError("the policy file's action space is malformed.")


def _build_actor(algo: str, state: dict[str, torch.Tensor], space: gym.spaces.Box | gym.spaces.Discrete) -> nn.Module:
    """An actor of the sizes its weights have (input: first layer's columns, hidden: its rows)."""
    if algo == "mdpo":
        from .networks import Actor

        first = state.get("body.0.weight")
        if not isinstance(first, torch.Tensor) or first.ndim != 2:
            raise CheckpointError("the policy file holds no MDPO actor weights.")
        actor: nn.Module = Actor(int(first.shape[1]), space, int(first.shape[0]))
    elif algo == "mdpo-off":
        from .mdpo_off import TanhGaussianActor

        first = state.get("net.0.weight")
        if not isinstance(first, torch.Tensor) or first.ndim != 2 or not isinstance(space, gym.spaces.Box):
            raise CheckpointError("the policy file holds no off-policy MDPO actor weights.")
        act_dim = int(np.prod(space.shape))
        actor = TanhGaussianActor(int(first.shape[1]), act_dim, int(first.shape[0]), space.low, space.high)
    else:
        raise CheckpointError(f"the policy file names an unknown algorithm {algo!r}.")
    try:
        actor.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"the policy file's actor weights do not fit ({' '.join(str(exc).split())[:200]})."
        ) from None
    return actor.eval()


def _from_policy_blob(blob: dict[str, Any], path: Path) -> Policy:
    space = _action_space(blob.get("action_space"))
    state = blob.get("actor")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the policy file holds no actor weights.")
    actor = _build_actor(str(blob.get("algo")), state, space)
    norm = blob.get("obs_norm")
    obs_norm = None
    if norm is not None:
        try:
            obs_norm = {"mean": norm["mean"].numpy().astype(np.float64), "var": norm["var"].numpy().astype(np.float64),
                        "epsilon": float(norm["epsilon"]), "clip": norm.get("clip")}  # fmt: skip
        except (KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{path}: the policy file's observation statistics are malformed.") from None
        clip = obs_norm["clip"]  # absent from files written before clip_obs: no clipping
        if clip is not None and (type(clip) is not float or not np.isfinite(clip) or clip <= 0):
            raise CheckpointError(f"{path}: the policy file's observation clip {clip!r} is not a number > 0.")
    try:
        env = _decode(blob.get("env"))
    except (KeyError, TypeError, ValueError, AttributeError):
        env = None
    if not isinstance(env, dict) or set(env) != {"env_id", "env_kwargs", "wrappers"}:
        raise CheckpointError(f"{path}: the policy file does not say which environment it was trained on.")
    policy = Policy(str(blob["algo"]), actor, space, obs_norm, env)
    if obs_norm is not None and obs_norm["mean"].shape != (policy.obs_dim,):
        raise CheckpointError(f"{path}: the observation statistics do not fit the actor's input.")
    return policy


def load_policy(path: str | Path) -> Policy:
    """A :class:`Policy` from a light policy file (``policy.pt``, ``best_policy.pt``) or a ``checkpoint.pt``."""
    p = Path(path)
    blob = read_plain_file(p, "nashmp policy or checkpoint")
    if blob.get("format") == POLICY_FORMAT:
        return _from_policy_blob(blob, p)
    if blob.get("format") == CHECKPOINT_FORMAT:
        from .checkpoint import read_checkpoint

        full = read_checkpoint(p, blob=blob)
        if checkpoint_algo(full) == "mdpo":
            from .mdpo import MDPO

            return MDPO.load(p, blob=full).policy()
        from .mdpo_off import MDPOOff

        return MDPOOff.load(p, blob=full).policy()
    raise CheckpointError(f"{p} is neither a nashmp policy file ({POLICY_FORMAT}) nor an RL checkpoint.")
