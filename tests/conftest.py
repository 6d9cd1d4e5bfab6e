"""Shared fixtures and hypothesis strategies: random preference games with known structure."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import nashmp

# LLM tests never touch the network: tiny models are built in code, models load from local folders only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

settings.register_profile("nashmp", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nashmp")

#: The 3-action game of ../shared/docs/nash-mp.md §2.5 (the paper-digest test vectors).
P3 = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
REF3 = np.array([0.5, 0.3, 0.2])


def random_preference(rng: np.random.Generator, n: int) -> np.ndarray:
    lower = np.tril(rng.uniform(size=(n, n)), -1)
    return lower + np.triu(1.0 - lower.T, 1) + 0.5 * np.eye(n)


@st.composite
def games(draw: st.DrawFn, max_n: int = 10, min_beta: float = 1e-3, max_beta: float = 10.0, zeros: bool = False):
    """A random single game: n in [2, max_n], β log-uniform, Dirichlet-like reference (optionally with zeros)."""
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(2, max_n))
    log_beta = draw(st.floats(np.log10(min_beta), np.log10(max_beta)))
    rng = np.random.default_rng(seed)
    P = random_preference(rng, n)
    ref = np.exp(rng.standard_normal(n))
    if zeros and n > 2:
        ref[rng.choice(n, size=rng.integers(1, n - 1), replace=False)] = 0.0
    ref /= ref.sum()
    return nashmp.PreferenceGame(P, ref, 10.0**log_beta)


@pytest.fixture
def game3() -> nashmp.PreferenceGame:
    return nashmp.PreferenceGame(P3, REF3, 0.1)
