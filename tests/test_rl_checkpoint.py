"""RL checkpoints hold plain data only: a crafted file cannot run code on ``--resume`` (issue 13, item 1)."""

from __future__ import annotations

import collections
import enum
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nashmp.errors import CheckpointError
from nashmp.rl.checkpoint import _decode, _encode, read_checkpoint
from nashmp.rl.mdpo import MDPO, MDPOConfig

MARKER_ENV = "NASHMP_TEST_MARKER"


def _touch_marker() -> None:  # what a malicious checkpoint would run on load
    Path(os.environ[MARKER_ENV]).write_text("pwned")


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_touch_marker, ())


def _tiny_agent(**fields: Any) -> MDPO:
    return MDPO(MDPOConfig(total_steps=256, n_steps=128, vf_minibatch=64, eval_episodes=1, **fields))


def _cli(out: Path, *extra: str) -> list[str]:
    return ["rl", "train", "--env", "Pendulum-v1", "--steps", "512", "--param", "n_steps=128",
            "--out", str(out), "--no-progress", "--eval-episodes", "1", *extra]  # fmt: skip


def test_saved_checkpoint_loads_with_torchs_restricted_unpickler(tmp_path: Path) -> None:
    agent = _tiny_agent(clip_reward=None)  # gymnasium's ClipReward holds a lambda, which pickle cannot write
    agent.learn(stop_after=1)
    path = agent.save(tmp_path / "checkpoint.pt")
    blob = torch.load(path, weights_only=True)  # raises if anything but plain data was written
    assert blob["format"].startswith("nashmp-rl-checkpoint/")
    with pytest.raises(pickle.UnpicklingError):  # and the pre-fix format would not have passed
        buf = tmp_path / "old.pt"
        torch.save({"env": agent.env}, buf)
        torch.load(buf, weights_only=True)


@pytest.mark.parametrize("where", ["top", "nested"])
def test_crafted_checkpoint_does_not_run_code_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    from nashmp.cli.main import main

    marker = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    out = tmp_path / "run"
    assert main(_cli(out, "--checkpoint-every", "1")) == 0
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    if where == "top":
        blob = {"format": blob["format"], "payload": _Payload()}
    else:
        blob["extra"] = {"x": [_Payload()]}
    torch.save(blob, out / "checkpoint.pt")
    # the payload works: plain pickle (what the old loader did) runs it
    torch.load(out / "checkpoint.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    capsys.readouterr()
    assert main(_cli(out, "--steps", "1024", "--resume")) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "loading the checkpoint ran code"
    assert err.startswith("nashmp: error: ") and err.count("\n") == 1 and "plain data" in err


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "truncated or corrupt"), (b"not a checkpoint at all", "truncated or corrupt")],
)
def test_garbage_checkpoint_is_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)


def test_truncated_and_foreign_checkpoints(tmp_path: Path) -> None:
    agent = _tiny_agent()
    path = agent.save(tmp_path / "checkpoint.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)
    torch.save({"weights": torch.zeros(3)}, path)  # a plain-data file that is not ours
    with pytest.raises(CheckpointError, match="not a nashmp RL checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")


def test_planted_symlink_next_to_the_checkpoint_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "checkpoint.pt.tmp").symlink_to(victim)
    _tiny_agent().save(tmp_path / "checkpoint.pt")
    assert victim.read_text() == "keep me"
    assert read_checkpoint(tmp_path / "checkpoint.pt")["format"].startswith("nashmp-rl-checkpoint/")


def test_plain_data_encoding_round_trips_exactly() -> None:
    value = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "u32": np.array([1, 2**32 - 1], dtype=np.uint32),
        "bool": np.array([True, False]),
        "scalar": np.float64(np.pi),
        "big_int": 2**127 + 5,  # PCG64 states are 128-bit integers
        "deque": collections.deque([1.5, 2.5], maxlen=3),
        "tuple": (np.int64(4), "s", None),
        "tensor": torch.arange(3),
    }
    back = _decode(_encode(value))
    assert back["f32"].dtype == np.float32 and np.array_equal(back["f32"], value["f32"])
    assert back["u32"].dtype == np.uint32 and np.array_equal(back["u32"], value["u32"])
    assert back["bool"].dtype == np.bool_ and back["bool"].tolist() == [True, False]
    assert isinstance(back["scalar"], np.float64) and back["scalar"] == np.pi
    assert back["big_int"] == 2**127 + 5
    assert back["deque"] == value["deque"] and back["deque"].maxlen == 3
    assert back["tuple"] == (4, "s", None) and isinstance(back["tuple"][0], np.int64)
    assert torch.equal(back["tensor"], value["tensor"])
    with pytest.raises(TypeError, match="not plain data"):
        _encode({"obj": object()})
    with pytest.raises(TypeError, match="object or structured arrays"):
        _encode(np.array([object()]))
    for not_plain in (collections.OrderedDict(a=1), collections.defaultdict(list), enum.IntEnum("E", "A").A):
        with pytest.raises(TypeError, match="not plain data"):
            _encode(not_plain)  # exact types only: what is saved is what comes back
    empty = _decode(_encode(np.zeros((0, 3), dtype=np.float32)))
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert _decode(_encode({1, 2})) == {1, 2}


def test_unknown_param_is_one_line_and_a_type_error_inside_a_run_is_not_blamed_on_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nashmp.cli.main import main

    assert main(_cli(tmp_path / "a", "--param", "nosuch=1")) == 2
    err = capsys.readouterr().err
    assert "unknown --param ['nosuch']" in err and err.count("\n") == 1

    def bug(self: MDPO, **kwargs: object) -> None:
        raise TypeError("a bug inside the run")

    monkeypatch.setattr(MDPO, "learn", bug)
    with pytest.raises(TypeError, match="a bug inside the run"):  # surfaces as itself, not as "bad --param"
        main(_cli(tmp_path / "b"))


def test_rl_output_folder_and_resume_flags_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "run"
    assert main(_cli(out, "--steps", "256")) == 0
    cases = [
        (_cli(out, "--steps", "256"), "already holds a run"),  # would silently overwrite checkpoint.pt
        (_cli(out, "--steps", "512", "--resume", "--env", "CartPole-v1"), "--env 'CartPole-v1' differs"),
        (_cli(out, "--steps", "512", "--resume", "--seed", "3"), "--seed 3 differs"),
        (_cli(tmp_path / "b", "--preset", "nosuch"), "unknown preset 'nosuch'"),
        (_cli(out, "--steps", "512", "--resume", "--preset", "release"), "keeps its checkpoint's settings"),
        (_cli(out, "--steps", "512", "--resume", "--wrapper", "ClipAction"), "--wrapper ['ClipAction'] differs"),
        (_cli(tmp_path / "e", "--save-buffer", "none"), "applies to --algo mdpo-off"),
        (_cli(tmp_path / "c", "--eval-episodes", "0"), "eval_episodes"),
        (_cli(tmp_path / "d", "--seed", "-1"), "--seed must be ≥ 0"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert main(_cli(out, "--steps", "256", "--overwrite")) == 0
    assert main(_cli(out, "--steps", "512", "--resume")) == 0  # the seed comes from the checkpoint


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_mujoco_env_state_restores_bit_for_bit(env_id: str) -> None:
    """200 random steps, snapshot, restore into a fresh env: the next 200 observations are identical (qpos and
    qvel alone are not enough: the solver's warm start is part of the state)."""
    pytest.importorskip("mujoco")
    from nashmp.rl.checkpoint import env_snapshot, restore_env_snapshot
    from nashmp.rl.envs import make_vec_env

    actions = np.random.default_rng(0).uniform(-1, 1, (400, 1, 6 if env_id.startswith("Half") else 3))
    a = make_vec_env(env_id, 1, normalize=True, gamma=0.99)
    a.reset(seed=0)
    for t in range(200):
        a.step(actions[t])
    snap = torch.load(_roundtrip(env_snapshot(a)), weights_only=True)
    b = make_vec_env(env_id, 1, normalize=True, gamma=0.99)
    b.reset(seed=5)
    restore_env_snapshot(b, snap)
    for t in range(200, 400):
        oa, ra, *_ = a.step(actions[t])
        ob, rb, *_ = b.step(actions[t])
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb), t


def _roundtrip(obj: object) -> object:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_generators_sets_and_nested_helpers_are_restored() -> None:
    from nashmp.rl.checkpoint import _object_state, _restore_attrs

    class Helper:
        def __init__(self) -> None:
            self.counts = np.zeros(2)
            self.inner = type("Inner", (), {})()
            self.inner.total = 0

    class Env:
        def __init__(self, seed: int) -> None:
            self.gen = np.random.default_rng(seed)
            self.pyrand = random.Random(seed)
            self.seen = {seed}
            self.helper = Helper()

    a = Env(0)
    a.gen.random(5), a.pyrand.random(), a.seen.add(9)
    a.helper.counts += 3
    a.helper.inner.total = 7
    state = torch.load(_roundtrip(_object_state(a, "Env")), weights_only=True)
    b = Env(1)
    _restore_attrs(b, state, "Env")
    assert a.gen.random() == b.gen.random() and a.pyrand.random() == b.pyrand.random()
    assert b.seen == {0, 9} and np.array_equal(b.helper.counts, [3, 3]) and b.helper.inner.total == 7


def test_crafted_state_cannot_patch_classes_or_change_types(tmp_path: Path) -> None:
    agent = _tiny_agent()
    path = agent.save(tmp_path / "checkpoint.pt")
    blob = torch.load(path, weights_only=True)
    first = next(attrs for attrs in blob["env"]["attrs"] if "return_rms" in attrs)  # NormalizeReward
    first["__class__"] = {"__attrs__": {"step": 3}}  # would monkeypatch the wrapper class
    first["return_rms"] = {"__attrs__": {"count": "x"}}  # a string where a number lives
    torch.save(blob, path)
    step_before = type(agent.env).step
    with pytest.raises(CheckpointError, match="return_rms.count"):
        MDPO.load(path)
    assert type(agent.env).step is step_before


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"env_id": "evil_module:Pendulum-v1"}, "not a registered gymnasium id"),
        ({"env_id": "NoSuch-v0"}, "not a registered gymnasium id"),
        ({"no_such_field": 1}, "unknown config field"),
        ({"n_steps": "many"}, "n_steps must be an integer"),
        ({"wrappers": ["os:system"]}, "unknown wrapper 'os'"),
        ({"wrappers": ["builtins.eval"]}, "unknown wrapper 'builtins.eval'"),
        ({"env_kwargs": {"g": torch.zeros(1)}}, "not a JSON literal"),
        ({"n_steps": {"__ndarray__": 1}}, "config is malformed"),
        ("not a dict", "config"),
    ],
)
def test_crafted_checkpoint_config_is_refused(tmp_path: Path, config: object, match: str) -> None:
    """The saved config is untrusted: an id like 'module:Env' would make gymnasium import that module."""
    agent = _tiny_agent()
    path = agent.save(tmp_path / "checkpoint.pt")
    blob = torch.load(path, weights_only=True)
    blob["config"] = {**blob["config"], **config} if isinstance(config, dict) else config
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match=match):
        MDPO.load(path)
