"""Issue 12 training tooling: the documented metric set, metrics.csv as it lands, periodic evaluation and the
best policy, trackers, short-run warnings, and off-policy checkpoints with the buffer full/incremental/none."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nashmp.errors import CheckpointError, InvalidParameterError
from nashmp.rl import load_policy
from nashmp.rl import mdpo as mdpo_module
from nashmp.rl import mdpo_off as off_module
from nashmp.rl.mdpo import MDPO, MDPOConfig
from nashmp.rl.mdpo_off import MDPOOff, MDPOOffConfig
from nashmp.rl.replay import buffer_dir
from nashmp.rl.run_log import X_AXES

SMALL = dict(n_steps=128, total_steps=768, vf_minibatch=64, eval_episodes=1)
TINY_OFF = dict(total_steps=300, learning_starts=60, batch_size=16, hidden=16, old_refresh=50, eval_episodes=1)


class Recorder:
    """A tracker that also checks, at each call, that metrics.csv already holds the row (flushed first)."""

    def __init__(self, csv_path: Path | None = None) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []
        self.csv_path = csv_path
        self.rows_on_disk: list[int] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append((step, dict(metrics)))
        if self.csv_path is not None:
            self.rows_on_disk.append(len(self.csv_path.read_text().splitlines()) - 1)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open() as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# --------------------------------------------------------------------------- the documented metric set
@pytest.mark.parametrize("algo", ["mdpo", "mdpo-off"])
def test_metrics_csv_and_tracker_carry_exactly_the_documented_set(tmp_path: Path, algo: str) -> None:
    if algo == "mdpo":
        agent: Any = MDPO(MDPOConfig(**SMALL, eval_every=2))
        documented, kwargs = mdpo_module.METRICS, {}
    else:
        agent = MDPOOff(MDPOOffConfig(**TINY_OFF, eval_every=150))
        documented, kwargs = off_module.METRICS, {"log_every": 50}
    tracker = Recorder(tmp_path / "metrics.csv")
    agent.learn(out_dir=tmp_path, report_to=tracker, **kwargs)
    header, rows = _rows(tmp_path / "metrics.csv")
    assert header == list(documented)
    assert len(rows) == len(agent.progress.history) == len(tracker.calls) > 2
    sent = set().union(*(set(m) for _, m in tracker.calls))
    assert sent == set(documented) - set(X_AXES)  # every documented scalar reached the tracker, nothing else
    assert [s for s, _ in tracker.calls] == [int(r["global_step"]) for r in rows]
    # flushed as it lands: when the tracker hears of row k, metrics.csv already holds k rows
    assert tracker.rows_on_disk == list(range(1, len(rows) + 1))
    evaluated = [r for r in rows if r["eval/mean_return"]]
    assert 0 < len(evaluated) < len(rows)  # only on evaluation rows


def test_an_undocumented_metric_is_a_bug_not_a_silent_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = MDPO(MDPOConfig(**SMALL))
    update = agent.update
    monkeypatch.setattr(agent, "update", lambda batch: {**update(batch), "losses/typo": 1.0})
    with pytest.raises(RuntimeError, match=r"undocumented metric\(s\) \['losses/typo'\]"):
        agent.learn(out_dir=tmp_path)


def test_tensorboard_events_hold_the_documented_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    agent = MDPO(MDPOConfig(**SMALL, eval_every=3))
    agent.learn(out_dir=tmp_path, report_to="tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(mdpo_module.METRICS) - set(X_AXES)
    kl = events.Scalars("losses/approx_kl")
    assert [e.step for e in kl] == [128 * k for k in range(1, 7)]
    assert [e.value for e in kl] == pytest.approx([h["losses/approx_kl"] for h in agent.progress.history])


def test_report_to_refuses_unknown_and_uninstalled_trackers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    agent = MDPO(MDPOConfig(**SMALL))
    with pytest.raises(InvalidParameterError, match="unknown report_to 'wandb'"):
        agent.learn(out_dir=tmp_path, report_to="wandb")
    with pytest.raises(InvalidParameterError, match="pass out_dir"):
        agent.learn(report_to="tensorboard")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a))
    with pytest.raises(InvalidParameterError, match="pip install tensorboard") as info:
        agent.learn(out_dir=tmp_path, report_to="tensorboard")
    assert "\n" not in str(info.value) and agent.progress.iteration == 0  # refused before training


# --------------------------------------------------------------------------- metrics.csv across a crash and resume
def test_resume_rewrites_metrics_csv_from_the_checkpoint(tmp_path: Path) -> None:
    straight = MDPO(MDPOConfig(**SMALL))
    straight.learn(out_dir=tmp_path / "a")
    crashed = MDPO(MDPOConfig(**SMALL))
    crashed.learn(out_dir=tmp_path / "b", checkpoint_every=2, stop_after=3)  # rows 1–3 on disk, checkpoint at 2
    assert len(_rows(tmp_path / "b" / "metrics.csv")[1]) == 3
    resumed = MDPO.load(tmp_path / "b" / "checkpoint.pt")
    resumed.learn(out_dir=tmp_path / "b")
    (_, a), (_, b) = _rows(tmp_path / "a" / "metrics.csv"), _rows(tmp_path / "b" / "metrics.csv")
    assert [r["global_step"] for r in b] == [str(128 * k) for k in range(1, 7)]  # row 3 once, not twice
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "charts/SPS"} == {k: v for k, v in rb.items() if k != "charts/SPS"}


# --------------------------------------------------------------------------- periodic evaluation, best policy
def test_periodic_evaluation_leaves_training_unchanged_and_keeps_the_best(tmp_path: Path) -> None:
    plain = MDPO(MDPOConfig(**SMALL))
    plain.learn()
    evaluated = MDPO(MDPOConfig(**{**SMALL, "eval_episodes": 2}, eval_every=2))
    history = evaluated.learn(out_dir=tmp_path)
    for a, b in zip(plain.actor.parameters(), evaluated.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # evaluation draws from no training generator
    means = [h["eval/mean_return"] for h in history if "eval/mean_return" in h]
    assert [h["iteration"] for h in history if "eval/mean_return" in h] == [2, 4, 6]
    assert evaluated.progress.best_eval == max(means)
    best = load_policy(tmp_path / "best_policy.pt")
    from nashmp.rl.evaluation import evaluate_policy

    assert evaluate_policy(best, 2).returns.mean() == pytest.approx(max(means), abs=0)


def test_the_best_return_survives_a_resume(tmp_path: Path) -> None:
    first = MDPO(MDPOConfig(**SMALL, eval_every=1))
    first.learn(out_dir=tmp_path, checkpoint_every=2, stop_after=2)
    resumed = MDPO.load(tmp_path / "checkpoint.pt")
    assert resumed.progress.best_eval == first.progress.best_eval > -np.inf


# --------------------------------------------------------------------------- short runs
def test_steps_shorter_than_one_iteration_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nashmp.cli.main import main

    with pytest.warns(UserWarning, match=r"total_steps \(100\) is shorter than one iteration \(n_steps = 128\)"):
        assert MDPO(MDPOConfig(n_steps=128, total_steps=100)).learn() == []
    with pytest.warns(UserWarning, match=r"total_steps \(50\) ≤ learning_starts \(60\)"):
        MDPOOff(MDPOOffConfig(**{**TINY_OFF, "total_steps": 50})).learn()
    argv = ["rl", "train", "--steps", "100", "--param", "n_steps=128", "--out", str(tmp_path / "r"), "--no-progress",
            "--eval-episodes", "1"]  # fmt: skip
    with pytest.warns(UserWarning, match="nothing will train"):
        assert main(argv) == 0  # still writes the untrained policy's outputs
    assert {"metrics.csv", "policy.pt", "eval.json"} <= {p.name for p in (tmp_path / "r").iterdir()}


# --------------------------------------------------------------------------- off-policy buffer in checkpoints
def _same_params(a: Any, b: Any) -> None:
    for x, y in zip(
        [*a.actor.parameters(), *a.q.parameters()], [*b.actor.parameters(), *b.q.parameters()], strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("buffer_size", [10_000, 90])  # 90: the ring wraps and old chunks are dropped
def test_incremental_buffer_resume_is_exact_and_writes_only_new_transitions(tmp_path: Path, buffer_size: int) -> None:
    cfg = MDPOOffConfig(**TINY_OFF, buffer_size=buffer_size, save_buffer="incremental")
    straight = MDPOOff(cfg)
    straight.learn()
    first = MDPOOff(cfg)
    first.learn(out_dir=tmp_path, checkpoint_every=40, stop_after=200)  # five checkpoints
    chunks = first.buffer_chunks
    assert [c["start"] for c in chunks[1:]] == [c["end"] for c in chunks[:-1]]  # each save: only what is new
    assert sorted(p.name for p in buffer_dir(tmp_path / "checkpoint.pt").iterdir()) == sorted(c["file"] for c in chunks)
    if buffer_size == 90:
        assert len(chunks) < 5 and chunks[0]["end"] > first.size - 90  # fully overwritten chunks deleted
    resumed = MDPOOff.load(tmp_path / "checkpoint.pt")
    np.testing.assert_array_equal(resumed.buffer["obs"], first.buffer["obs"])
    resumed.learn()
    _same_params(straight, resumed)
    resumed.cfg.save_buffer = "full"  # switching back: the chunks are no longer listed, so they go
    resumed.save(tmp_path / "checkpoint.pt")
    assert not list(buffer_dir(tmp_path / "checkpoint.pt").iterdir())


def test_buffer_less_checkpoint_resumes_by_refilling_from_fresh_experience(tmp_path: Path) -> None:
    cfg = dict(TINY_OFF)
    full, none = MDPOOff(MDPOOffConfig(**cfg)), MDPOOff(MDPOOffConfig(**cfg, save_buffer="none"))
    for agent, name in ((full, "full"), (none, "none")):
        agent.learn(stop_after=150)
        agent.save(tmp_path / f"{name}.pt")
    assert (tmp_path / "none.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size - 150 * 4 * 7
    a, b = MDPOOff.load(tmp_path / "none.pt"), MDPOOff.load(tmp_path / "none.pt")
    assert a.size == 0 and a.min_fill == 60  # max(batch_size, learning_starts)
    updates = a.progress.updates
    a.learn(stop_after=60)
    assert a.progress.updates == updates and a.size == 59  # no gradient step until refilled (one autoreset row)
    a.learn(stop_after=10)
    assert a.progress.updates == updates + 10
    a.learn()
    b.learn()
    _same_params(a, b)  # well defined: the same checkpoint resumes the same way


def test_altered_or_escaping_buffer_chunks_are_refused(tmp_path: Path) -> None:
    agent = MDPOOff(MDPOOffConfig(**TINY_OFF, save_buffer="incremental"))
    agent.learn(stop_after=100)
    path = agent.save(tmp_path / "checkpoint.pt")
    chunk = buffer_dir(path) / agent.buffer_chunks[0]["file"]
    data = bytearray(chunk.read_bytes())
    data[-30] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="missing or altered"):
        MDPOOff.load(path)
    blob = torch.load(path, weights_only=True)
    blob["extra"]["buffer_chunks"][0]["file"] = "../../checkpoint.pt"
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="malformed replay-buffer chunk"):
        MDPOOff.load(path)


def test_cli_save_buffer_none_and_resume(tmp_path: Path) -> None:
    from nashmp.cli.main import main

    out = tmp_path / "off"
    argv = ["rl", "train", "--algo", "mdpo-off", "--out", str(out), "--no-progress", "--param", "learning_starts=50",
            "--param", "batch_size=16", "--param", "hidden=16", "--eval-episodes", "1", "--save-buffer", "none"]  # fmt: skip
    assert main([*argv, "--steps", "200"]) == 0
    from nashmp.rl.checkpoint import read_checkpoint

    blob = read_checkpoint(out / "checkpoint.pt")
    assert "buffer" not in blob["extra"] and blob["config"]["save_buffer"] == "none"
    assert main([*argv, "--steps", "400", "--resume"]) == 0
    steps = [int(r["global_step"]) for r in _rows(out / "metrics.csv")[1]]
    assert steps == [*range(4, 201, 4), *range(208, 401, 8)]  # log_every = steps // 50: 4, then 8


def test_docs_tables_list_exactly_the_documented_metrics() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "rl.md").read_text()
    on = docs.split("**On-policy (`mdpo`)**")[1].split("**Off-policy")[0]
    off = docs.split("**Off-policy (`mdpo-off`)**")[1].split("Renamed from")[0]
    for section, metrics in ((on, mdpo_module.METRICS), (off, off_module.METRICS)):
        assert re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE) == list(metrics)


@pytest.mark.parametrize("algo", ["mdpo", "mdpo-off"])
def test_a_checkpoint_with_the_old_metric_names_resumes_into_the_new_columns(tmp_path: Path, algo: str) -> None:
    module: Any = mdpo_module if algo == "mdpo" else off_module
    agent: Any = MDPO(MDPOConfig(**SMALL)) if algo == "mdpo" else MDPOOff(MDPOOffConfig(**TINY_OFF))
    agent.learn(stop_after=2 if algo == "mdpo" else 150, **({} if algo == "mdpo" else {"log_every": 50}))
    path = agent.save(tmp_path / "checkpoint.pt")
    blob = torch.load(path, weights_only=True)
    old = {new: old for old, new in module.LEGACY_NAMES.items()}
    blob["progress"]["history"] = [{old.get(k, k): v for k, v in row.items()} for row in blob["progress"]["history"]]
    assert any(k in row for row in blob["progress"]["history"] for k in module.LEGACY_NAMES)
    torch.save(blob, path)
    resumed = type(agent).load(path)
    resumed.learn(out_dir=tmp_path, **({} if algo == "mdpo" else {"log_every": 50}))
    header, rows = _rows(tmp_path / "metrics.csv")
    assert header == list(module.METRICS) and all(r["losses/approx_kl"] for r in rows[-2:])


def test_off_policy_kl_is_logged_at_the_end_of_each_refresh_period() -> None:
    """With rows at the refresh cadence, the step after a refresh is centred at the new π_old (KL exactly 0):
    the row carries the last KL before the refresh instead, which is positive once the actor trains."""
    cfg = MDPOOffConfig(**{**TINY_OFF, "total_steps": 240, "learning_starts": 40, "old_refresh": 40})
    rows = MDPOOff(cfg).learn(log_every=40)
    kls = [row["losses/approx_kl"] for row in rows if row["global_step"] > 80]
    assert kls and all(k > 0 for k in kls), kls
