"""On-policy MDPO's step options (issue 12): anneal_lr, kl_target, kl_weight_max, clip_obs / clip_reward.

The schedules are checked as pure functions against their formulas, then inside short Pendulum runs: the
optimisers' step sizes per iteration, the direction the adaptive rule moves the lr, the bounds the clipping
puts on what the agent sees, exact resume with every option on, and one-line errors for bad values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nashmp.errors import InvalidParameterError
from nashmp.rl import load_policy
from nashmp.rl.checkpoint import read_checkpoint, write_atomic
from nashmp.rl.mdpo import MDPO, MDPOConfig
from nashmp.rl.schedules import adapt_lr, anneal_factor, kl_weight

SMALL = dict(n_steps=256, num_envs=2, total_steps=1024, vf_minibatch=64, eval_episodes=1)  # N = 4 iterations


# --------------------------------------------------------------------------- the formulas
def test_kl_weight_is_the_release_schedule_capped() -> None:
    K = 4
    assert [kl_weight(k, K) for k in (1, 2, 3, 4, 5)] == pytest.approx([1, 4 / 3, 2, 4, 4])  # floored at t = 1/K
    assert [kl_weight(k, K, cap=1.5) for k in (1, 2, 3, 4)] == pytest.approx([1, 4 / 3, 1.5, 1.5])
    assert kl_weight(488, 488) == pytest.approx(488)  # the end of a 1M-step run of 2048-step iterations
    assert kl_weight(488, 488, cap=10.0) == 10.0


def test_anneal_factor_is_linear_from_one_to_one_over_n() -> None:
    assert [anneal_factor(k, 4) for k in (1, 2, 3, 4)] == pytest.approx([1, 0.75, 0.5, 0.25])


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (0.05, 1e-3 / 1.5),  # above 2·target: divide
        (0.0201, 1e-3 / 1.5),
        (0.02, 1e-3),  # the band's edges are inside it
        (0.01, 1e-3),
        (0.005, 1e-3),
        (0.0049, 1.5e-3),  # below target/2: multiply
        (math.nan, 1e-3),  # a NaN KL leaves the lr alone
    ],
)
def test_adapt_lr_moves_by_the_documented_rule(kl: float, expected: float) -> None:
    assert adapt_lr(1e-3, kl, 0.01, 1e-6, 1e-2) == pytest.approx(expected, rel=1e-12)


def test_adapt_lr_stays_within_its_bounds() -> None:
    assert adapt_lr(1e-2, 0.0, 0.01, 1e-6, 1e-2) == 1e-2
    assert adapt_lr(1e-6, 1.0, 0.01, 1e-6, 1e-2) == 1e-6


# --------------------------------------------------------------------------- inside runs
def _lrs_per_iteration(agent: MDPO) -> list[tuple[float, float]]:
    """Run ``agent`` and record both optimisers' step size as each update used it."""
    seen: list[tuple[float, float]] = []
    update = agent.update

    def spy(batch: dict[str, np.ndarray]) -> dict[str, float]:
        stats = update(batch)
        seen.append((agent.opt.param_groups[0]["lr"], agent.vf_opt.param_groups[0]["lr"]))
        return stats

    agent.update = spy  # type: ignore[method-assign]
    agent.learn()
    return seen


def test_defaults_adapt_the_actor_step_on_the_measured_kl_and_release_keeps_it_constant() -> None:
    cfg = MDPOConfig(**SMALL)
    assert (cfg.lr, cfg.anneal_lr, cfg.kl_target, cfg.kl_weight_max, cfg.clip_obs, cfg.clip_reward) == (
        1e-3, False, 0.01, 2.0, 10.0, 10.0
    )  # fmt: skip
    agent = MDPO(cfg)
    seen = _lrs_per_iteration(agent)
    kls = [h["losses/approx_kl"] for h in agent.progress.history]
    expected = [1e-3]
    for kl in kls[:-1]:  # η_{k+1} from iteration k's KL (rl_games' rule), the critic's lr untouched
        expected.append(adapt_lr(expected[-1], kl, 0.01, cfg.lr_min, cfg.lr_max))
    assert [a for a, _ in seen] == pytest.approx(expected, rel=1e-12)
    assert {c for _, c in seen} == {3e-4}
    assert len(set(expected)) > 1  # the rule moved the step in this run, so the check above has teeth
    release = MDPOConfig.from_preset("release", **SMALL)
    assert (release.kl_target, release.kl_weight_max, release.clip_obs, release.clip_reward) == (None,) * 4
    assert _lrs_per_iteration(MDPO(release)) == [(3e-4, 3e-4)] * 4


def test_anneal_lr_follows_the_linear_schedule_for_actor_and_critic() -> None:
    agent = MDPO(MDPOConfig(**SMALL, anneal_lr=True, lr=1e-3, vf_lr=2e-3, kl_target=None))
    seen = _lrs_per_iteration(agent)
    expected = [(1e-3 * (1 - (k - 1) / 4), 2e-3 * (1 - (k - 1) / 4)) for k in (1, 2, 3, 4)]
    assert np.asarray(seen) == pytest.approx(np.asarray(expected), rel=1e-12)
    assert [h["charts/learning_rate"] for h in agent.progress.history] == pytest.approx([e[0] for e in expected])


def test_kl_target_lowers_a_step_that_moves_too_far() -> None:
    # lr at its upper bound and a target no step can stay under: every iteration's KL is > 2·target
    agent = MDPO(MDPOConfig(**SMALL, lr=1e-2, lr_max=1e-2, kl_target=1e-9))
    actor_lrs = [a for a, _ in _lrs_per_iteration(agent)]
    assert all(h["losses/approx_kl"] > 2e-9 for h in agent.progress.history)
    assert actor_lrs == pytest.approx([1e-2 / 1.5**i for i in range(4)], rel=1e-12)
    assert agent.progress.actor_lr == pytest.approx(1e-2 / 1.5**4)


def test_kl_target_raises_a_step_that_barely_moves_up_to_lr_max() -> None:
    agent = MDPO(MDPOConfig(**SMALL, lr=1e-6, lr_min=1e-6, lr_max=2e-6, vf_lr=1e-3, kl_target=1.0))
    seen = _lrs_per_iteration(agent)
    assert all(h["losses/approx_kl"] < 0.5 for h in agent.progress.history)
    assert [a for a, _ in seen] == pytest.approx([1e-6, 1.5e-6, 2e-6, 2e-6], rel=1e-12)  # ×1.5, then clamped
    assert {c for _, c in seen} == {1e-3}  # the critic's step size is not adapted


def test_kl_target_and_annealing_combine_multiplicatively() -> None:
    agent = MDPO(MDPOConfig(**SMALL, lr=1e-2, lr_max=1e-2, kl_target=1e-9, anneal_lr=True))
    actor_lrs = [a for a, _ in _lrs_per_iteration(agent)]
    assert actor_lrs == pytest.approx([1e-2 / 1.5**i * (1 - i / 4) for i in range(4)], rel=1e-12)


def test_kl_weight_max_bounds_the_logged_kl_weight() -> None:
    capped = MDPO(MDPOConfig(**SMALL, schedule_steps=1024, kl_weight_max=1.5))  # uncapped: 1, 4/3, 2, 4
    capped.learn()
    weights = [h["train/kl_weight"] for h in capped.progress.history]
    assert weights == pytest.approx([1, 4 / 3, 1.5, 1.5])


def test_clip_obs_bounds_the_observations_the_actor_sees_in_training_and_in_the_policy(tmp_path: Path) -> None:
    bound = 0.3
    agent = MDPO(MDPOConfig(**SMALL, clip_obs=bound))
    obs = agent.collect()["obs"]
    assert np.abs(obs).max() == pytest.approx(bound)  # reached, so the clip binds ...
    assert np.abs(MDPO(MDPOConfig(**SMALL, clip_obs=None)).collect()["obs"]).max() > 2 * bound  # ... unclipped: past
    raw = np.array([[50.0, -50.0, 8.0]])
    assert np.abs(agent.policy().normalize(raw)).max() == pytest.approx(bound)
    agent.save_policy(tmp_path / "policy.pt")
    np.testing.assert_array_equal(load_policy(tmp_path / "policy.pt").normalize(raw), agent.policy().normalize(raw))


def test_clip_reward_bounds_the_rewards_the_agent_sees() -> None:
    def rewards(**extra: float) -> np.ndarray:
        agent = MDPO(MDPOConfig(**SMALL, **extra))
        out = []
        for _ in range(200):
            _, r, *_ = agent.env.step(np.tile(agent.action_space.high, (2, 1)))
            out.append(r)
        return np.abs(np.concatenate(out))

    assert rewards(clip_reward=0.05).max() == pytest.approx(0.05)
    assert rewards(clip_reward=None).max() > 0.1  # the same rollout unclipped goes past the bound


def test_the_clips_belong_to_the_normalisation_and_do_nothing_without_it() -> None:
    # as SB3 VecNormalize's clip_obs/clip_reward: the default ±10 must not clip a normalize=False run's raw values
    def rollout(**clips: float | None) -> dict[str, np.ndarray]:
        return MDPO(MDPOConfig(**SMALL, normalize=False, **clips)).collect()

    raw, clipped = rollout(clip_obs=None, clip_reward=None), rollout(clip_obs=0.3, clip_reward=0.05)
    assert np.abs(raw["obs"]).max() > 0.3  # the bound would bind on these observations if it applied
    for key in ("obs", "advantages"):
        np.testing.assert_array_equal(raw[key], clipped[key])


def test_resume_with_every_new_option_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    cfg = MDPOConfig(**{**SMALL, "total_steps": 1536}, anneal_lr=True, kl_target=1e-7, lr=1e-3, kl_weight_max=1.2,
                     clip_obs=0.5, clip_reward=0.1, schedule_steps=1536)  # fmt: skip
    straight = MDPO(cfg)
    straight.learn()
    first = MDPO(cfg)
    first.learn(stop_after=2, out_dir=tmp_path, checkpoint_every=2)
    assert first.progress.actor_lr == pytest.approx(1e-3 / 1.5**2)  # state that the checkpoint must carry
    resumed = MDPO.load(tmp_path / "checkpoint.pt")
    resumed.learn()
    for a, b in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    keys = ("losses/policy_loss", "charts/learning_rate", "train/kl_weight", "losses/approx_kl")
    assert [[h[k] for k in keys] for h in straight.progress.history] == [
        [h[k] for k in keys] for h in resumed.progress.history
    ]


def test_a_checkpoint_from_before_the_options_resumes_with_them_off(tmp_path: Path) -> None:
    agent = MDPO(MDPOConfig.from_preset("release-run-budget", **SMALL))  # the defaults before the options
    agent.learn(stop_after=1)
    path = agent.save(tmp_path / "checkpoint.pt")
    blob = read_checkpoint(path)
    new = ("clip_obs", "clip_reward", "anneal_lr", "kl_target", "lr_min", "lr_max", "kl_weight_max")
    blob["config"] = {k: v for k, v in blob["config"].items() if k not in new}
    blob["progress"] = {k: v for k, v in blob["progress"].items() if k != "actor_lr"}
    write_atomic(blob, path)
    resumed = MDPO.load(path)
    # the step it was trained with (the options off), not today's defaults
    assert (resumed.cfg.anneal_lr, resumed.cfg.kl_target, resumed.progress.actor_lr) == (False, None, None)
    assert (resumed.cfg.kl_weight_max, resumed.cfg.clip_obs, resumed.cfg.clip_reward) == (None, None, None)
    resumed.learn()
    assert resumed.progress.iteration == 4


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"kl_target": 0.0}, "kl_target must be a finite number > 0"),
        ({"kl_target": -0.01}, "kl_target must be a finite number > 0"),
        ({"kl_weight_max": -1.0}, "kl_weight_max must be a finite number > 0"),
        ({"clip_obs": 0.0}, "clip_obs must be a finite number > 0"),
        ({"clip_reward": math.nan}, "clip_reward must be a finite number > 0"),
        ({"lr_min": 0.0}, "lr_min must be a finite number > 0"),
        ({"lr_min": 1e-2, "lr_max": 1e-3}, "need lr_min ≤ lr_max"),
        ({"kl_target": 0.01, "lr": 0.1}, r"lr \(0.1\) must lie in \[lr_min, lr_max\]"),
        ({"anneal_lr": "yes"}, "anneal_lr must be true or false"),
    ],
)
def test_bad_option_values_are_one_line_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match) as info:
        MDPOConfig(**fields)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_cli_reaches_the_options_and_refuses_bad_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nashmp.cli.main import main

    base = ["rl", "train", "--steps", "256", "--param", "n_steps=128", "--param", "vf_minibatch=64", "--no-progress",
            "--eval-episodes", "1"]  # fmt: skip
    opts = ["--param", "anneal_lr=true", "--param", "kl_target=0.02", "--param", "clip_obs=10", "--param",
            "clip_reward=10", "--param", "kl_weight_max=4"]  # fmt: skip
    assert main([*base, *opts, "--out", str(tmp_path / "ok")]) == 0
    cfg = MDPO.load(tmp_path / "ok" / "checkpoint.pt").cfg
    assert (cfg.anneal_lr, cfg.kl_target, cfg.clip_obs, cfg.clip_reward, cfg.kl_weight_max) == (True, 0.02, 10, 10, 4)
    assert json.loads((tmp_path / "ok" / "eval.json").read_text())["eval_return_mean"] < 0  # Pendulum ran
    capsys.readouterr()
    assert main([*base, "--param", "kl_target=-1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nashmp: error: kl_target must be a finite number > 0") and err.count("\n") == 1
