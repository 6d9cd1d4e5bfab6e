"""Issue 13 item 11: the LLM trainer logs exactly the documented, namespaced metrics (log.csv, trackers, the
returned rows), docs/llm.md lists exactly them, and a run folder of the pre-namespace version resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from nashmp.errors import CheckpointError  # noqa: E402
from nashmp.llm.config import NashMPConfig  # noqa: E402
from nashmp.llm.models import tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.trainer import NashMPTrainer  # noqa: E402
from nashmp.llm.trainer_io import LEGACY_NAMES, METRICS, TRACKER_TEXT, read_log  # noqa: E402
from nashmp.oracles import CallableOracle  # noqa: E402

from ._doc_tables import ROOT, table_names  # noqa: E402

PROMPTS = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke."]
OLD_NAMES = {new: old for old, new in LEGACY_NAMES.items()}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def oracle() -> CallableOracle:
    """Prefers the longer answer (so the preferences, advantages and losses are not constant)."""
    return CallableOracle(lambda x, a, b: 0.5 + 0.4 * np.tanh(np.array([len(s) for s in a]) - [len(t) for t in b]))


def make(tmp_path: Path, **fields: object) -> NashMPTrainer:
    model, tok = tiny_model_and_tokenizer(seed=0)
    base = {"max_steps": 2, "max_new_tokens": 4, "per_device_train_batch_size": 2, "num_generations": 2,
            "output_dir": str(tmp_path / "run"), "progress_bar": False, "learning_rate": 1e-2, "warmup_ratio": 0.0,
            "algorithm": "nash-mp"}  # fmt: skip
    cfg = NashMPConfig(**{**base, **fields})
    return NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=oracle(), prompts=PROMPTS, eval_prompts=PROMPTS[:2],
                         eval_judge=CallableOracle(lambda x, a, b: [0.75] * len(a)))  # fmt: skip


def test_trainer_logs_exactly_the_documented_metrics(tmp_path: Path) -> None:
    """With evaluation, a second judge, a tracker and sample logging on, every documented name is logged and
    nothing else: the log.csv header, the union of the trackers' keys and each returned row."""
    pytest.importorskip("tensorboard")
    trainer = make(tmp_path, eval_steps=1, report_to=["tensorboard"], log_completions_steps=1)
    sent: list[tuple[dict[str, object], int]] = []
    real_log = trainer.accelerator.log

    def spy(values: dict[str, object], step: int | None = None, **kw: object) -> None:
        sent.append((dict(values), step))  # type: ignore[arg-type]
        real_log(values, step=step, **kw)

    trainer.accelerator.log = spy  # type: ignore[method-assign]
    history = trainer.train()
    with (tmp_path / "run" / "log.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == list(METRICS)
    assert [r["step"] for r in rows] == ["0.0", "1.0", "2.0"]
    assert all(rows[-1][name] != "" for name in METRICS), rows[-1]  # a training step with evaluation fills all
    for row in history:
        assert set(row) == set(METRICS)
    scalars = {k for values, _ in sent for k, v in values.items() if not isinstance(v, str)}
    texts = {k for values, _ in sent for k, v in values.items() if isinstance(v, str)}
    assert scalars == set(METRICS) - {"step"}  # the x-axis goes as step=, not as a value
    assert texts == set(TRACKER_TEXT)
    assert [step for values, step in sent if "losses/loss" in values] == [1, 2]


def test_docs_table_lists_exactly_the_metrics() -> None:
    names = table_names("docs/llm.md", "## Metrics (one CSV column each")
    assert names == [*METRICS, *TRACKER_TEXT]


def test_names_follow_the_project_namespaces() -> None:
    """The x-axis bare, everything else under one of the four namespaces shared with the RL layer."""
    assert next(iter(METRICS)) == "step"
    prefixes = {name.split("/")[0] for name in list(METRICS)[1:]}
    assert prefixes == {"charts", "losses", "train", "eval"}


def _write_old_folder(run: Path) -> None:
    """Turn a run folder into what nashmp wrote before the namespaces: bare names in log.csv and in every
    checkpoint's history."""
    rows = read_log(run / "log.csv")
    old_header = [OLD_NAMES.get(k, k) for k in METRICS]
    with (run / "log.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_header)
        writer.writeheader()
        writer.writerows([{OLD_NAMES.get(k, k): v for k, v in r.items()} for r in rows])
    for state_file in run.glob("checkpoint-*/trainer_state.json"):
        state = json.loads(state_file.read_text())
        state["history"] = [{OLD_NAMES.get(k, k): v for k, v in h.items()} for h in state["history"]]
        state_file.write_text(json.dumps(state))


def test_resume_migrates_a_pre_namespace_run_folder(tmp_path: Path) -> None:
    """Resuming a folder with the old header rewrites log.csv under the current names, values unchanged, and
    continues it; the checkpoint's history comes back under the current names too."""
    first = make(tmp_path, max_steps=3, save_steps=1)
    first.train()
    run = tmp_path / "run"
    with (run / "log.csv").open(newline="") as fh:
        before = list(csv.DictReader(fh))
    _write_old_folder(run)
    assert "kl_ref" in (run / "log.csv").read_text().splitlines()[0]
    resumed = make(tmp_path, max_steps=3, resume_from_checkpoint=str(run / "checkpoint-2"))
    assert [set(h) for h in resumed.history] == [set(METRICS) - {"eval/win_rate", "eval/win_rate_judge"}] * 2
    assert resumed.history[1]["train/kl_ref"] == pytest.approx(float(before[1]["train/kl_ref"]))
    resumed.train()
    with (run / "log.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        after = list(reader)
    assert reader.fieldnames == list(METRICS)
    assert after[:2] == before[:2]  # the migrated rows, value for value
    assert [r["step"] for r in after] == ["1.0", "2.0", "3.0"]


def test_resume_refuses_a_log_with_columns_nashmp_never_wrote(tmp_path: Path) -> None:
    make(tmp_path, max_steps=1).train()
    log = tmp_path / "run" / "log.csv"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0] + ",reward"] + [line + ",1.0" for line in lines[1:]]) + "\n")
    with pytest.raises(CheckpointError, match=r"columns nashmp does not write \(reward\)") as err:
        make(tmp_path, max_steps=1, resume_from_checkpoint="latest")
    assert "\n" not in str(err.value)


def test_committed_benchmark_logs_read_under_the_current_names() -> None:
    """benchmarks/results/llm_learning/*.csv were written before the namespaces; read_log maps every column."""
    logs = sorted((ROOT / "benchmarks" / "results" / "llm_learning").glob("*.csv"))
    assert logs
    for path in logs:
        rows = read_log(path)
        assert set(rows[0]) <= set(METRICS), path.name
        assert any(r["eval/win_rate"] for r in rows), path.name


def test_benchmark_run_names_are_flat_file_names() -> None:
    """A run trained on a prompt file (``--set dataset=benchmarks/data/x.jsonl``) is cached under one flat file
    name, so its log does not land in a folder that does not exist."""
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("llm_learning", ROOT / "benchmarks" / "llm_learning.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 1 and result.failed == 0
    name = module.run_name("nash-prox", 600, {"dataset": "/abs/dir/my prompts.jsonl", "learning_rate": "3e-4"})
    assert "/" not in name and name == "nash-prox_q600_dataset=my prompts_learning_rate=3e-4"
