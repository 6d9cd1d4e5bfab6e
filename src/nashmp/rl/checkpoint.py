"""Checkpoints shared by the RL agents: everything needed to continue a run bit for bit.

An agent lists its ``torch`` objects with a ``state_dict`` in ``STATEFUL`` and keeps the runtime fields
``env``, ``obs``, ``reset_next``, ``rng``, ``returns`` and ``progress``; ``extra`` carries the rest
(a replay buffer, a private torch generator). Files are written atomically, so a run killed while
saving keeps its previous checkpoint.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .envs import env_state, restore_env_state

__all__ = ["save_agent", "read_checkpoint", "load_agent_state"]

_RUNTIME = ("obs", "reset_next", "returns", "progress")


def save_agent(agent: Any, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write config, ``STATEFUL`` state dicts, env (with physics), RNGs, counters and ``extra`` to ``path``."""
    blob = {
        "config": asdict(agent.cfg),
        "stateful": {name: getattr(agent, name).state_dict() for name in agent.STATEFUL},
        "env": pickle.dumps(agent.env),
        "env_state": env_state(agent.env),
        "np_rng": agent.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "extra": extra or {},
        **{k: getattr(agent, k) for k in _RUNTIME},
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(blob, buf)
    tmp = p.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(p)
    return p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary (its ``config`` builds the agent before :func:`load_agent_state`)."""
    return torch.load(Path(path), weights_only=False)


def load_agent_state(agent: Any, blob: dict[str, Any]) -> dict[str, Any]:
    """Restore what :func:`save_agent` wrote into a freshly built ``agent``; returns ``extra``."""
    for name, state in blob["stateful"].items():
        getattr(agent, name).load_state_dict(state)
    agent.env.close()
    agent.env = pickle.loads(blob["env"])
    restore_env_state(agent.env, blob["env_state"])
    agent.rng.bit_generator.state = blob["np_rng"]
    torch.set_rng_state(blob["torch_rng"])
    for k in _RUNTIME:
        setattr(agent, k, blob[k])
    return blob["extra"]
