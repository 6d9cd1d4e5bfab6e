r"""Pure torch losses of the approximate and LLM layers (no state, no sampling: easy to test by hand).

Notation: ``logp_y`` = log π_θ(y|x) of the sampled response (differentiable), anchors are pairs
``(w, log a(y|x))`` of a weight and a frozen log-probability of the same response — π_ref with weight
β, the prox centre π_k with weight β/η — exactly the anchors of the exact :func:`~nashmp.algorithms.prox_step`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..online.estimators import grouped_ipo_loss, token_pg_loss

__all__ = ["prox_pg_loss", "sampled_prox_loss", "exact_prox_objective", "masked_kl", "ipo_loss"]


def masked_kl(logp: Tensor, logq: Tensor) -> Tensor:
    """Analytic KL(p‖q) over the last axis; entries with p = 0 (``logp = -inf``) contribute 0."""
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1)


def prox_pg_loss(
    logp_y: Tensor, reward: Tensor, baseline: Tensor | float, anchors: Sequence[tuple[float, Tensor]]
) -> Tensor:
    r"""REINFORCE surrogate of the KL-regularised bandit :math:`J(\theta)=\mathbb E_{y\sim\pi_\theta}[r(y)]-\sum_i w_i\mathrm{KL}(\pi_\theta\|a_i)`.

    .. math::
        \mathcal L(\theta) = -\frac1B\sum_b \log\pi_\theta(y_b)\Big[r_b - b - \sum_i w_i\,
        \mathrm{sg}\big(\log\pi_\theta(y_b)-\log a_i(y_b)\big)\Big],

    whose gradient is an unbiased estimate of :math:`-\nabla J` for :math:`y_b\sim\pi_\theta` (the
    baseline and the score-function identity :math:`\mathbb E[\nabla\log\pi]=0` remove the rest).
    """
    # the one-token case (T = 1) of the family's estimator: one implementation for every layer
    advantage = torch.as_tensor(reward - baseline, dtype=logp_y.dtype)
    ones = torch.ones_like(logp_y)[:, None]
    return token_pg_loss(logp_y[:, None], ones, advantage, [(w, log_a[:, None]) for w, log_a in anchors])


def sampled_prox_loss(
    logp: Tensor,
    y: Tensor,
    reward: Tensor,
    baseline: Tensor | float,
    anchors: Sequence[tuple[float, Tensor]],
    kl_estimator: str = "sampled",
) -> Tensor:
    """The prox sub-problem's loss on a batch: ``logp`` (B, n) full log-probs, ``y`` (B,) sampled responses.

    ``anchors`` hold full ``(B, n)`` log-probabilities. ``kl_estimator="sampled"`` puts the KL terms inside
    the REINFORCE advantage (what an LLM must do); ``"analytic"`` adds the exact KLs instead.
    """
    logp_y = logp.gather(1, y[:, None])[:, 0]
    if kl_estimator == "sampled":
        return prox_pg_loss(logp_y, reward, baseline, [(w, a.gather(1, y[:, None])[:, 0]) for w, a in anchors])
    loss = prox_pg_loss(logp_y, reward, baseline, [])
    for w, a in anchors:
        loss = loss + w * masked_kl(logp, a).mean()
    return loss


def exact_prox_objective(
    logp: Tensor, payoff: Tensor, anchors: Sequence[tuple[float, Tensor]], weights: Tensor | None = None
) -> Tensor:
    r"""Exact :math:`J=\langle\pi_\theta,g\rangle-\sum_i w_i\mathrm{KL}(\pi_\theta\|a_i)`, averaged over the batch.

    ``logp``, ``payoff`` and the anchors' log-probabilities are full ``(B, n)`` distributions; ``weights``
    (B,) replace the plain mean (context weights ρ). The gradient in softmax logits is
    :math:`\pi\odot(A-\langle\pi,A\rangle)`, :math:`A=g-\sum_i w_i(\log\pi-\log a_i)`.
    """
    value = (logp.exp() * payoff).sum(-1)
    for w, log_a in anchors:
        value = value - w * masked_kl(logp, log_a)
    return value.mean() if weights is None else (weights * value).sum()


def ipo_loss(logp_y: Tensor, logp_yp: Tensor, ref_y: Tensor, ref_yp: Tensor, target: Tensor, beta: float) -> Tensor:
    r"""Online-IPO squared loss :math:`\big[h_\theta(y,y')-(o-\tfrac12)/\beta\big]^2`, with
    :math:`h_\theta=\log\frac{\pi_\theta(y)\pi_{\rm ref}(y')}{\pi_{\rm ref}(y)\pi_\theta(y')}` and ``target`` = o."""
    rows = lambda a, b: torch.stack([a, b], 1).reshape(-1)  # noqa: E731  (pairs as groups of k = 2)
    return grouped_ipo_loss(rows(logp_y, logp_yp), rows(ref_y, ref_yp), target.reshape(-1, 1), beta, 2)
