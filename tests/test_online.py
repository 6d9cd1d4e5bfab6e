"""The online family's estimators, checked by exact enumeration on a tiny autoregressive model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nashmp.approx.losses import ipo_loss  # noqa: E402
from nashmp.online import (  # noqa: E402
    RECIPES,
    grouped_ipo_loss,
    pair_indices,
    paired_advantages,
    reward_to_go,
    selfplay_advantages,
    token_pg_loss,
)

V, EOS = 3, 0
# every sequence of at most two tokens that ends at EOS or at the length limit
SEQS = [(0,), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def _tokens(theta0, theta1):  # type: ignore[no-untyped-def]
    """Per-token log-probs (S, 2) and mask of every sequence under the tabular policy (θ0, θ1[prev])."""
    first = torch.log_softmax(theta0, -1)
    second = torch.log_softmax(theta1, -1)
    rows, masks = [], []
    for s in SEQS:
        lp = [first[s[0]], second[s[0], s[1]] if len(s) > 1 else torch.zeros(())]
        rows.append(torch.stack(lp))
        masks.append(torch.tensor([1.0, float(len(s) > 1)]))
    return torch.stack(rows), torch.stack(masks)


@pytest.fixture
def model():  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    theta = [torch.randn(V, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(V, V, generator=g, dtype=torch.float64, requires_grad=True)]  # fmt: skip
    ref = [torch.randn(V, generator=g, dtype=torch.float64), torch.randn(V, V, generator=g, dtype=torch.float64)]
    anchor = [torch.randn(V, generator=g, dtype=torch.float64), torch.randn(V, V, generator=g, dtype=torch.float64)]
    rng = np.random.default_rng(1)
    n = len(SEQS)
    lower = np.tril(rng.uniform(size=(n, n)), -1)
    P = torch.as_tensor(lower + np.triu(1 - lower.T, 1) + 0.5 * np.eye(n))  # intransitive in general
    return theta, ref, anchor, P


def _exact_gradient(theta, ref, anchor, P, opponent, beta, w):  # type: ignore[no-untyped-def]
    """∇θ of J = E_{y∼π}[P(y ≻ μ)] − β KL(π‖ref) − w KL(π‖anchor), μ held fixed (self-play: sg π)."""
    tok, mask = _tokens(*theta)
    logp = (tok * mask).sum(-1)
    pi = logp.exp()
    J = (pi * (P @ opponent)).sum()
    for weight, a in ((beta, ref), (w, anchor)):
        lt, _ = _tokens(*a)
        J = J - weight * (pi * (logp - (lt * mask).sum(-1))).sum()
    return torch.autograd.grad(J, theta)


def _expectation(theta, P, k, advantages, loss_of):  # type: ignore[no-untyped-def]
    """E[-∇ loss] over every k-tuple of self-play samples, each weighted by its probability;
    ``loss_of(rows, adv)`` is the estimator's loss on those sequences."""
    tok, mask = _tokens(*theta)
    pi = (tok * mask).sum(-1).exp().detach()
    i, j = pair_indices(k)
    total = [torch.zeros_like(t) for t in theta]
    for ys in itertools.product(range(len(SEQS)), repeat=k):
        rows = torch.tensor(ys)
        adv = advantages(P[rows[i], rows[j]][None], k).reshape(-1)
        grads = torch.autograd.grad(loss_of(rows, adv), theta, retain_graph=True)
        total = [t - float(pi[rows].prod()) * g for t, g in zip(total, grads, strict=True)]
    return total


def _expected_estimator(theta, ref, anchor, P, k, beta, w, advantages):  # type: ignore[no-untyped-def]
    """E[-∇ token_pg_loss] (sampled per-token KLs) under self-play."""
    tok, mask = _tokens(*theta)
    ref_tok, _ = _tokens(*ref)
    anc_tok, _ = _tokens(*anchor)

    def loss_of(rows, adv):  # type: ignore[no-untyped-def]
        return token_pg_loss(tok[rows], mask[rows], adv, [(beta, ref_tok[rows]), (w, anc_tok[rows])])

    return _expectation(theta, P, k, advantages, loss_of)


@pytest.mark.parametrize("kl", ["sampled", "analytic"])
@pytest.mark.parametrize("k", [2, 3])
def test_selfplay_estimators_are_unbiased_by_enumeration(model, k: int, kl: str) -> None:  # type: ignore[no-untyped-def]
    """Both KL estimators (sampled log-ratios, analytic per-token KLs) give E[estimate] = ∇J exactly."""
    from nashmp.online.estimators import per_token_kl, token_pg_loss_analytic

    theta, ref, anchor, P = model
    beta, w = 0.3, 0.7
    with torch.no_grad():
        tok, mask = _tokens(*theta)
        pi_sg = (tok * mask).sum(-1).exp()
    exact = _exact_gradient(theta, ref, anchor, P, pi_sg, beta, w)  # = E Σ_t per-token KLs, the same target
    if kl == "sampled":
        est = _expected_estimator(theta, ref, anchor, P, k, beta, w, selfplay_advantages)
    else:
        tok, mask = _tokens(*theta)
        full = _full_logp(theta)
        kl_ref, kl_anc = per_token_kl(full, _full_logp(ref)), per_token_kl(full, _full_logp(anchor))

        def loss_of(rows, adv):  # type: ignore[no-untyped-def]
            return token_pg_loss_analytic(tok[rows], mask[rows], adv, [(beta, kl_ref[rows]), (w, kl_anc[rows])])

        est = _expectation(theta, P, k, selfplay_advantages, loss_of)
    for e, g in zip(est, exact, strict=True):
        torch.testing.assert_close(e, g, rtol=1e-9, atol=1e-12)


def test_token_pg_loss_matches_the_enumerated_surrogate(model) -> None:  # type: ignore[no-untyped-def]
    """The helper used by the trainers gives the same gradient as the hand-written surrogate above."""
    theta, ref, anchor, P = model
    tok, mask = _tokens(*theta)
    ref_tok, _ = _tokens(*ref)
    rows = torch.tensor([1, 3, 5, 0])
    adv = torch.tensor([0.2, -0.1, 0.4, -0.5], dtype=torch.float64)
    loss = token_pg_loss(tok[rows], mask[rows], adv, [(0.5, ref_tok[rows])])
    by_hand = adv[:, None] * mask[rows] - 0.5 * reward_to_go(tok[rows].detach() - ref_tok[rows], mask[rows])
    want = -(by_hand * tok[rows] * mask[rows]).sum(-1).mean()
    torch.testing.assert_close(loss, want)


def test_loo_baseline_of_other_rewards_would_be_biased(model) -> None:  # type: ignore[no-untyped-def]
    """Why the self-play baseline is ½: the leave-one-out mean of the other rewards depends on y_i."""
    theta, ref, anchor, P = model
    k = 3
    with torch.no_grad():
        tok, mask = _tokens(*theta)
        pi_sg = (tok * mask).sum(-1).exp()

    def naive(p_pairs, k):  # type: ignore[no-untyped-def]
        r = selfplay_advantages(p_pairs, k) + 0.5
        return paired_advantages(r)

    exact = _exact_gradient(theta, ref, anchor, P, pi_sg, 0.0, 0.0)
    est = _expected_estimator(theta, ref, anchor, P, k, 0.0, 0.0, naive)
    for e, g in zip(est, exact, strict=True):
        torch.testing.assert_close(e, g * k / (k - 1), rtol=1e-9, atol=1e-12)
        assert not torch.allclose(e, g)


def test_paired_estimator_against_a_fixed_opponent_is_unbiased(model) -> None:  # type: ignore[no-untyped-def]
    """y_i ∼ π, y'_i ∼ μ, one comparison per pair, leave-one-out baseline: unbiased for ∇J_μ."""
    theta, ref, anchor, P = model
    k, beta = 2, 0.2
    mu = torch.as_tensor(np.random.default_rng(3).dirichlet(np.ones(len(SEQS))))
    exact = _exact_gradient(theta, ref, anchor, P, mu, beta, 0.0)
    tok, mask = _tokens(*theta)
    ref_tok, _ = _tokens(*ref)
    pi = (tok * mask).sum(-1).exp().detach()
    n = len(SEQS)
    total = [torch.zeros_like(t) for t in theta]
    for ys in itertools.product(range(n), repeat=k):
        for opp in itertools.product(range(n), repeat=k):
            weight = float(pi[list(ys)].prod() * mu[list(opp)].prod())
            r = torch.stack([P[y, o] for y, o in zip(ys, opp, strict=True)])[None]
            adv = paired_advantages(r).reshape(-1)
            rows = torch.tensor(ys)
            loss = token_pg_loss(tok[rows], mask[rows], adv, [(beta, ref_tok[rows])])
            grads = torch.autograd.grad(loss, theta, retain_graph=True)
            total = [t + weight * g for t, g in zip(total, grads, strict=True)]
    for e, g in zip(total, exact, strict=True):
        torch.testing.assert_close(-e, g, rtol=1e-8, atol=1e-12)


def test_reward_to_go_and_selfplay_advantages_by_hand() -> None:
    d = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(reward_to_go(d, m), torch.tensor([[3.0, 2.0, 0.0], [15.0, 11.0, 6.0]]))
    p = torch.tensor([[0.9, 0.2, 0.6]])  # pairs (0,1), (0,2), (1,2)
    adv = selfplay_advantages(p, 3)
    want = torch.tensor([[(0.9 + 0.2) / 2, (0.1 + 0.6) / 2, (0.8 + 0.4) / 2]]) - 0.5
    torch.testing.assert_close(adv, want)
    assert float(adv.sum()) == pytest.approx(0.0, abs=1e-7)  # zero-sum within a group


def test_grouped_ipo_loss_is_the_mean_over_pairs() -> None:
    g = torch.Generator().manual_seed(2)
    k, b, beta = 3, 2, 0.4
    logp, ref = torch.randn(b * k, generator=g), torch.randn(b * k, generator=g)
    p = torch.rand(b, 3, generator=g)
    i, j = pair_indices(k)
    lp, rf = logp.view(b, k), ref.view(b, k)
    want = torch.stack([ipo_loss(lp[:, a], lp[:, c], rf[:, a], rf[:, c], p[:, n], beta)
                        for n, (a, c) in enumerate(zip(i.tolist(), j.tolist(), strict=True))]).mean()  # fmt: skip
    torch.testing.assert_close(grouped_ipo_loss(logp, ref, p, beta, k), want)


def test_every_recipe_has_one_name_and_valid_schedule() -> None:
    class HP:
        opponent, inner_steps, prox_every, half_every, ema = "half", 2, 3, 2, 0.1

    assert set(RECIPES) == {"nash-mp", "nash-mp-faithful", "nash-prox", "nash-md", "online-ipo", "egpo"}
    faithful = RECIPES["nash-mp-faithful"]
    assert [faithful.opponent_at(HP, s) for s in range(5)] == ["anchor", "anchor", "half", "half", "anchor"]
    assert [faithful.before(HP, s) for s in range(3)] == [
        ("anchor<-theta", "reset-optimizer"), (), ("half<-theta", "reset-optimizer")]  # fmt: skip
    prox = RECIPES["nash-prox"]
    assert [bool(prox.before(HP, s)) for s in range(7)] == [True, False, False, True, False, False, True]
    assert RECIPES["nash-mp"].after(HP, 2) == ("ema", "half<-theta")
    assert RECIPES["nash-md"].snapshots(HP) == () and RECIPES["nash-mp"].snapshots(HP) == ("anchor", "half")


def _full_logp(theta):  # type: ignore[no-untyped-def]
    """(S, 2, V) next-token log-probs at each position of every sequence (position 1 only if it exists)."""
    first = torch.log_softmax(theta[0], -1)
    second = torch.log_softmax(theta[1], -1)
    rows = [torch.stack([first, second[s[0]]]) for s in SEQS]
    return torch.stack(rows)
