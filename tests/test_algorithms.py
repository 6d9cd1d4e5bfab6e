"""Algorithms: paper-digest iterates, contraction, equivalences, query accounting, convergence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nashmp
from nashmp import PreferenceGame
from nashmp._numerics import kl_from_logs, log_normalize, span
from nashmp.algorithms import (
    egpo,
    md_center_weight,
    md_step_from_nash_mp,
    mirror_prox_gap,
    nash_mp,
    nash_mp_step_from_md,
    prox_step,
    regularized_prox,
)
from nashmp.algorithms.nash_mp import nash_mp_iteration

from .conftest import P3, REF3, games


def _counting(game: PreferenceGame):  # noqa: ANN202
    calls = []

    def query(mu: np.ndarray) -> np.ndarray:
        calls.append(1)
        return game.payoff(mu)

    return query, calls


@pytest.mark.parametrize(
    ("beta", "half", "one"),
    [
        (0.1, [0.544564, 0.226443, 0.228994], [0.525246, 0.228118, 0.246636]),
        (1.0, [0.519149, 0.268997, 0.211855], [0.516105, 0.269328, 0.214567]),
    ],
)
def test_nash_mp_first_iterates(beta: float, half: list[float], one: list[float]) -> None:
    g = PreferenceGame(P3, REF3, beta)
    query, calls = _counting(g)
    lh, l1, _, _ = nash_mp_iteration(g, g.log_ref, 2 * beta, query)
    np.testing.assert_allclose(np.exp(lh[0]), half, atol=1e-6)
    np.testing.assert_allclose(np.exp(l1[0]), one, atol=1e-6)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("beta", "kls", "rtol"),
    [
        (0.1, [0.149322, 0.09588, 0.06148, 0.03919, 0.02489, 0.01582], 1e-3),
        (1.0, [5.121e-3, 5.29e-4, 5.54e-5, 5.83e-6, 6.14e-7, 6.46e-8], 2e-3),
    ],
)
def test_nash_mp_kl_sequence(beta: float, kls: list[float], rtol: float) -> None:
    tr = nashmp.run(PreferenceGame(P3, REF3, beta), "nash-mp", 10)
    np.testing.assert_array_equal(tr.queries, [0, 2, 4, 6, 8, 10])
    np.testing.assert_allclose(tr.metrics["kl_to_star"], kls, rtol=rtol)


@given(games(max_n=12, min_beta=1e-3, max_beta=3.0))
def test_nash_mp_contracts_at_least_one_over_one_plus_two_beta(game: PreferenceGame) -> None:
    tr = nashmp.run(game, "nash-mp", 60, metrics=["kl_to_star"])
    kl = tr.metrics["kl_to_star"]
    bound = 1.0 / (1.0 + 2.0 * game.beta)
    for k in range(len(kl) - 1):
        if kl[k] > 1e-13:  # above the float64 floor of the KL itself
            assert kl[k + 1] <= bound * kl[k] * (1 + 1e-9) + 1e-15, (k, kl[k], kl[k + 1])


@given(games(max_n=10), st.floats(0.01, 20.0))
def test_egpo_equals_nash_mp_under_step_map(game: PreferenceGame, eta: float) -> None:
    a = nashmp.run(game, nash_mp(eta=eta), 20, metrics=["kl_to_star"])
    b = nashmp.run(game, egpo(eta=md_step_from_nash_mp(eta, game.beta)), 20, metrics=["kl_to_star"])
    np.testing.assert_allclose(b.final.log_policy, a.final.log_policy, atol=1e-9)
    np.testing.assert_array_equal(a.queries, b.queries)
    assert nash_mp_step_from_md(md_step_from_nash_mp(eta, game.beta), game.beta) == pytest.approx(eta)


@given(games(max_n=8, min_beta=0.1, max_beta=0.5), st.sampled_from([1.0, 4.0]))
def test_nash_md_constant_step_converges_to_biased_point(game: PreferenceGame, c: float) -> None:
    # a constant step η = cβ (≤ 8β: the map is a contraction); mixture weight ηβ = cβ² ≤ 1
    eta = c * game.beta
    mix = eta * game.beta
    tr = nashmp.run(game, "nash-md", 5000, decay=False, eta=eta, metrics=["kl_to_star"], record_every=1000)
    lp = tr.final.log_policy
    log_mu = log_normalize((1 - mix) * lp + mix * game.log_ref)
    biased = log_normalize(game.log_ref + game.payoff(np.exp(log_mu)) / game.beta)
    # it converged: to π ∝ π_ref exp(P π^μ / β) ...
    assert span(lp - biased, game.support)[0] < 1e-8
    # ... which is not π*_β unless P π^μ = P π up to a constant (always so for n = 2, say)
    star = nashmp.solve_equilibrium(game).log_policy
    payoff_gap = span(game.payoff(np.exp(log_mu)) - game.payoff(np.exp(lp)), game.support)[0]
    if payoff_gap > 1e-4:
        assert span(lp - star, game.support)[0] > 1e-6


@given(games(max_n=10))
def test_prox_step_is_the_argmax(game: PreferenceGame) -> None:
    rng = np.random.default_rng(0)
    n = game.num_responses
    center = log_normalize(rng.standard_normal((1, n)))
    g = game.P[0] @ rng.dirichlet(np.ones(n))
    w_c = 0.3
    lp = regularized_prox(game, center, g[None], w_c)

    def objective(log_pi: np.ndarray) -> float:
        return (
            float(np.exp(log_pi) @ g)
            - game.beta * kl_from_logs(log_pi, game.log_ref[0])
            - w_c * kl_from_logs(log_pi, center[0])
        )

    best = objective(lp[0])
    for _ in range(30):
        other = np.log(rng.dirichlet(np.ones(n)))
        assert objective(other) <= best + 1e-12
    # mirror-descent parametrisation: π_k^{1−ηβ} π_ref^{ηβ} e^{ηg}
    eta = 0.5 / game.beta
    md = regularized_prox(game, center, g[None], md_center_weight(game.beta, eta))
    direct = log_normalize((1 - eta * game.beta) * center + eta * game.beta * game.log_ref + eta * g)
    np.testing.assert_allclose(md, direct, atol=1e-10)


def test_prox_step_rejects_zero_total_weight() -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="positive sum"):
        prox_step(np.zeros((1, 3)), [(0.0, np.zeros((1, 3)))])


QUERIES_PER_ITERATION = {
    "nash-mp": 2,
    "egpo": 2,
    "omd": 1,
    "inpo": 1,
    "nash-md": 1,
    "onpo": 1,
    "mpo": 1,
    "sppo": 1,
    "online-ipo": 1,
}


@pytest.mark.parametrize(("algo", "per_iter"), sorted(QUERIES_PER_ITERATION.items()))
def test_query_accounting(algo: str, per_iter: int, game3: PreferenceGame) -> None:
    tr = nashmp.run(game3, algo, 12)
    np.testing.assert_array_equal(tr.queries, per_iter * tr.iterations)
    assert tr.queries[-1] == 12


@pytest.mark.parametrize(
    ("algo", "params"),
    [
        ("nash-mp", {}),
        ("adaptive-nash-mp", {}),
        ("proximal-point", {"eta": 1.0}),
        ("nash-md", {}),
        ("omd", {}),
        ("egpo", {}),
        ("mpo", {}),
        ("onpo", {}),
        ("online-ipo", {"lr": 1.0}),
    ],
)
def test_every_regularised_algorithm_reaches_the_equilibrium(algo: str, params: dict) -> None:
    g = nashmp.make_game("random", 6, 0.5, num_games=3, seed=2)
    tr = nashmp.run(g, algo, 20000, stop_kl=1e-9, metrics=["kl_to_star", "exploitability", "span"], **params)
    assert tr.metrics["kl_to_star"][-1] <= 1e-9, tr.metrics["kl_to_star"][-1]
    assert tr.metrics["span_max"][-1] <= 1e-3


def test_sppo_ignores_the_reference() -> None:
    """SPPO has no π_ref term: it does not converge to π*_β (documented baseline behaviour)."""
    g = nashmp.make_game("random", 6, 0.5, seed=2)
    tr = nashmp.run(g, "sppo", 2000, metrics=["kl_to_star"])
    assert tr.metrics["kl_to_star"][-1] > 1e-2


@pytest.mark.parametrize("eta_over_beta", [10.0, 50.0])
def test_proximal_point_contracts_at_one_over_one_plus_eta(eta_over_beta: float) -> None:
    g = nashmp.make_game("random", 10, 0.05, num_games=2, seed=4)
    eta = eta_over_beta * g.beta
    tr = nashmp.run(g, "proximal-point", 3000, eta=eta, metrics=["kl_to_star"])
    kl = tr.per_context["kl_to_star"]
    for k in range(len(kl) - 1):
        live = kl[k] > 1e-12
        assert np.all(kl[k + 1][live] <= kl[k][live] / (1 + eta) * (1 + 1e-6) + 1e-14)


@given(games(max_n=10, min_beta=1e-3, max_beta=2.0), st.integers(0, 2**31 - 1))
def test_mirror_prox_gap_nonpositive_at_two_beta(game: PreferenceGame, seed: int) -> None:
    """δ_k ≤ 0 for every iterate when η ≤ 2β: the inequality behind Nash-MP's theorem."""
    rng = np.random.default_rng(seed)
    lp = np.where(game.support, log_normalize(game.log_ref + 3 * rng.standard_normal(game.log_ref.shape)), -np.inf)
    query, _ = _counting(game)
    for eta in (2 * game.beta, game.beta):
        lh, ln, g0, g1 = nash_mp_iteration(game, lp, eta, query)
        assert mirror_prox_gap(lp, lh, ln, g0, g1, game.beta, game.beta / eta)[0][0] <= 1e-12


@given(games(max_n=10, min_beta=1e-2, max_beta=2.0), st.floats(0.01, 50.0), st.integers(0, 2**31 - 1))
def test_mirror_prox_identity(game: PreferenceGame, eta: float, seed: int) -> None:
    """(β+τ)KL(π*‖π_{k+1}) = τKL(π*‖π_k) + δ_k − βKL(π_{k+½}‖π*) for any η: the certificate's exact slack."""
    rng = np.random.default_rng(seed)
    lp = log_normalize(game.log_ref + rng.standard_normal(game.log_ref.shape))
    query, _ = _counting(game)
    lh, ln, g0, g1 = nash_mp_iteration(game, lp, eta, query)
    tau = game.beta / eta
    delta = mirror_prox_gap(lp, lh, ln, g0, g1, game.beta, tau)[0][0]
    star = nashmp.solve_equilibrium(game).log_policy
    lhs = (game.beta + tau) * kl_from_logs(star, ln)[0]
    rhs = tau * kl_from_logs(star, lp)[0] + delta - game.beta * kl_from_logs(lh, star)[0]
    assert lhs == pytest.approx(rhs, rel=1e-7, abs=1e-10)


@given(games(max_n=12, min_beta=1e-2, max_beta=1.0))
def test_adaptive_certified_bound_holds(game: PreferenceGame) -> None:
    tr = nashmp.run(game, "adaptive-nash-mp", 200, metrics=["kl_to_star"])
    kl = tr.metrics["kl_to_star"]
    bound = np.exp(tr.extras["log_bound"][:, 0]) * kl[0]
    live = kl > 1e-13
    assert np.all(kl[live] <= bound[live] * (1 + 1e-6) + 1e-15)
    # never a worse guarantee than Nash-MP's (1+2β)^{-k}
    assert np.all(tr.extras["log_bound"][:, 0] <= -tr.iterations * np.log1p(2 * game.beta) + 1e-9)
    assert np.all(tr.extras["eta"] >= 2 * game.beta * (1 - 1e-12))


def test_adaptive_takes_larger_steps_on_an_easy_game() -> None:
    g = nashmp.make_game("random", 30, 0.01, num_games=4, seed=0)
    eq = nashmp.solve_equilibrium(g)
    fixed = nashmp.run(g, "nash-mp", 5000, equilibrium=eq, stop_kl=1e-8, metrics=["kl_to_star"])
    adaptive = nashmp.run(g, "adaptive-nash-mp", 5000, equilibrium=eq, stop_kl=1e-8, metrics=["kl_to_star"])
    assert adaptive.queries[-1] < 0.7 * fixed.queries[-1]
    assert adaptive.extras["eta"].max() > 4 * g.beta


@pytest.mark.parametrize("algo", sorted(nashmp.ALGORITHMS))
def test_tiny_beta_no_nan(algo: str) -> None:
    g = nashmp.make_game("cyclic", 12, 1e-4, num_games=2)
    tr = nashmp.run(g, algo, 100)
    assert np.all(np.isfinite(tr.final.log_policy))
    for name, values in tr.metrics.items():
        assert not np.any(np.isnan(values)), name


def test_make_algorithm_errors() -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="unknown algorithm"):
        nashmp.make_algorithm("nash-q")
    with pytest.raises(nashmp.InvalidParameterError, match="bad parameters"):
        nashmp.make_algorithm("nash-mp", learning_rate=1.0)
    with pytest.raises(nashmp.InvalidParameterError, match="reset_every"):
        nashmp.make_algorithm("mpo", reset_every=0)
