"""On-policy MDPO: analytic KL, the loss by hand, one iteration's descent, learning, exact resume, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

import nashmp
from nashmp.rl.mdpo import MDPO, MDPOConfig, mdpo_loss, policy_kl

SMALL = dict(n_steps=256, num_envs=2, total_steps=1024, vf_minibatch=64, eval_episodes=2)


def test_gaussian_kl_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(0)
    new = Normal(torch.tensor([[0.3, -1.0]], dtype=torch.float64), torch.tensor([[0.5, 1.5]], dtype=torch.float64))
    old = Normal(torch.tensor([[0.0, -0.5]], dtype=torch.float64), torch.tensor([[0.8, 1.0]], dtype=torch.float64))
    x = new.mean + new.stddev * torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    mc = (new.log_prob(x) - old.log_prob(x)).sum(-1)
    exact = policy_kl(new, old)[0].item()
    assert abs(mc.mean().item() - exact) < 4 * mc.std().item() / np.sqrt(len(mc))
    # closed form: Σ log(σ_o/σ_n) + (σ_n² + (μ_n − μ_o)²)/(2σ_o²) − ½
    by_hand = sum(
        np.log(so / sn) + (sn**2 + (mn - mo) ** 2) / (2 * so**2) - 0.5
        for mn, sn, mo, so in [(0.3, 0.5, 0.0, 0.8), (-1.0, 1.5, -0.5, 1.0)]
    )
    assert exact == pytest.approx(by_hand, abs=1e-12)


def test_categorical_kl_is_reverse_direction() -> None:
    p, q = torch.tensor([[0.7, 0.3]]), torch.tensor([[0.4, 0.6]])
    kl = policy_kl(Categorical(probs=p), Categorical(probs=q)).item()
    assert kl == pytest.approx(0.7 * np.log(0.7 / 0.4) + 0.3 * np.log(0.3 / 0.6), abs=1e-6)


def test_mdpo_loss_and_gradient_by_hand() -> None:
    log_ratio = torch.tensor([0.1, -0.2], requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    kl = torch.tensor([0.05, 0.15], requires_grad=True)
    loss = mdpo_loss(log_ratio, adv, kl, kl_weight=2.0)
    expected = -(np.exp(0.1) * 1.0 + np.exp(-0.2) * -2.0) / 2 + 2.0 * 0.1
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    np.testing.assert_allclose(log_ratio.grad.numpy(), [-np.exp(0.1) / 2, np.exp(-0.2)], rtol=1e-6)
    np.testing.assert_allclose(kl.grad.numpy(), [1.0, 1.0], rtol=1e-6)


def test_kl_weight_schedule() -> None:
    agent = MDPO(MDPOConfig(**{**SMALL, "total_steps": 2560}))  # K = 10
    assert agent.kl_weight(1) == pytest.approx(1.0)
    assert agent.kl_weight(6) == pytest.approx(1 / 0.5)
    paper = MDPO(MDPOConfig(**{**SMALL, "schedule_steps": 10_000_000}))
    assert paper.kl_weight(2) == pytest.approx(1 / (1 - 1 / (10_000_000 // 256)))


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_one_iteration_lowers_the_surrogate_on_its_batch(env_id: str) -> None:
    agent = MDPO(MDPOConfig(env_id=env_id, **SMALL))
    batch = agent.collect()
    obs, actions = torch.as_tensor(batch["obs"]), torch.as_tensor(batch["actions"])
    adv = torch.as_tensor(batch["advantages"])
    adv = (adv - adv.mean()) / adv.std()

    def surrogate(actor: torch.nn.Module, old: torch.nn.Module) -> float:
        with torch.no_grad():
            d, od = actor.dist(obs), old.dist(obs)
            lr = actor.log_prob(d, actions) - old.log_prob(od, actions)
            return mdpo_loss(lr, adv, policy_kl(d, od), agent.kl_weight(1)).item()

    import copy

    old = copy.deepcopy(agent.actor)
    before = surrogate(agent.actor, old)
    stats = agent.update(batch)
    assert surrogate(agent.actor, old) < before
    assert stats["losses/approx_kl"] > 0


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = MDPOConfig(**{**SMALL, "total_steps": 1536})
    straight = MDPO(cfg)
    straight.learn()
    first = MDPO(cfg)
    first.learn(stop_after=2, out_dir=tmp_path, checkpoint_every=2)
    resumed = MDPO.load(tmp_path / "checkpoint.pt")
    resumed.learn()
    for a, b in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [h["losses/policy_loss"] for h in straight.progress.history] == [
        h["losses/policy_loss"] for h in resumed.progress.history
    ]


@pytest.mark.parametrize("n_steps", [128, 200])
def test_resume_restores_mujoco_physics(tmp_path: Path, n_steps: int) -> None:
    """Bit for bit: needs MuJoCo's whole integration state (at 200 steps the solver's warm start matters)."""
    pytest.importorskip("mujoco")
    cfg = MDPOConfig(env_id="HalfCheetah-v5", n_steps=n_steps, num_envs=1, total_steps=3 * n_steps, vf_minibatch=64)
    straight = MDPO(cfg)
    straight.learn()
    first = MDPO(cfg)
    first.learn(stop_after=1, out_dir=tmp_path, checkpoint_every=1)
    resumed = MDPO.load(tmp_path / "checkpoint.pt")
    resumed.learn()
    for a, b in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("env_id", "match"),
    [("NoSuchEnv-v0", "cannot make environment"), ("Blackjack-v1", "flat Box observation")],
)
def test_bad_environment_is_one_clear_error(env_id: str, match: str) -> None:
    with pytest.raises(nashmp.InvalidParameterError, match=match):
        MDPO(MDPOConfig(env_id=env_id, **SMALL))


def test_bad_config() -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="multiple of num_envs"):
        MDPOConfig(n_steps=100, num_envs=3)
    with pytest.raises(nashmp.InvalidParameterError, match="sgd_steps"):
        MDPOConfig(sgd_steps=0)


def test_cli_rl_train_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "run"
    base = ["rl", "train", "--env", "Pendulum-v1", "--param", "n_steps=256", "--param", "vf_minibatch=64"]
    common = ["--out", str(out), "--no-progress", "--eval-episodes", "1", "--checkpoint-every", "1"]
    assert main([*base, "--steps", "512", *common]) == 0
    assert {"metrics.csv", "curve.png", "checkpoint.pt", "eval.json"} <= {p.name for p in out.iterdir()}
    assert main([*base, "--steps", "1024", "--resume", *common]) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header + 4 iterations: 2 before the resume, 2 after
    capsys.readouterr()
    assert main(["rl", "train", "--env", "NoSuchEnv-v0", "--steps", "10", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nashmp: error: cannot make environment") and err.count("\n") == 1


def test_short_pendulum_run_beats_a_random_policy() -> None:
    """80k steps with Pendulum-friendly settings (γ = 0.9, lr 1e-3, 4 envs × 256) — seeded, ~40 s on 2 cores."""
    import gymnasium as gym

    cfg = MDPOConfig(env_id="Pendulum-v1", total_steps=81_920, gamma=0.9, lr=1e-3, vf_lr=1e-3, n_steps=1024, num_envs=4)
    agent = MDPO(cfg)
    agent.learn()
    trained = agent.evaluate(10)
    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    random_returns = []
    for ep in range(10):
        env.reset(seed=10_000 + ep)
        total, done = 0.0, False
        while not done:
            _, r, te, tr, _ = env.step(env.action_space.sample())
            total, done = total + float(r), te or tr
        random_returns.append(total)
    assert trained.mean() > np.mean(random_returns) + 400, (trained.mean(), np.mean(random_returns))
