"""Reinforcement learning with Mirror Descent Policy Optimization (needs torch and gymnasium).

``import nashmp.rl.mdpo`` loads torch and gymnasium; ``import nashmp`` does not. The names below load on
first use: ``nashmp.rl.load_policy(path)`` reads a light policy file (or a checkpoint) for ``predict``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MDPO", "MDPOConfig", "MDPOOff", "MDPOOffConfig", "Policy", "load_policy", "evaluate_policy"]

_WHERE = {
    "MDPO": "mdpo",
    "MDPOConfig": "mdpo",
    "MDPOOff": "mdpo_off",
    "MDPOOffConfig": "mdpo_off",
    "Policy": "policy_file",
    "load_policy": "policy_file",
    "evaluate_policy": "evaluation",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:  # lazily, so that `import nashmp.rl` stays free of torch and gymnasium
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
