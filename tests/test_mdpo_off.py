"""Off-policy MDPO: squashed-Gaussian log-probs, the SAC special case, old-policy refresh, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

import nashmp
from nashmp.rl.mdpo_off import MDPOOff, MDPOOffConfig, TanhGaussianActor, actor_loss

TINY = dict(
    total_steps=400, learning_starts=100, batch_size=32, hidden=32, old_refresh=50, eval_episodes=1, torch_threads=1
)


def test_squashed_log_prob_matches_torch_transformed_distribution() -> None:
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    actor = TanhGaussianActor(3, 2, 16, low, high).double()
    obs = torch.randn(5, 3, dtype=torch.float64)
    a, u, logp = actor.sample(obs)
    mu, log_std = actor.params(obs)
    ref = TransformedDistribution(
        Normal(mu, log_std.exp()),
        [TanhTransform(), AffineTransform(torch.as_tensor((high + low) / 2), torch.as_tensor((high - low) / 2))],
    )
    torch.testing.assert_close(logp, ref.log_prob(a).sum(-1), rtol=1e-6, atol=1e-6)
    assert torch.all(a >= torch.as_tensor(low)) and torch.all(a <= torch.as_tensor(high))


def test_kl_coeff_equal_to_entropy_is_sac() -> None:
    """c = λ: the π_old terms cancel and the loss (value and gradient) is SAC's λ log π − Q."""
    logp_new = torch.tensor([-1.0, -0.5], requires_grad=True)
    logp_old = torch.tensor([-0.7, -0.2], requires_grad=True)
    q = torch.tensor([3.0, 1.0], requires_grad=True)
    loss = actor_loss(logp_new, logp_old, q, kl_coeff=0.2, entropy=0.2)
    assert loss.item() == pytest.approx((0.2 * -1.0 - 3.0 + 0.2 * -0.5 - 1.0) / 2)
    loss.backward()
    np.testing.assert_allclose(logp_new.grad.numpy(), [0.1, 0.1])
    np.testing.assert_allclose(logp_old.grad.numpy(), [0.0, 0.0])
    # c ≠ λ: the KL term pulls towards π_old with weight c
    lo = logp_old.detach().requires_grad_(True)
    actor_loss(logp_new.detach(), lo, q.detach(), kl_coeff=1.0, entropy=0.2).backward()
    np.testing.assert_allclose(lo.grad.numpy(), [(0.2 - 1.0) / 2] * 2)


def test_old_policy_is_refreshed_every_refresh_period() -> None:
    agent = MDPOOff(MDPOOffConfig(**TINY))
    agent.learn(stop_after=149)
    snapshot = [p.detach().clone() for p in agent.actor.parameters()]
    assert any((a != b).any() for a, b in zip(snapshot, agent.old.parameters(), strict=True))  # 49 steps since
    agent.learn(stop_after=1)  # step 150: π_old ← π_θ, then the gradient step moves π_θ on
    for a, b in zip(snapshot, agent.old.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_update_moves_actor_and_critics_and_leaves_critics_trainable() -> None:
    """The actor step freezes the critics (it only needs ∂Q/∂a); the critic step must still train them."""
    agent = MDPOOff(MDPOOffConfig(**TINY))
    agent.learn(stop_after=TINY["learning_starts"])  # warm-up only: no gradient step yet
    actor0 = [p.detach().clone() for p in agent.actor.parameters()]
    q0 = [p.detach().clone() for p in agent.q.parameters()]
    agent.update()
    assert all(p.requires_grad for p in agent.q.parameters())
    assert all((a != b).any() for a, b in zip(actor0, agent.actor.parameters(), strict=True))
    assert all((a != b).any() for a, b in zip(q0, agent.q.parameters(), strict=True))


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    straight = MDPOOff(MDPOOffConfig(**TINY))
    straight.learn(log_every=100)
    first = MDPOOff(MDPOOffConfig(**TINY))
    first.learn(stop_after=250, out_dir=tmp_path, checkpoint_every=250, log_every=100)
    resumed = MDPOOff.load(tmp_path / "checkpoint.pt")
    resumed.learn(log_every=100)
    for a, b in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight.q.parameters(), resumed.q.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_collection_is_stochastic_unless_asked() -> None:
    cfg = {**TINY, "learning_starts": 0}
    stochastic = MDPOOff(MDPOOffConfig(**cfg))
    obs = stochastic.obs
    assert not np.allclose(stochastic._action(obs), stochastic._action(obs))
    deterministic = MDPOOff(MDPOOffConfig(**cfg, deterministic_collection=True))
    np.testing.assert_array_equal(deterministic._action(obs), deterministic._action(obs))


@pytest.mark.parametrize(("env_id", "match"), [("CartPole-v1", "continuous"), ("NoSuchEnv-v0", "cannot make")])
def test_bad_environment(env_id: str, match: str) -> None:
    with pytest.raises(nashmp.InvalidParameterError, match=match):
        MDPOOff(MDPOOffConfig(env_id=env_id, **TINY))


def test_cli_mdpo_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "off"
    argv = ["rl", "train", "--algo", "mdpo-off", "--env", "Pendulum-v1", "--steps", "300", "--out", str(out)]
    params = ["--param", "learning_starts=100", "--param", "batch_size=32", "--param", "hidden=32"]
    assert main([*argv, *params, "--eval-episodes", "1", "--no-progress"]) == 0
    assert {"metrics.csv", "curve.png", "checkpoint.pt", "eval.json"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert main([*argv[:5], "CartPole-v1", "--steps", "10", "--out", str(out)]) == 2
    assert "continuous" in capsys.readouterr().err
