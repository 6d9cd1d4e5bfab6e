"""The PreferenceOracle contract, for every oracle: P(a,b) + P(b,a) = 1, values in [0, 1], clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import nashmp
from nashmp.errors import InvalidOracleOutputError
from nashmp.oracles import CallableOracle, GameOracle, NoisyOracle, PreferenceOracle

GAME = nashmp.make_game("random", 6, 0.1, num_games=3, seed=0)
RNG = np.random.default_rng(0)
X, A, B = RNG.integers(0, 3, 200), RNG.integers(0, 6, 200), RNG.integers(0, 6, 200)


def _position_biased(x, a, b):  # noqa: ANN001, ANN202 - a judge that prefers whatever is shown first
    return np.clip(GAME.P[np.asarray(x), np.asarray(a), np.asarray(b)] + 0.1, 0, 1)


ORACLES = {
    "game": lambda: GameOracle(GAME),
    "callable": lambda: CallableOracle(lambda x, a, b: GAME.P[np.asarray(x), np.asarray(a), np.asarray(b)]),
    "callable-symmetrized": lambda: CallableOracle(_position_biased, symmetrize=True),
}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_contract_exact_oracles(name: str) -> None:
    oracle: PreferenceOracle = ORACLES[name]()
    p_ab = oracle.probability(X, A, B)
    p_ba = oracle.probability(X, B, A)
    assert np.all((p_ab >= 0) & (p_ab <= 1))
    np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-12)
    per_pair = 2 if name == "callable-symmetrized" else 1
    assert oracle.queries == 2 * len(A) * per_pair


def test_symmetrized_judge_removes_position_bias() -> None:
    """½[q(a,b) + 1 − q(b,a)] cancels a constant position bias exactly (the raw judge is off by the bias)."""
    raw = CallableOracle(_position_biased)
    fair = CallableOracle(_position_biased, symmetrize=True)
    p, bias = GAME.P[X, A, B], 0.1
    unclipped = (p + bias <= 1) & (1 - p + bias <= 1)  # _position_biased's clip is inactive both ways
    assert unclipped.sum() > 50
    raw_ab, fair_ab, fair_ba = raw.probability(X, A, B), fair.probability(X, A, B), fair.probability(X, B, A)
    np.testing.assert_allclose(raw_ab[unclipped], p[unclipped] + bias, atol=1e-12)  # the bias is there
    np.testing.assert_allclose(fair_ab[unclipped], p[unclipped], atol=1e-12)  # and gone
    np.testing.assert_allclose(fair_ab + fair_ba, 1.0, atol=1e-12)
    np.testing.assert_allclose(fair.probability(X, A, A), 0.5, atol=1e-12)  # identical answers tie


def test_noisy_oracle_contract_in_expectation() -> None:
    oracle = NoisyOracle(GameOracle(GAME), seed=1)
    x, a, b = np.zeros(20000, int), np.zeros(20000, int), np.ones(20000, int)
    o_ab = oracle.probability(x, a, b)
    o_ba = oracle.probability(x, b, a)
    assert set(np.unique(o_ab)) <= {0.0, 1.0}
    p = GAME.P[0, 0, 1]
    se = np.sqrt(p * (1 - p) / 20000)
    assert abs(o_ab.mean() - p) < 5 * se
    assert abs(o_ab.mean() + o_ba.mean() - 1) < 10 * se
    np.testing.assert_array_equal(oracle.probability([0, 1], [2, 3], [2, 3]), [0.5, 0.5])  # ties stay ½
    assert oracle.queries == 40002


def test_outcome_draws_bernoulli_with_the_preference_probability() -> None:
    """outcome() is 1 with probability P(a≻b|x): frequencies match P for pairs with small and large P."""
    oracle = GameOracle(GAME)
    pairs = [(0, 0, 1), (1, 2, 3), (2, 4, 5), (0, 3, 3)]  # the last one is a tie
    m = 20_000
    rng = np.random.default_rng(0)
    for x, a, b in pairs:
        o = oracle.outcome(np.full(m, x), np.full(m, a), np.full(m, b), rng)
        assert set(np.unique(o)) <= {0.0, 1.0}
        p = GAME.P[x, a, b]
        assert abs(o.mean() - p) < 5 * np.sqrt(p * (1 - p) / m) + 1e-12, (x, a, b)
    assert oracle.queries == len(pairs) * m
    assert 0.1 < GAME.P[0, 0, 1] < 0.9 or 0.1 < GAME.P[1, 2, 3] < 0.9  # a non-degenerate pair is among them


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x, a, b: np.full(len(a), np.nan), "NaN"),
        (lambda x, a, b: np.full(len(a), 1.5), r"outside \[0, 1\]"),
        (lambda x, a, b: np.full(len(a) + 1, 0.5), "one per pair"),
        (lambda x, a, b: ["yes"] * len(a), "non-numeric"),
    ],
)
def test_bad_oracle_output_is_a_clear_error(fn, match: str) -> None:  # noqa: ANN001
    with pytest.raises(InvalidOracleOutputError, match=match):
        CallableOracle(fn).probability([0, 0], [1, 2], [2, 1])


def test_mismatched_batch_and_non_callable() -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="same length"):
        GameOracle(GAME).probability([0], [1, 2], [2, 1])
    with pytest.raises(nashmp.InvalidParameterError, match="callable"):
        CallableOracle(3)  # type: ignore[arg-type]
