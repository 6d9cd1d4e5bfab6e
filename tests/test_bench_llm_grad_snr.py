"""benchmarks/llm_grad_snr.py's statistics on synthetic per-prompt gradients with a known mean and noise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from llm_grad_snr import GradientMoments  # noqa: E402


def _moments(mu: torch.Tensor, sigma: float, n: int, seed: int = 0) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    m = GradientMoments(mu.numel())
    for _ in range(n):
        m.add(mu + sigma * torch.randn(mu.numel(), generator=gen, dtype=torch.float64))
    return m.summary()


def test_prompts_for_snr1_recovers_the_known_ratio() -> None:
    d, sigma = 4000, 1.0
    mu = torch.full((d,), 0.1, dtype=torch.float64)  # ‖μ‖² = 40, tr Σ = 4000: n* = 100
    s = _moments(mu, sigma, 400)
    assert s["noise_trace"] == pytest.approx(d * sigma**2, rel=0.02)
    assert s["signal_sq"] == pytest.approx(40.0, rel=0.1)
    assert s["prompts_for_snr1"] == pytest.approx(100.0, rel=0.1)
    # two halves of 200: each mean's noise is 4000/200 = 20 against a signal of 40, so cos ≈ 40/60
    assert s["split_half_cosine"] == pytest.approx(40 / 60, abs=0.08)
    assert s["per_weight_prompts_for_snr1_median"] == pytest.approx(100.0, rel=0.3)


def test_pure_noise_has_no_direction() -> None:
    s = _moments(torch.zeros(4000, dtype=torch.float64), 1.0, 200, seed=1)
    assert abs(s["split_half_cosine"]) < 0.1
    assert s["per_weight_share_significant"] == pytest.approx(0.0455, abs=0.015)  # P(|z| > 2)
    assert s["prompts_for_snr1"] == float("inf") or s["prompts_for_snr1"] > 1000


def test_weights_without_gradient_are_left_out() -> None:
    mu = torch.cat([torch.full((100,), 1.0), torch.zeros(50)]).double()
    gen = torch.Generator().manual_seed(2)
    m = GradientMoments(150)
    for _ in range(50):
        g = mu + torch.cat([torch.randn(100, generator=gen, dtype=torch.float64), torch.zeros(50).double()])
        m.add(g)
    s = m.summary()
    assert s["weights"] == 150 and s["weights_with_gradient"] == 100
    assert s["per_weight_prompts_for_snr1_median"] == pytest.approx(1.0, rel=0.3)
