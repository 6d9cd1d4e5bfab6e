r"""Pure estimator functions of the online family (no state, no sampling), shared by the approximate layer
and the LLM trainer.

Notation. A batch holds B prompts with k completions each, stored row-major (row ``b·k + i``). Per-token
log-probabilities are ``(B·k, T)`` tensors with a 0/1 ``mask``; a sequence log-probability is their masked
sum, so a tabular (one-token) policy is the case T = 1.

**Self-play rewards** (:func:`selfplay_advantages`). With y_1..y_k ~ π i.i.d. and all k(k−1)/2 pairs
compared, :math:`p_{ij}=\mathcal P(y_i\succ y_j)` (so :math:`p_{ji}=1-p_{ij}`), the advantage of y_i is

.. math:: A_i=\frac1{k-1}\sum_{j\ne i}p_{ij}-\tfrac12,\qquad \mathbb E[A_i\mid y_i]=\mathcal P(y_i\succ\pi)-\tfrac12,

unbiased because the other completions are independent of y_i. ½ is the exact per-prompt mean of
:math:`\mathcal P(y\succ\pi)` for y ~ π (antisymmetry), hence the best constant baseline. (Subtracting the
leave-one-out mean of the *other rewards* instead would correlate the baseline with y_i, through
:math:`p_{ji}`, and inflate the gradient by k/(k−1); ``tests/test_online.py`` shows both by enumeration.)

**Opponent rewards** (:func:`paired_advantages`). With y_i ~ π and y'_i ~ μ (another policy), the pairs
(y_i, y'_i) are compared once each (k queries per prompt) and the baseline is the leave-one-out mean of the
other rewards of the prompt, :math:`A_i=r_i-\frac1{k-1}\sum_{l\ne i}r_l`, independent of y_i and unbiased.

**KL per token, reward-to-go** (:func:`token_pg_loss`). For a sequence KL
:math:`\mathrm{KL}(\pi\|a)=\mathbb E_y\sum_t\delta_t`, :math:`\delta_t=\log\pi(y_t|s_t)-\log a(y_t|s_t)`,
the score-function gradient only needs, at token t, the terms at or after t (causality):

.. math:: \nabla J=\mathbb E\Big[\sum_t\nabla\log\pi(y_t|s_t)\Big(A-\sum_i w_i\sum_{t'\ge t}\delta^{(i)}_{t'}\Big)\Big]
   \quad\text{for}\quad J=\mathbb E[r]-\sum_i w_i\,\mathrm{KL}(\pi\|a_i),

unbiased, with less variance than multiplying every token's score by the whole-sequence log-ratio.

**Analytic per-token KL** (:func:`token_pg_loss_analytic`). When the full next-token distributions are
available, :math:`k_t=\mathrm{KL}(\pi(\cdot|s_t)\|a(\cdot|s_t))` is a cost of the *state* s_t, and the policy
gradient theorem gives :math:`\nabla\,\mathbb E\sum_t k_t=\mathbb E\big[\sum_t\nabla k_t+\sum_t\nabla\log\pi(y_t|s_t)
\sum_{t'>t}k_{t'}\big]`: the pathwise gradient of the current position's KL plus the score of the future
ones — unbiased, and free of the sampling noise of the token's own log-ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "pair_indices",
    "pair_matrix",
    "selfplay_advantages",
    "paired_advantages",
    "reward_to_go",
    "token_pg_loss",
    "token_pg_loss_analytic",
    "per_token_kl",
    "grouped_ipo_loss",
]


def pair_indices(k: int) -> tuple[Tensor, Tensor]:
    """Indices (i, j), i < j, of the k(k−1)/2 compared pairs within one prompt's group."""
    if k < 2:
        raise ValueError("self-play needs k ≥ 2 completions per prompt")
    return torch.triu_indices(k, k, offset=1)  # type: ignore[return-value]


def pair_matrix(p_pairs: Tensor, k: int) -> Tensor:
    """(B, k, k) matrix of P(y_i ≻ y_j) from the (B, k(k−1)/2) answers on :func:`pair_indices` (½ on the diagonal)."""
    i, j = pair_indices(k)
    m = torch.full((p_pairs.shape[0], k, k), 0.5, dtype=p_pairs.dtype, device=p_pairs.device)
    m[:, i, j] = p_pairs
    m[:, j, i] = 1 - p_pairs
    return m


def selfplay_advantages(p_pairs: Tensor, k: int) -> Tensor:
    """(B, k) advantages mean_{j≠i} P(y_i ≻ y_j) − ½ (module docs: unbiased for P(y_i ≻ π) − ½)."""
    m = pair_matrix(p_pairs, k)
    return (m.sum(-1) - 0.5) / (k - 1) - 0.5


def paired_advantages(rewards: Tensor) -> Tensor:
    """(B, k) rewards minus the leave-one-out mean of the prompt's other rewards (½ when k = 1)."""
    k = rewards.shape[-1]
    if k == 1:
        return rewards - 0.5
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)


def reward_to_go(deltas: Tensor, mask: Tensor) -> Tensor:
    """Σ_{t' ≥ t} δ_{t'} over the masked tokens of each row, ``(N, T)`` (0 where masked)."""
    d = deltas * mask
    return (d.flip(-1).cumsum(-1).flip(-1)) * mask


def token_pg_loss(
    token_logp: Tensor, mask: Tensor, advantage: Tensor, anchors: Sequence[tuple[float, Tensor]] = ()
) -> Tensor:
    r"""REINFORCE surrogate whose gradient is an unbiased estimate of :math:`-\nabla J` (module docs).

    ``token_logp`` (N, T) is differentiable, ``advantage`` (N,) the sequence advantage, ``anchors`` pairs
    ``(w, token log a)`` of frozen per-token log-probabilities of the same tokens. The loss is the mean over
    sequences of :math:`-\sum_t \mathrm{sg}(A_t)\log\pi(y_t|s_t)` with the per-token advantage
    :math:`A_t = A - \sum_i w_i\sum_{t'\ge t}\mathrm{sg}(\log\pi-\log a_i)_{t'}`.
    """
    adv = advantage.detach()[:, None].expand_as(token_logp) * mask
    for w, token_log_a in anchors:
        if w:
            adv = adv - w * reward_to_go((token_logp.detach() - token_log_a), mask)
    return -(adv.detach() * token_logp * mask).sum(-1).mean()


def per_token_kl(logp_full: Tensor, log_a_full: Tensor) -> Tensor:
    """(N, T) KL(π(·|s_t) ‖ a(·|s_t)) from full (N, T, V) log-probabilities (differentiable in ``logp_full``)."""
    p = logp_full.exp()
    diff = torch.where(p > 0, logp_full - log_a_full, torch.zeros_like(logp_full))  # 0·log 0 = 0, not NaN
    return (p * diff).sum(-1)


def token_pg_loss_analytic(
    token_logp: Tensor, mask: Tensor, advantage: Tensor, kls: Sequence[tuple[float, Tensor]] = ()
) -> Tensor:
    r"""The analytic-KL form of :func:`token_pg_loss` (module docs): ``kls`` pairs ``(w, k_t)`` of per-token
    KLs (N, T), differentiable in π. Loss per sequence:
    :math:`-\sum_t \mathrm{sg}(A-\sum_i w_i\sum_{t'>t}k^{(i)}_{t'})\log\pi(y_t|s_t)+\sum_i w_i\sum_t k^{(i)}_t`.
    """
    adv = advantage.detach()[:, None].expand_as(token_logp) * mask
    penalty = torch.zeros_like(token_logp)
    for w, kl in kls:
        if w:
            future = reward_to_go(kl.detach(), mask) - kl.detach() * mask  # Σ_{t' > t}
            adv = adv - w * future
            penalty = penalty + w * kl * mask
    return (-(adv.detach() * token_logp * mask) + penalty).sum(-1).mean()


def grouped_ipo_loss(seq_logp: Tensor, seq_ref: Tensor, p_pairs: Tensor, beta: float, k: int) -> Tensor:
    r"""Online-IPO squared loss over every compared pair of each prompt's group.

    :math:`\frac1{|\text{pairs}|}\sum_{i<j}\big[h_\theta(y_i,y_j)-(p_{ij}-\tfrac12)/\beta\big]^2`, with
    :math:`h_\theta=\log\frac{\pi_\theta(y_i)\pi_{\rm ref}(y_j)}{\pi_{\rm ref}(y_i)\pi_\theta(y_j)}`;
    ``seq_logp``/``seq_ref`` are (B·k,) sequence log-probabilities, ``p_pairs`` (B, k(k−1)/2).
    """
    i, j = pair_indices(k)
    ratio = (seq_logp - seq_ref).view(-1, k)
    h = ratio[:, i] - ratio[:, j]
    return ((h - (p_pairs - 0.5) / beta) ** 2).mean()
