"""Seeded generators of preference games (single or batched over ``num_games`` contexts).

Every generator returns a :class:`~nashmp.games.PreferenceGame`; with ``num_games > 1`` the games are
stacked as contexts of one batched game (equal weights), which is how nashmp runs many games at once.

Families
--------
``random``       EGPO's construction: P_ij ∼ U(0,1) below the diagonal, P_ji = 1 − P_ij, P_ii = ½.
``tie``          every comparison is a tie (P ≡ ½): π*_β = π_ref.
``bradley_terry`` transitive: P_ij = σ(r_i − r_j) with r ∼ N(0, scale²).
``rps``          block-diagonal copies of rock–paper–scissors (win prob ½ ± ε) with a random
                 transitive background between blocks.
``skew``         P = ½ + ε S with S skew-symmetric (Gaussian, scaled so |P − ½| ≤ ½).
``cyclic``       the hard intransitive family (ours): a regular cyclic tournament (y beats the next
                 ⌊(n−1)/2⌋ responses round the circle, with certainty) played against a reference
                 that decays geometrically round the same circle. The skew part has the largest
                 possible ℓ1→ℓ∞ gain (½), its spectrum is spread over the whole imaginary axis, and the
                 equilibrium sits far from π_ref, so a first-order method cannot take a step much
                 above η ≈ 2β without the mirror-prox inequality failing; at small β they crawl.

Reference policies default to ``softmax(N(0, 1))`` logits as in EGPO (``ref="uniform"`` for uniform).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._numerics import FloatArray, log_normalize
from ..errors import InvalidParameterError
from .game import PreferenceGame, check_positive, check_positive_int

__all__ = [
    "random_game",
    "tie_game",
    "bradley_terry_game",
    "rps_game",
    "skew_game",
    "cyclic_game",
    "FAMILIES",
    "make_game",
]


def _check_size(n: int, num_games: int, minimum: int = 1) -> None:
    if int(n) != n or n < minimum:
        raise InvalidParameterError(f"n must be an integer ≥ {minimum}, got {n!r}.")
    if int(num_games) != num_games or num_games < 1:
        raise InvalidParameterError(f"num_games must be an integer ≥ 1, got {num_games!r}.")


def _reference(rng: np.random.Generator, num_games: int, n: int, ref: str) -> FloatArray:
    if ref == "uniform":
        return np.full((num_games, n), 1.0 / n)
    if ref == "random":
        return np.exp(log_normalize(rng.standard_normal((num_games, n))))
    raise InvalidParameterError(f"ref must be 'random' or 'uniform', got {ref!r}.")


def _finish(P: FloatArray, ref: FloatArray, beta: float) -> PreferenceGame:
    # Exact symmetry by construction: rebuild the upper triangle from the lower one.
    n = P.shape[-1]
    lower = np.tril(P, -1)
    P = lower + np.swapaxes(1.0 - lower, -1, -2) * np.triu(np.ones((n, n)), 1) + 0.5 * np.eye(n)
    if P.shape[0] == 1:
        return PreferenceGame(P[0], ref[0], beta)
    return PreferenceGame(P, ref, beta)


def random_game(n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "random") -> PreferenceGame:
    """EGPO-style random game: lower triangle U(0, 1)."""
    _check_size(n, num_games)
    rng = np.random.default_rng(seed)
    return _finish(rng.uniform(size=(num_games, n, n)), _reference(rng, num_games, n, ref), beta)


def tie_game(n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "random") -> PreferenceGame:
    """Every comparison a tie; π*_β = π_ref."""
    _check_size(n, num_games)
    rng = np.random.default_rng(seed)
    return _finish(np.full((num_games, n, n), 0.5), _reference(rng, num_games, n, ref), beta)


def bradley_terry_game(
    n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "random", scale: float = 1.0
) -> PreferenceGame:
    """Transitive Bradley–Terry game ``P_ij = σ(r_i − r_j)``, r ∼ N(0, scale²)."""
    _check_size(n, num_games)
    check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    r = scale * rng.standard_normal((num_games, n))
    P = 1.0 / (1.0 + np.exp(-(r[:, :, None] - r[:, None, :])))
    return _finish(P, _reference(rng, num_games, n, ref), beta)


def rps_game(
    n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "random", eps: float = 0.5
) -> PreferenceGame:
    """Rock–paper–scissors blocks: within each block of 3, y_i beats y_{i+1 mod 3} w.p. ½ + ε.

    Between blocks the preference is a random transitive background (block scores ∼ N(0,1)) so the
    equilibrium mixes within a few cycles. ``n`` must be a multiple of 3.
    """
    _check_size(n, num_games, minimum=3)
    if n % 3:
        raise InvalidParameterError(f"rps_game needs n to be a multiple of 3, got n={n}.")
    if not 0 < eps <= 0.5:
        raise InvalidParameterError(f"eps must lie in (0, 0.5], got {eps!r}.")
    rng = np.random.default_rng(seed)
    blocks = n // 3
    score = rng.standard_normal((num_games, blocks))
    block_of = np.arange(n) // 3
    s = score[:, block_of]
    P = 1.0 / (1.0 + np.exp(-(s[:, :, None] - s[:, None, :])))
    pos = np.arange(n) % 3
    same = block_of[:, None] == block_of[None, :]
    beats = ((pos[None, :] - pos[:, None]) % 3 == 1) & same  # i beats i+1 within its block
    loses = ((pos[:, None] - pos[None, :]) % 3 == 1) & same
    P = np.where(beats, 0.5 + eps, np.where(loses, 0.5 - eps, P))
    P = np.where(same & ~beats & ~loses, 0.5, P)
    return _finish(P, _reference(rng, num_games, n, ref), beta)


def skew_game(
    n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "random", eps: float = 0.5
) -> PreferenceGame:
    """``P = ½ + ε S`` with S skew-symmetric Gaussian, scaled so that max |S| = 1 (P stays in [0, 1])."""
    _check_size(n, num_games)
    if not 0 < eps <= 0.5:
        raise InvalidParameterError(f"eps must lie in (0, 0.5], got {eps!r}.")
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((num_games, n, n))
    S = G - np.swapaxes(G, -1, -2)
    S /= np.maximum(np.abs(S).max(axis=(-1, -2), keepdims=True), 1e-300)
    return _finish(0.5 + eps * S, _reference(rng, num_games, n, ref), beta)


def cyclic_game(
    n: int, beta: float, *, num_games: int = 1, seed: int = 0, ref: str = "decaying", decay: float = 4.0
) -> PreferenceGame:
    """The hard intransitive family: a regular cyclic tournament against a decaying reference.

    Response i beats i+1, ..., i+⌊(n−1)/2⌋ (mod n) with probability 1 (for even n the opposite
    response is a tie). With ``ref="decaying"`` the reference is ``π_ref(i) ∝ exp(−decay·i/n)`` after
    a random rotation per game (``seed``), so π_ref favours one arc of the cycle while the unregularised
    equilibrium of a regular tournament is uniform: π*_β drifts far from π_ref as β → 0.
    """
    _check_size(n, num_games, minimum=3)
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    dist = (i[None, :] - i[:, None]) % n  # how far ahead j sits from i round the circle
    half = (n - 1) // 2
    P1 = np.where((dist >= 1) & (dist <= half), 1.0, np.where(dist == 0, 0.5, 0.0))
    if n % 2 == 0:
        P1 = np.where(dist == n // 2, 0.5, P1)
    P = np.broadcast_to(P1, (num_games, n, n)).copy()
    if ref == "decaying":
        check_positive("decay", decay)
        shifts = rng.integers(0, n, size=num_games)
        logits = -decay * ((i[None, :] + shifts[:, None]) % n) / n
        ref_arr = np.exp(log_normalize(logits))
    else:
        ref_arr = _reference(rng, num_games, n, ref)
    return _finish(P, ref_arr, beta)


FAMILIES: dict[str, Callable[..., PreferenceGame]] = {
    "random": random_game,
    "tie": tie_game,
    "bradley-terry": bradley_terry_game,
    "rps": rps_game,
    "skew": skew_game,
    "cyclic": cyclic_game,
}


#: the largest preference array :func:`make_game` allocates (bytes); numpy would raise MemoryError later
MAX_GAME_BYTES = 16 * 2**30


def make_game(family: str, n: int, beta: float, *, num_games: int = 1, seed: int = 0, **options: Any) -> PreferenceGame:
    """Build a game of a named family (see :data:`FAMILIES`); ``options`` go to its generator (e.g. ``ref``)."""
    try:
        gen = FAMILIES[family]
    except KeyError:
        raise InvalidParameterError(f"unknown game family {family!r}; choose one of {sorted(FAMILIES)}.") from None
    check_positive_int("n", n)
    check_positive_int("num_games", num_games)
    size = num_games * n * n * 8
    if size > MAX_GAME_BYTES:  # checked before allocating: the (X, n, n) float64 preference array
        raise InvalidParameterError(
            f"a {family!r} game with {num_games} context(s) of n={n} needs {size / 2**30:.1f} GiB for P "
            f"(limit {MAX_GAME_BYTES / 2**30:.0f} GiB); use a smaller n or fewer games."
        )
    try:
        return gen(n, beta, num_games=num_games, seed=seed, **options)
    except TypeError as exc:
        raise InvalidParameterError(f"bad options for family {family!r}: {exc}") from None
