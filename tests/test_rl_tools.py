"""Issue 12 tooling: presets, gym.make keywords and wrappers, predict(), the light policy file, `nashmp rl eval`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nashmp.errors import CheckpointError, InvalidParameterError
from nashmp.rl import load_policy
from nashmp.rl.envs import make_env, parse_wrapper
from nashmp.rl.mdpo import MDPO, MDPOConfig
from nashmp.rl.mdpo_off import MDPOOff, MDPOOffConfig
from nashmp.rl.presets import load_presets

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(n_steps=128, total_steps=256, vf_minibatch=64, eval_episodes=2)
TINY_OFF = dict(total_steps=200, learning_starts=50, batch_size=16, hidden=16, eval_episodes=1)


def _cli(out: Path, *extra: str) -> list[str]:
    return ["rl", "train", "--steps", "256", "--param", "n_steps=128", "--param", "vf_minibatch=64",
            "--out", str(out), "--no-progress", "--eval-episodes", "2", *extra]  # fmt: skip


# --------------------------------------------------------------------------- presets
def test_release_preset_holds_the_documented_release_values() -> None:
    cfg = MDPOConfig.from_preset("release", env_id="Hopper-v5", total_steps=1000)
    release = dict(num_envs=1, n_steps=2048, sgd_steps=10, schedule_steps=10_000_000, lr=3e-4, vf_lr=3e-4,
                   gamma=0.99, gae_lambda=0.95, vf_epochs=5, vf_minibatch=128, vf_clip=0.2, max_grad_norm=0.5,
                   hidden=64, normalize=True)  # fmt: skip
    assert {k: getattr(cfg, k) for k in release} == release
    assert (cfg.env_id, cfg.total_steps) == ("Hopper-v5", 1000)
    off = MDPOOffConfig.from_preset("release")
    assert off.deterministic_collection is True and (off.learning_starts, off.old_refresh) == (10_000, 1000)


def test_zoo_preset_is_per_environment_version_agnostic_and_explicit_fields_win() -> None:
    pend = MDPOConfig.from_preset("zoo", env_id="Pendulum-v1")
    assert (pend.n_steps, pend.num_envs, pend.gamma, pend.normalize) == (4096, 4, 0.9, False)  # zoo: 4 × 1024
    assert MDPOConfig.from_preset("zoo", env_id="Hopper-v5").n_steps == 512  # the zoo tuned Hopper-v4
    assert MDPOConfig.from_preset("zoo", env_id="Pendulum-v1", n_steps=1024).n_steps == 1024
    both = MDPOConfig.from_preset(["release", "zoo"], env_id="Pendulum-v1")
    assert (both.schedule_steps, both.n_steps) == (10_000_000, 4096)  # later presets win
    assert MDPOOffConfig.from_preset("zoo", env_id="Pendulum-v1").lr == 1e-3


def test_tuned_is_the_defaults_and_the_release_presets_restore_the_release_step() -> None:
    import dataclasses

    entry = load_presets()["mdpo"]["tuned"]
    assert entry["description"].startswith("The defaults since 2026-12-07")
    defaults = dataclasses.asdict(MDPOConfig(env_id="HalfCheetah-v5"))
    assert dataclasses.asdict(MDPOConfig.from_preset("tuned", env_id="HalfCheetah-v5")) == defaults
    step = {"lr": 3e-4, "kl_target": None, "kl_weight_max": None, "clip_obs": None, "clip_reward": None}
    assert {k: defaults[k] for k in step} == {"lr": 1e-3, "kl_target": 0.01, "kl_weight_max": 2.0,
                                              "clip_obs": 10.0, "clip_reward": 10.0}  # fmt: skip
    for name, schedule_steps in (("release-run-budget", None), ("release", 10_000_000)):
        cfg = dataclasses.asdict(MDPOConfig.from_preset(name, env_id="HalfCheetah-v5"))
        # exactly the step fields (and the release's 10M-step t_k budget) differ from the defaults
        assert cfg == {**defaults, **step, "schedule_steps": schedule_steps}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: MDPOConfig.from_preset("nosuch"),
            "unknown preset 'nosuch' for mdpo; presets: release, release-run-budget, tuned, zoo",
        ),
        (lambda: MDPOConfig.from_preset("release", n_stpes=3), r"unknown MDPOConfig field\(s\) \['n_stpes'\]"),
        (lambda: MDPOConfig.from_preset("zoo", env_id="FrozenLake-v1"), "no entry for 'FrozenLake-v1'"),
        (lambda: MDPOConfig.from_preset("release", lr="fast"), "lr must be a number"),
    ],
)
def test_bad_preset_use_is_one_named_error(call: object, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"mdpo": {"p": {"params": {"lr": 1e-3, "n_stpes": 5}}}}, r"preset 'p' of mdpo sets unknown.*n_stpes"),
        ({"mdpo": {"p": {"envs": {"Hopper": {"gamma": "high"}}}}}, "env 'Hopper': gamma must be a number"),
        ({"mdpo": {"p": {"parms": {}}}}, "must hold 'params' and/or 'envs'"),
        ({"ppo": {}}, "not 'ppo'"),
    ],
)
def test_preset_file_is_validated_when_read(tmp_path: Path, content: dict, match: str) -> None:
    path = tmp_path / "presets.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InvalidParameterError, match=match):
        load_presets(path)


def test_every_shipped_preset_builds_a_config_that_trains_its_critic() -> None:
    for algo, cls in (("mdpo", MDPOConfig), ("mdpo-off", MDPOOffConfig)):
        for name, entry in load_presets()[algo].items():
            for env in entry["envs"] or ["Pendulum-v1"]:
                cfg = cls.from_preset(name, env_id=f"{env}-v9")  # raises if a value is out of range
                if algo == "mdpo":  # a rollout shorter than a critic minibatch would never train the critic
                    assert cfg.n_steps >= cfg.vf_minibatch and cfg.n_steps % cfg.num_envs == 0, (name, env)


def test_docs_table_lists_the_zoo_rollouts_of_the_preset_file() -> None:
    docs = (ROOT / "docs" / "rl.md").read_text()
    for env, fields in load_presets()["mdpo"]["zoo"]["envs"].items():
        row = re.search(rf"^\| {env} \|(.*)$", docs, re.MULTILINE)
        assert row is not None, env
        assert f" {fields['n_steps']} " in row.group(1) and f" {fields['num_envs']} " in row.group(1), env


def test_cli_preset_reaches_the_config(tmp_path: Path) -> None:
    from nashmp.cli.main import main
    from nashmp.rl.checkpoint import read_checkpoint

    assert main(_cli(tmp_path / "r", "--preset", "release")) == 0
    cfg = read_checkpoint(tmp_path / "r" / "checkpoint.pt")["config"]
    assert (cfg["schedule_steps"], cfg["n_steps"]) == (10_000_000, 128)  # --param wins over the preset
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["preset"] == ["release"]


# --------------------------------------------------------------------------- gym.make keywords and wrappers
def test_wrapper_specs_parse_json_values_and_refuse_anything_off_the_allow_list() -> None:
    assert parse_wrapper("ClipReward:min_reward=-1,max_reward=0.5") == (
        "ClipReward",
        {"min_reward": -1, "max_reward": 0.5},
    )
    assert parse_wrapper("RescaleObservation:min_obs=[-1,-1,-1],max_obs=[1,1,1]")[1]["min_obs"] == [-1, -1, -1]
    assert parse_wrapper("FrameStackObservation:stack_size=2,padding_type=zero")[1]["padding_type"] == "zero"
    for spec, match in [("os:system", "unknown wrapper 'os'"), ("gymnasium.wrappers.ClipAction", "unknown wrapper"),
                        ("TimeLimit:steps=3", "has no argument 'steps'"), ("TimeLimit:50", "key=value")]:  # fmt: skip
        with pytest.raises(InvalidParameterError, match=match):
            parse_wrapper(spec)


def test_env_kwargs_and_wrappers_shape_the_environment() -> None:
    env = make_env("Pendulum-v1", {"g": 2.0}, ["TimeLimit:max_episode_steps=7", "TimeAwareObservation"])
    assert env.unwrapped.g == 2.0
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,)  # the time feature appended
    steps = 0
    while True:
        steps += 1
        *_, te, tr, _ = env.step(env.action_space.sample())
        if te or tr:
            break
    assert steps == 7
    with pytest.raises(InvalidParameterError, match="JSON literal"):
        MDPOConfig(env_kwargs={"g": object()})


def test_resume_with_env_kwargs_and_stateful_wrappers_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = MDPOConfig(**{**SMALL, "total_steps": 512}, env_kwargs={"g": 9.0},
                     wrappers=["TimeAwareObservation", "DelayObservation:delay=2", "ClipReward:min_reward=-5"])  # fmt: skip
    straight = MDPO(cfg)
    straight.learn()
    first = MDPO(cfg)
    first.learn(stop_after=3, out_dir=tmp_path, checkpoint_every=3)
    resumed = MDPO.load(tmp_path / "checkpoint.pt")
    resumed.learn()
    for a, b in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cli_env_kwargs_and_wrappers_travel_into_the_policy_file(tmp_path: Path) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "r"
    argv = _cli(out, "--env-kwargs", "g=3.5", "--wrapper", "TimeLimit:max_episode_steps=20")
    assert main(argv) == 0
    policy = load_policy(out / "policy.pt")
    assert policy.env == {
        "env_id": "Pendulum-v1",
        "env_kwargs": {"g": 3.5},
        "wrappers": ["TimeLimit:max_episode_steps=20"],
    }
    assert policy.make_env().unwrapped.g == 3.5


# --------------------------------------------------------------------------- predict and the light policy file
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_policy_file_round_trip_predicts_and_evaluates_like_the_agent(tmp_path: Path, env_id: str) -> None:
    agent = MDPO(MDPOConfig(env_id=env_id, **SMALL))
    agent.learn()
    obs = np.random.default_rng(0).normal(size=(32, agent.env.single_observation_space.shape[0]))
    path = agent.save_policy(tmp_path / "policy.pt")
    policy = load_policy(path)
    np.testing.assert_array_equal(policy.predict(obs), agent.predict(obs))
    np.testing.assert_array_equal(policy.predict(obs[0]), agent.predict(obs[0]))
    np.testing.assert_allclose(policy.predict(obs[0]), agent.predict(obs)[0], rtol=1e-5)  # BLAS: batch ≠ row in ulps
    from nashmp.rl.evaluation import evaluate_policy

    np.testing.assert_array_equal(evaluate_policy(policy, 2).returns, agent.evaluate(2))
    if env_id == "CartPole-v1":
        assert set(np.unique(policy.predict(obs))) <= {0, 1}
    else:  # the frozen observation statistics are part of the policy: without them the actions change
        policy.obs_norm = None
        assert not np.array_equal(policy.predict(obs), agent.predict(obs))
    # light: no critic, optimisers or environment state
    assert path.stat().st_size < agent.save(tmp_path / "checkpoint.pt").stat().st_size / 2


def test_off_policy_predict_round_trip_and_bounds(tmp_path: Path) -> None:
    agent = MDPOOff(MDPOOffConfig(**TINY_OFF))
    agent.learn()
    obs = np.random.default_rng(1).normal(size=(16, 3))
    policy = load_policy(agent.save_policy(tmp_path / "p.pt"))
    np.testing.assert_array_equal(policy.predict(obs), agent.predict(obs))
    sampled = agent.predict(obs, deterministic=False)
    assert np.all(np.abs(sampled) <= 2.0) and not np.array_equal(sampled, agent.predict(obs))
    from_checkpoint = load_policy(agent.save(tmp_path / "checkpoint.pt"))
    np.testing.assert_array_equal(from_checkpoint.predict(obs), agent.predict(obs))


def test_stochastic_predict_leaves_the_training_random_state_alone() -> None:
    agent = MDPO(MDPOConfig(**SMALL))
    torch_state, np_state = torch.get_rng_state(), agent.rng.bit_generator.state
    draws = [agent.predict(np.zeros(3), deterministic=False) for _ in range(3)]
    assert len({float(d[0]) for d in draws}) == 3  # fresh noise each call
    assert torch.equal(torch.get_rng_state(), torch_state) and agent.rng.bit_generator.state == np_state
    with pytest.raises(InvalidParameterError, match="observation of 3 numbers"):
        agent.predict(np.zeros(4))


def test_crafted_or_mismatched_policy_files_are_refused(tmp_path: Path) -> None:
    agent = MDPO(MDPOConfig(**SMALL))
    path = agent.save_policy(tmp_path / "policy.pt")
    blob = torch.load(path, weights_only=True)
    blob["actor"]["body.2.weight"] = torch.zeros(3, 3)
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_policy(path)
    blob = torch.load(agent.save_policy(path), weights_only=True)
    blob["env"]["env_id"] = "evil_module:Pendulum-v1"
    torch.save(blob, path)
    policy = load_policy(path)  # inference needs no environment ...
    with pytest.raises(CheckpointError, match="not a registered gymnasium id"):
        policy.make_env()  # ... and building one never imports the named module

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"format": "nashmp-rl-policy/1", "actor": Payload()}, path)
    with pytest.raises(CheckpointError, match="plain data"):
        load_policy(path)


# --------------------------------------------------------------------------- nashmp rl eval
def test_rl_eval_reproduces_the_training_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "run"
    assert main(_cli(out)) == 0
    trained = json.loads((out / "eval.json").read_text())
    capsys.readouterr()
    for target in (out, out / "checkpoint.pt"):  # a run folder reads its policy.pt
        assert main(["rl", "eval", str(target), "--episodes", "2", "--out", str(tmp_path / "e.json")]) == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["returns"] == trained["eval_returns"] and len(report["lengths"]) == 2
        assert report["mean_return"] == pytest.approx(np.mean(report["returns"]))
        assert f"± {report['std_return']:.2f} over 2 episodes" in captured.err
        assert json.loads((tmp_path / "e.json").read_text()) == report
    assert main(["rl", "eval", str(out), "--episodes", "2", "--stochastic"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] != trained["eval_returns"]


def test_rl_eval_video_without_moviepy_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from nashmp.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moviepy" else real(name, *a))
    assert main(["rl", "eval", str(tmp_path / "missing"), "--video", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nashmp: error: --video needs moviepy") and "pip install moviepy" in err
    assert err.count("\n") == 1 and not (tmp_path / "v").exists()
