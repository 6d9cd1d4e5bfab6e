"""The certified equilibrium solver: test vectors, certificates, and independent checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import nashmp
from nashmp import EquilibriumNotCertifiedError, PreferenceGame
from nashmp.metrics import exploitability, unregularized_exploitability

from .conftest import P3, REF3, games


@pytest.mark.parametrize(
    ("beta", "star"),
    [(0.1, [0.351925, 0.206245, 0.441830]), (1.0, [0.520690, 0.256027, 0.223283])],
)
def test_paper_digest_vectors(beta: float, star: list[float]) -> None:
    eq = nashmp.solve_equilibrium(PreferenceGame(P3, REF3, beta))
    np.testing.assert_allclose(eq.policy, star, atol=1e-6)
    assert eq.certificate <= 1e-10


def test_payoff_at_equilibrium_vector(game3: PreferenceGame) -> None:
    eq = nashmp.solve_equilibrium(game3)
    np.testing.assert_allclose(P3 @ eq.policy, [0.449949, 0.447596, 0.564329], atol=1e-6)


@given(games(max_n=12, zeros=True))
def test_certificate_and_equilibrium_property(game: PreferenceGame) -> None:
    eq = nashmp.solve_equilibrium(game)
    assert eq.certificate <= 1e-10
    # Independent check: π* is its own regularised best response, so its exploitability is ~0 ...
    assert exploitability(game, eq.log_policy)[0] <= 1e-12
    # ... and by the NE inequality P_β(y ≻ π*) ≤ ½, every response's unregularised advantage is
    # at most β·(−log π_ref(y)).
    payoff = game.payoff(np.exp(eq.log_policy))
    with np.errstate(divide="ignore"):
        bound = np.where(game.support, -game.beta * game.log_ref, np.inf)
    assert np.all(np.where(game.support, payoff - 0.5, -np.inf) <= bound + 1e-12)


@given(games(max_n=8, min_beta=1e-4, max_beta=1e-3))
def test_tiny_beta_without_nan(game: PreferenceGame) -> None:
    eq = nashmp.solve_equilibrium(game)
    assert np.all(np.isfinite(eq.log_policy[game.support]))
    assert eq.certificate <= 1e-10


def test_batched_equals_individual() -> None:
    g = nashmp.make_game("skew", 12, 0.02, num_games=5, seed=3)
    eq = nashmp.solve_equilibrium(g)
    for x in range(5):
        single = PreferenceGame(g.P[x], g.ref[x], g.beta)
        np.testing.assert_allclose(eq.policy[x], nashmp.solve_equilibrium(single).policy, atol=1e-12)


@pytest.mark.parametrize("family", ["random", "cyclic"])
def test_gmres_path_matches_dense_path(family: str) -> None:
    g = nashmp.make_game(family, 200, 0.005, seed=1)
    dense = nashmp.solve_equilibrium(g)
    krylov = nashmp.solve_equilibrium(g, dense_max_n=10)
    assert krylov.certificate <= 1e-10
    np.testing.assert_allclose(krylov.log_policy, dense.log_policy, atol=1e-9)


def test_small_beta_approaches_von_neumann_winner() -> None:
    """As β → 0, π*_β becomes an unregularised NE: check against an LP solution (scipy HiGHS)."""
    from scipy.optimize import linprog

    g = nashmp.make_game("random", 7, 1e-4, seed=5, ref="uniform")
    P = g.P[0]
    n = 7
    # max v s.t. (Pᵀ π)_j ≥ v for all j, π in the simplex
    res = linprog(
        c=np.r_[np.zeros(n), -1.0],
        A_ub=np.c_[-P.T, np.ones(n)],
        b_ub=np.zeros(n),
        A_eq=np.r_[np.ones(n), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * n + [(None, None)],
        method="highs",
    )
    assert res.status == 0 and abs(-res.fun - 0.5) < 1e-9  # the game value is ½
    eq = nashmp.solve_equilibrium(g)
    # unregularised exploitability of π*_β is at most β log n for a uniform reference
    assert unregularized_exploitability(g, g.payoff(np.exp(eq.log_policy)))[0] <= g.beta * np.log(n) + 1e-12
    np.testing.assert_allclose(eq.policy, res.x[:n], atol=5e-3)


def test_not_certified_raises() -> None:
    g = nashmp.make_game("random", 20, 1e-3, seed=0)
    with pytest.raises(EquilibriumNotCertifiedError, match="certificate"):
        nashmp.solve_equilibrium(g, max_newton=1)
    eq = nashmp.solve_equilibrium(g, max_newton=1, raise_on_failure=False)
    assert eq.certificate > 1e-10


def test_fixed_point_residual_is_zero_only_at_equilibrium(game3: PreferenceGame) -> None:
    eq = nashmp.solve_equilibrium(game3)
    assert nashmp.fixed_point_residual(game3, eq.log_policy)[0] <= 1e-10
    assert nashmp.fixed_point_residual(game3, game3.log_ref)[0] > 1e-2
