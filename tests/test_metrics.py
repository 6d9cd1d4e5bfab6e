"""Metric definitions against their direct formulas, the paper-digest values and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nashmp
from nashmp import PreferenceGame
from nashmp._numerics import kl_from_logs, log_normalize
from nashmp.metrics import METRICS, aggregate, context_metrics, duality_gap, exploitability

from .conftest import games


def _p_beta(game: PreferenceGame, a: np.ndarray, b: np.ndarray) -> float:
    """P_β(a ≻ b) of a single game, straight from the definition."""

    def kl(p: np.ndarray) -> float:
        m = p > 0
        return float(np.sum(p[m] * np.log(p[m] / game.ref[0][m])))

    return float(a @ game.P[0] @ b) - game.beta * kl(a) + game.beta * kl(b)


def test_digest_values(game3: PreferenceGame) -> None:
    eq = nashmp.solve_equilibrium(game3)
    m = context_metrics(game3, eq.log_policy, game3.log_ref)
    assert m["kl_to_star"][0] == pytest.approx(0.149322, abs=1e-6)
    assert m["exploitability"][0] == pytest.approx(0.038086, abs=1e-6)


@given(games(max_n=8), st.integers(0, 2**31 - 1))
def test_exploitability_matches_definition(game: PreferenceGame, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = game.num_responses
    pi = rng.dirichlet(np.ones(n))
    lp = np.log(pi)[None]
    e = exploitability(game, lp)[0]
    # closed form of the digest: β·logsumexp(log ref + Pπ/β) + β KL(π‖ref) − ½
    u = game.log_ref[0] + game.P[0] @ pi / game.beta
    closed = (
        game.beta * (u.max() + np.log(np.exp(u - u.max()).sum()))
        + game.beta * np.sum(pi * (np.log(pi) - game.log_ref[0]))
        - 0.5
    )
    assert e == pytest.approx(closed, abs=1e-9)
    assert e >= 0
    # the closed-form best response attains it; no random challenger does better
    br = np.exp(log_normalize(u))
    assert _p_beta(game, br, pi) - 0.5 == pytest.approx(e, abs=1e-9)
    for _ in range(20):
        challenger = rng.dirichlet(np.ones(n))
        assert _p_beta(game, challenger, pi) - 0.5 <= e + 1e-12
    # duality gap: max_π' P_β(π'≻π) − min_π' P_β(π≻π') = 2𝓔 (constant-sum symmetric game)
    assert duality_gap(game, lp)[0] == pytest.approx(2 * e, abs=1e-12)
    assert _p_beta(game, br, pi) - (1 - _p_beta(game, br, pi)) == pytest.approx(2 * e, abs=1e-9)


def test_zero_at_equilibrium() -> None:
    g = nashmp.make_game("cyclic", 15, 0.02, num_games=3)
    eq = nashmp.solve_equilibrium(g)
    m = context_metrics(g, eq.log_policy, eq.log_policy)
    assert np.all(m["kl_to_star"] == 0) and np.all(m["kl_from_star"] == 0)
    assert np.all(m["span"] < 1e-12) and np.all(m["exploitability"] < 1e-14)


@given(st.integers(2, 30), st.integers(0, 2**31 - 1), st.floats(1e-6, 10))
def test_kl_matches_naive_and_is_accurate_near_zero(n: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    lp = log_normalize(scale * rng.standard_normal(n))
    lq = log_normalize(lp + 1e-6 * rng.standard_normal(n))
    naive = np.sum(np.exp(lp) * (lp - lq))
    stable = kl_from_logs(lp, lq)
    assert stable >= 0
    assert stable == pytest.approx(naive, abs=1e-15)
    # second-order expansion: KL ≈ ½ Var_p(d) for tiny perturbations, which the naive sum cannot resolve
    d = lp - lq
    p = np.exp(lp)
    half_var = 0.5 * (np.sum(p * d**2) - np.sum(p * d) ** 2)
    assert stable == pytest.approx(half_var, rel=1e-3)


def test_kl_support_cases() -> None:
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([0.5, 0.5, 0.0]))
    lq = np.log(np.array([0.25, 0.25, 0.5]))
    assert kl_from_logs(lp, lq) == pytest.approx(np.log(2))
    assert kl_from_logs(lq, lp) == np.inf
    tiny = np.array([0.0, -800.0])  # p ≪ q must not overflow
    assert np.isfinite(kl_from_logs(log_normalize(tiny), np.log([0.5, 0.5])))


def test_aggregate_weighted_mean_and_max() -> None:
    g = PreferenceGame(np.full((3, 2, 2), 0.5), [0.5, 0.5], 0.1, weights=[1, 1, 2])
    agg = aggregate(g, {"kl_to_star": np.array([1.0, 3.0, 0.0])})
    assert agg["kl_to_star"] == pytest.approx(1.0)
    assert agg["kl_to_star_max"] == 3.0


def test_every_metric_is_computed_by_its_definition_and_unknown_ones_are_refused(game3: PreferenceGame) -> None:
    """Issue 13, item 12: each name in METRICS is computed (alone or together, the same value) and equals its
    definition on a policy away from π* (the old test only compared METRICS with itself)."""
    star = nashmp.solve_equilibrium(game3).log_policy
    lp = np.log(np.array([[0.6, 0.3, 0.1]]))
    full = context_metrics(game3, star, lp)
    assert list(full) == list(METRICS)
    for name in METRICS:
        alone = context_metrics(game3, star, lp, [name])
        assert list(alone) == [name] and alone[name].shape == (1,) and np.isfinite(alone[name]).all()
        np.testing.assert_allclose(alone[name], full[name], rtol=1e-12, atol=1e-15)
    pi, pi_star = np.exp(lp[0]), np.exp(star[0])
    assert full["kl_to_star"][0] == pytest.approx(np.sum(pi_star * np.log(pi_star / pi)), rel=1e-10)
    assert full["kl_from_star"][0] == pytest.approx(np.sum(pi * np.log(pi / pi_star)), rel=1e-10)
    assert (
        full["exploitability"][0] == pytest.approx(exploitability(game3, lp)[0], rel=1e-12)
        and full["exploitability"][0] > 0
    )
    assert full["duality_gap"][0] == pytest.approx(2 * full["exploitability"][0], rel=1e-12)
    d = np.log(pi) - np.log(pi_star)
    assert full["span"][0] == pytest.approx(d.max() - d.min(), rel=1e-12)
    assert full["unregularized_exploitability"][0] == pytest.approx(np.max(game3.P[0] @ pi) - 0.5, rel=1e-12)
    with pytest.raises(nashmp.InvalidParameterError, match="unknown metric"):
        context_metrics(game3, game3.log_ref, game3.log_ref, ["accuracy"])
