"""PreferenceGame validation (every named error), generators and the support restriction."""

from __future__ import annotations

import numpy as np
import pytest

import nashmp
from nashmp import (
    InvalidParameterError,
    InvalidPolicyError,
    InvalidPreferenceError,
    InvalidReferenceError,
    NashMPValueError,
    PreferenceGame,
)
from nashmp.games import FAMILIES, cyclic_game, rps_game, stack_games

from .conftest import P3, REF3


def test_errors_are_value_errors() -> None:
    for cls in (InvalidPreferenceError, InvalidReferenceError, InvalidParameterError, InvalidPolicyError):
        assert issubclass(cls, NashMPValueError)
        assert issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("P", "match"),
    [
        (np.array([[0.5, 1.2], [-0.2, 0.5]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.7], [0.4, 0.5]]), r"P\(y≻y'\) \+ P\(y'≻y\) = 1"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN or inf"),
        (np.array([[0.5, np.inf], [0.5, 0.5]]), "NaN or inf"),
        (np.full((2, 3), 0.5), "square"),
        (np.full((2,), 0.5), r"shape \(n, n\)"),
        (np.full((1, 2, 2, 2), 0.5), r"shape \(n, n\)"),
        ([["a", "b"], ["c", "d"]], "numeric"),
    ],
)
def test_invalid_preference(P: object, match: str) -> None:
    with pytest.raises(InvalidPreferenceError, match=match):
        PreferenceGame(P, [0.5, 0.5] if np.shape(P)[-1:] == (2,) else [1 / 3] * 3, 0.1)  # type: ignore[arg-type]


def test_preference_symmetry_tolerance() -> None:
    P = P3.copy()
    P[0, 1] += 1e-10
    PreferenceGame(P, REF3, 0.1)  # within the default tolerance
    with pytest.raises(InvalidPreferenceError):
        PreferenceGame(P, REF3, 0.1, atol=1e-12)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ([0.5, 0.5], "shape"),
        ([0.6, 0.3, 0.2], "sum to 1"),
        ([1.2, -0.3, 0.1], "non-negative"),
        ([np.nan, 0.5, 0.5], "NaN or inf"),
        ([0.0, 0.0, 0.0], "sum to 1"),
    ],
)
def test_invalid_reference(ref: list[float], match: str) -> None:
    with pytest.raises(InvalidReferenceError, match=match):
        PreferenceGame(P3, ref, 0.1)


@pytest.mark.parametrize("beta", [0.0, -1.0, np.nan, np.inf, "x", None])
def test_invalid_beta(beta: object) -> None:
    with pytest.raises(InvalidParameterError, match="beta"):
        PreferenceGame(P3, REF3, beta)  # type: ignore[arg-type]


@pytest.mark.parametrize("eta", [0.0, -0.5, np.nan])
@pytest.mark.parametrize("algo", ["nash-mp", "proximal-point", "omd", "egpo", "nash-md", "onpo", "mpo"])
def test_invalid_eta(algo: str, eta: float) -> None:
    with pytest.raises(InvalidParameterError, match="eta"):
        nashmp.make_algorithm(algo, eta=eta)


def test_md_step_above_one_over_beta_is_rejected(game3: PreferenceGame) -> None:
    with pytest.raises(InvalidParameterError, match="eta\\*beta"):
        nashmp.run(game3, "omd", 4, eta=2.0 / game3.beta)


def test_invalid_weights() -> None:
    P = np.stack([P3, P3])
    with pytest.raises(InvalidParameterError, match="weights"):
        PreferenceGame(P, REF3, 0.1, weights=[1.0, -1.0])
    with pytest.raises(InvalidParameterError, match="weights"):
        PreferenceGame(P, REF3, 0.1, weights=[1.0])
    g = PreferenceGame(P, REF3, 0.1, weights=[1.0, 3.0])
    np.testing.assert_allclose(g.weights, [0.25, 0.75])


def test_batched_shapes_and_shared_reference() -> None:
    g = PreferenceGame(np.stack([P3, P3.T]), REF3, 0.2)
    assert g.batched and g.num_contexts == 2 and g.num_responses == 3
    assert g.ref.shape == (2, 3)
    single = PreferenceGame(P3, REF3, 0.2)
    assert not single.batched and single.unbatch(single.ref).shape == (3,)


def test_policy_validation(game3: PreferenceGame) -> None:
    with pytest.raises(InvalidPolicyError, match="shape"):
        game3.as_log_policy([0.5, 0.5])
    with pytest.raises(InvalidPolicyError, match="sum to 1"):
        game3.as_log_policy([0.5, 0.5, 0.5])
    with pytest.raises(InvalidPolicyError, match="non-negative"):
        game3.as_log_policy([1.5, -0.5, 0.0])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generators_valid_seeded_and_batched(family: str) -> None:
    g1 = nashmp.make_game(family, 9, 0.1, num_games=3, seed=7)
    g2 = nashmp.make_game(family, 9, 0.1, num_games=3, seed=7)
    assert g1.P.shape == (3, 9, 9)
    np.testing.assert_array_equal(g1.P, g2.P)
    np.testing.assert_array_equal(g1.ref, g2.ref)
    np.testing.assert_allclose(g1.P + np.swapaxes(g1.P, -1, -2), 1.0, atol=1e-15)
    assert g1.P.min() >= 0 and g1.P.max() <= 1
    if family not in ("tie", "cyclic"):  # those two have no randomness in P
        g3 = nashmp.make_game(family, 9, 0.1, num_games=3, seed=8)
        assert not np.array_equal(g1.P, g3.P)


def test_unknown_family() -> None:
    with pytest.raises(InvalidParameterError, match="unknown game family"):
        nashmp.make_game("chess", 5, 0.1)


def test_generator_size_errors() -> None:
    with pytest.raises(InvalidParameterError, match="multiple of 3"):
        rps_game(8, 0.1)
    with pytest.raises(InvalidParameterError, match="n must be"):
        nashmp.make_game("random", 0, 0.1)
    with pytest.raises(InvalidParameterError, match="num_games"):
        nashmp.make_game("random", 4, 0.1, num_games=0)


def test_cyclic_is_a_regular_tournament() -> None:
    g = cyclic_game(7, 0.1)
    P = g.P[0]
    wins = (P == 1.0).sum(axis=1)
    np.testing.assert_array_equal(wins, 3)  # every response beats exactly (n-1)/2 others
    # the unregularised equilibrium of a regular tournament is uniform: P @ uniform = 1/2
    np.testing.assert_allclose(P @ np.full(7, 1 / 7), 0.5)


def test_tie_game_equilibrium_is_reference() -> None:
    g = nashmp.make_game("tie", 6, 0.05, seed=1)
    eq = nashmp.solve_equilibrium(g)
    np.testing.assert_allclose(eq.policy, g.ref[0], atol=1e-14)


def test_bradley_terry_is_transitive() -> None:
    g = nashmp.make_game("bradley-terry", 6, 0.1, seed=3)
    P = g.P[0]
    order = np.argsort(-(P > 0.5).sum(1))
    # a transitive preference: if a beats b and b beats c then a beats c
    for i in range(6):
        for j in range(i + 1, 6):
            assert P[order[i], order[j]] >= 0.5


def test_stack_games() -> None:
    a = nashmp.make_game("random", 5, 0.1, seed=0)
    b = nashmp.make_game("skew", 5, 0.1, num_games=2, seed=1)
    s = stack_games([a, b])
    assert s.num_contexts == 3
    np.testing.assert_allclose(s.weights, [0.5, 0.25, 0.25])
    with pytest.raises(InvalidParameterError, match="one β"):
        stack_games([a, nashmp.make_game("random", 5, 0.2)])


class TestSupportRestriction:
    """A zero in π_ref removes the response: π*_β and every iterate are exactly zero there."""

    def setup_method(self) -> None:
        rng = np.random.default_rng(0)
        lower = np.tril(rng.uniform(size=(6, 6)), -1)
        self.P = lower + np.triu(1 - lower.T, 1) + 0.5 * np.eye(6)
        self.ref = np.array([0.3, 0.0, 0.2, 0.0, 0.4, 0.1])
        self.game = PreferenceGame(self.P, self.ref, 0.05)

    def test_equilibrium_equals_reduced_game(self) -> None:
        keep = self.ref > 0
        reduced = PreferenceGame(self.P[np.ix_(keep, keep)], self.ref[keep], 0.05)
        full = nashmp.solve_equilibrium(self.game).policy
        assert np.all(full[~keep] == 0.0)
        np.testing.assert_allclose(full[keep], nashmp.solve_equilibrium(reduced).policy, atol=1e-12)

    @pytest.mark.parametrize("algo", sorted(nashmp.ALGORITHMS))
    def test_algorithms_stay_on_support(self, algo: str) -> None:
        tr = nashmp.run(self.game, algo, 30)
        lp = tr.final.log_policy[0]
        assert np.all(np.isneginf(lp[self.ref == 0]))
        assert np.all(np.isfinite(lp[self.ref > 0]))
        for name in ("kl_to_star", "exploitability", "span"):
            assert np.all(np.isfinite(tr.metrics[name])), name


def test_huge_context_weights_are_normalised_without_overflow() -> None:
    """Issue 13, item 8: [1e308, 1e308] summed to inf and normalised to zeros, so every metric read 0.0."""
    P = np.stack([P3, P3.T])
    huge = PreferenceGame(P, REF3, 0.1, weights=[1e308, 1e308])
    plain = PreferenceGame(P, REF3, 0.1)
    np.testing.assert_array_equal(huge.weights, plain.weights)
    pi = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    from nashmp.equilibrium import solve_equilibrium
    from nashmp.metrics import aggregate, context_metrics

    star = solve_equilibrium(plain).log_policy
    a = aggregate(huge, context_metrics(huge, star, np.log(pi)))
    b = aggregate(plain, context_metrics(plain, star, np.log(pi)))
    assert a["kl_to_star"] > 0 and a == pytest.approx(b)
    tiny = PreferenceGame(P, REF3, 0.1, weights=[5e-324, 1e-323])  # subnormal weights keep their ratio
    np.testing.assert_allclose(tiny.weights, [1 / 3, 2 / 3])


@pytest.mark.parametrize("atol", [float("nan"), float("inf"), -1e-8, "tight"])
def test_atol_must_be_a_finite_nonnegative_number(atol: object) -> None:
    """Issue 13, item 8: atol=nan made every tolerance comparison False, which turned validation off."""
    with pytest.raises(InvalidParameterError, match="atol"):
        PreferenceGame(P3, REF3, 0.1, atol=atol)  # type: ignore[arg-type]
    with pytest.raises(InvalidPreferenceError):  # and with a valid atol a bad P is still refused
        PreferenceGame([[0.5, 0.9], [0.9, 0.5]], [0.5, 0.5], 0.1, atol=1e-8)
