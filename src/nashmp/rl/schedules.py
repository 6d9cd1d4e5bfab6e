r"""The schedules of on-policy MDPO, as small pure functions: the KL weight, learning-rate annealing and the
adaptive (KL-targeted) actor step size. :class:`~nashmp.rl.mdpo.MDPO` calls them once per iteration k
(k = 1 … N, N = ``total_steps // n_steps``); the tests check each formula directly.

* **KL weight** (the release's schedule, optionally capped): t_k = 1 − (k−1)/K floored at 1/K, and the
  weight of the KL term is

  .. math:: w_k = \min\big(1/\max(1 - (k-1)/K,\ 1/K),\ w_{\max}\big),

  K = ``schedule_steps // n_steps`` (at least 1). Uncapped, w rises from 1 to K: 488 at the end of a
  1M-step run of 2048-step iterations. ``kl_weight_max`` = w_max (None: no cap).
* **Linear annealing** (``anneal_lr``; CleanRL's and SB3's PPO recipe): both Adam step sizes are multiplied
  by :math:`f_k = 1 - (k-1)/N` in iteration k, so the first iteration uses the full rate and the last 1/N of it.
* **Adaptive actor step size** (``kl_target`` = δ; the rl_games "adaptive" schedule, applied once per
  iteration on the *measured* KL(π_{k+1}‖π_k) rather than per minibatch): after iteration k, with d_k that KL,

  .. math:: \eta_{k+1} = \mathrm{clip}\big(\eta_k / 1.5\ \text{if}\ d_k > 2\delta;\ \ 1.5\,\eta_k\ \text{if}
     \ d_k < \delta/2;\ \ \eta_k\ \text{otherwise},\ [\eta_{\min}, \eta_{\max}]\big),

  starting from η_1 = ``lr``. The actor's step size in iteration k is η_k · f_k (f_k = 1 without annealing).
  A NaN KL leaves η unchanged. The critic keeps ``vf_lr`` · f_k: its loss has no KL term.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameterError
from ..games.game import check_positive

__all__ = ["KL_LR_FACTOR", "KL_BAND", "kl_weight", "anneal_factor", "adapt_lr", "check_schedule_fields"]

#: the adaptive rule's multiplicative step and the width of its dead band (rl_games' values)
KL_LR_FACTOR, KL_BAND = 1.5, 2.0


def kl_weight(k: int, K: int, cap: float | None = None) -> float:
    """w_k = min(1/t_k, cap) with t_k = max(1 − (k−1)/K, 1/K), k counting from 1 (see the module docstring)."""
    w = 1.0 / max(1.0 - (k - 1) / K, 1.0 / K)
    return w if cap is None else min(w, cap)


def anneal_factor(k: int, num_iterations: int) -> float:
    """f_k = 1 − (k−1)/N: 1 in the first iteration, 1/N in the last (never 0, as in CleanRL's PPO)."""
    return 1.0 - (k - 1) / max(num_iterations, 1)


def adapt_lr(lr: float, kl: float, target: float, lr_min: float, lr_max: float) -> float:
    """η_{k+1} from η_k = ``lr`` and the measured KL d_k = ``kl``: ÷1.5 above 2·target, ×1.5 below target/2,
    clipped to [lr_min, lr_max]; unchanged inside the band (and for a NaN KL)."""
    if kl > KL_BAND * target:
        lr = lr / KL_LR_FACTOR
    elif kl < target / KL_BAND:
        lr = lr * KL_LR_FACTOR
    return min(max(lr, lr_min), lr_max)


def check_schedule_fields(cfg: Any) -> None:
    """One-line :class:`InvalidParameterError` for a bad ``kl_target``, ``lr_min``/``lr_max``, ``kl_weight_max``,
    ``clip_obs``, ``clip_reward`` or ``anneal_lr`` of an :class:`~nashmp.rl.mdpo.MDPOConfig`."""
    if type(cfg.anneal_lr) is not bool:
        raise InvalidParameterError(f"anneal_lr must be true or false, got {cfg.anneal_lr!r}.")
    for name in ("kl_target", "kl_weight_max", "clip_obs", "clip_reward"):
        value = getattr(cfg, name)
        if value is not None:
            check_positive(name, value, " (None turns it off)")
    check_positive("lr_min", cfg.lr_min)
    check_positive("lr_max", cfg.lr_max)
    if cfg.lr_min > cfg.lr_max:
        raise InvalidParameterError(f"need lr_min ≤ lr_max, got lr_min={cfg.lr_min}, lr_max={cfg.lr_max}.")
    if cfg.kl_target is not None and not cfg.lr_min <= cfg.lr <= cfg.lr_max:
        raise InvalidParameterError(
            f"with kl_target the actor's lr ({cfg.lr}) must lie in [lr_min, lr_max] = [{cfg.lr_min}, {cfg.lr_max}]."
        )
