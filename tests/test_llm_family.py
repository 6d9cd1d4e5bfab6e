"""The LLM trainer on the online family: it learns a token-level preference, samples from merged LoRA
weights exactly, scores in eval mode, and draws per-process samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from nashmp.llm.config import LLM_ALGORITHMS, NashMPConfig  # noqa: E402
from nashmp.llm.models import tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.sampling import completion_log_probs, sample_completions  # noqa: E402
from nashmp.llm.trainer import NashMPTrainer  # noqa: E402
from nashmp.oracles import CallableOracle  # noqa: E402

PROMPTS = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke.", "Describe rain.", "Why is the sky blue?"]
VOWELS = set("aeiou")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def vowel_share(text: str) -> float:
    return sum(c in VOWELS for c in text) / max(len(text), 1)


def vowel_oracle(sign: float = 1.0) -> CallableOracle:
    """P(a ≻ b) = ½(1 + tanh(5·s·(f(a) − f(b)))) with f the share of vowels: a token-level preference."""

    def fn(x, a, b):  # type: ignore[no-untyped-def]
        d = np.array([vowel_share(s) for s in a]) - np.array([vowel_share(s) for s in b])
        return 0.5 * (1 + np.tanh(5 * sign * d))

    return CallableOracle(fn)


def make(tmp_path: Path, oracle: CallableOracle, **fields: object) -> NashMPTrainer:
    model, tok = tiny_model_and_tokenizer(seed=0)
    base = {"max_steps": 40, "max_new_tokens": 8, "per_device_train_batch_size": 4, "num_generations": 4,
            "learning_rate": 3e-2, "output_dir": str(tmp_path / "run"), "progress_bar": False, "use_peft": False,
            "beta": 0.05, "eta": 1.0, "warmup_ratio": 0.0}  # fmt: skip
    return NashMPTrainer(NashMPConfig(**{**base, **fields}), model=model, tokenizer=tok, oracle=oracle, prompts=PROMPTS)


def vowel_rate(trainer: NashMPTrainer) -> float:
    torch.manual_seed(123)
    ids, mask = trainer.encode_prompts(PROMPTS * 8)
    _, _, texts = trainer._sample_from("self", ids, mask)
    return float(np.mean([vowel_share(t) for t in texts]))


@pytest.mark.parametrize(
    ("algorithm", "kl_estimator"), [(a, "sampled") for a in LLM_ALGORITHMS] + [("nash-mp", "analytic")]
)
def test_every_algorithm_learns_a_token_level_preference(tmp_path: Path, algorithm: str, kl_estimator: str) -> None:
    """40 steps on a random tiny model (~1 s): the preferred tokens' share rises; with the oracle reversed it
    falls. Fails if the gradient is dead or has the wrong sign."""
    up = make(tmp_path / "up", vowel_oracle(), algorithm=algorithm, kl_estimator=kl_estimator)
    before = vowel_rate(up)
    up.train()
    after = vowel_rate(up)
    assert after > 2.5 * before and after - before > 0.04, (before, after)
    down = make(tmp_path / "down", vowel_oracle(-1.0), algorithm=algorithm, kl_estimator=kl_estimator)
    down.train()
    assert vowel_rate(down) < before


def test_merged_lora_sampling_is_the_policy_and_restores_the_base_exactly(tmp_path: Path) -> None:
    trainer = make(tmp_path, vowel_oracle(), use_peft=True, max_steps=3, learning_rate=5e-2)
    trainer.train()  # adapters away from zero, so merging changes the weights
    base = [(w, w.detach().clone()) for w, _ in trainer._base_weights]
    assert base, "LoRA layers were found"
    ids, mask = trainer.encode_prompts(PROMPTS[:3])
    tok = trainer.tokenizer
    torch.manual_seed(5)
    with trainer._weights_of("self") as view:
        assert any(not torch.equal(w, b) for w, b in base)  # merged into the weights while sampling
        y, y_mask, logp = sample_completions([(view, 1.0)], ids, mask, max_new_tokens=8, temperature=0.7,
                                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    for w, b in base:
        assert torch.equal(w, b)  # restored bit for bit
    with torch.no_grad():
        forced = completion_log_probs(trainer.policy_view, ids, mask, y, y_mask, temperature=0.7)
    torch.testing.assert_close(logp * y_mask, forced, atol=2e-5, rtol=1e-5)


def test_scoring_runs_in_eval_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With LoRA dropout, the log-probabilities in the loss come from the policy that sampled (no dropout)."""
    trainer = make(tmp_path, vowel_oracle(), use_peft=True, lora_dropout=0.5, max_steps=1)
    seen: list[bool] = []
    original = trainer._token_logp

    def spy(view, *args, **kwargs):  # type: ignore[no-untyped-def]
        modules = trainer.raw_model.modules()
        seen.append(any(m.training for m in modules if isinstance(m, torch.nn.Dropout)))
        return original(view, *args, **kwargs)

    monkeypatch.setattr(trainer, "_token_logp", spy)
    trainer.training_step()
    assert seen and not any(seen)
    assert trainer.raw_model.training  # and the model goes back to train mode


def test_grouped_selfplay_queries_every_pair(tmp_path: Path) -> None:
    """Per prompt, the oracle sees its k completions in all k(k−1)/2 pairs (i < j), with that prompt."""
    import itertools

    calls: list[tuple[list[str], list[str], list[str]]] = []

    def fn(x, a, b):  # type: ignore[no-untyped-def]
        calls.append((list(x), list(a), list(b)))
        return [0.5] * len(a)

    trainer = make(tmp_path, CallableOracle(fn), algorithm="nash-mp", max_steps=1, num_generations=3,
                   per_device_train_batch_size=2, max_new_tokens=12, temperature=2.0)  # fmt: skip
    prompts = trainer._batch_prompts(0)
    torch.manual_seed(11)
    trainer.training_step()
    ((x, first, second),) = calls
    assert len(first) == 2 * 3 and trainer.queries == 6 and trainer.completions == 6  # B · k(k−1)/2 pairs
    assert x == [prompts[0]] * 3 + [prompts[1]] * 3
    for r in range(2):
        pairs = list(zip(first[3 * r : 3 * r + 3], second[3 * r : 3 * r + 3], strict=True))
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # the prompt's completions, in order
        assert len(texts) == 3, "three distinct completions per prompt (temperature 2, 12 tokens)"
        assert pairs == list(itertools.combinations(texts, 2))


def test_grouped_scoring_equals_one_pass_per_row_with_gradients() -> None:
    """Prompts encoded once per group of k completions (KV cache repeated): same log-probs and gradients."""
    from peft import LoraConfig, get_peft_model

    from nashmp.llm.sampling import ModelView, encode_prompts

    model, tok = tiny_model_and_tokenizer(seed=0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # non-zero adapters, so the prompt's K/V depend on them
    k = 3
    ids, mask = encode_prompts(tok, ["hello there friend", "hi"], max_length=32)  # different lengths: padding
    ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    comp = torch.randint(5, 100, (6, 5), generator=torch.Generator().manual_seed(0))
    comp_mask = torch.ones_like(comp)
    comp_mask[1, 3:] = 0
    comp_mask[4, 1:] = 0
    one = completion_log_probs(ModelView(model), ids, mask, comp, comp_mask, temperature=0.7)
    grouped = completion_log_probs(ModelView(model), ids, mask, comp, comp_mask, temperature=0.7, group=k)
    torch.testing.assert_close(grouped, one, atol=1e-5, rtol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad(one.sum(), params), torch.autograd.grad(grouped.sum(), params), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- output folders and checkpoints


def test_reused_output_dir_is_refused_unless_resuming_or_overwriting(tmp_path: Path) -> None:
    from nashmp.errors import InvalidParameterError

    first = make(tmp_path, vowel_oracle(), max_steps=2, save_steps=1)
    first.train()
    with pytest.raises(InvalidParameterError, match="already holds a run"):
        make(tmp_path, vowel_oracle(), max_steps=2)
    with pytest.raises(InvalidParameterError, match=r"other settings \(beta: 0.05 → 0.2"):
        make(tmp_path, vowel_oracle(), max_steps=4, beta=0.2, resume_from_checkpoint="latest")
    resumed = make(tmp_path, vowel_oracle(), max_steps=3, resume_from_checkpoint="latest")  # max_steps may change
    assert resumed.step == 2
    fresh = make(tmp_path, vowel_oracle(), max_steps=1, overwrite_output_dir=True)
    assert not (tmp_path / "run" / "log.csv").exists() and not list((tmp_path / "run").glob("checkpoint-*"))
    fresh.train()
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 2  # header + the new run's one row


def test_a_kill_during_save_leaves_latest_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nashmp.llm.trainer import latest_checkpoint

    trainer = make(tmp_path, vowel_oracle(), max_steps=2)
    trainer.training_step()
    good = trainer.save_checkpoint()
    trainer.training_step()
    original = trainer.accelerator.save_state

    def dies(*args, **kwargs):  # type: ignore[no-untyped-def]
        original(*args, **kwargs)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(trainer.accelerator, "save_state", dies)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    out = tmp_path / "run"
    assert not (out / "checkpoint-2").exists()
    (out / "checkpoint-best").mkdir()  # not a step number: ignored
    (out / "checkpoint-7").mkdir()  # incomplete (no trainer_state.json): ignored
    assert latest_checkpoint(out) == good
    resumed = make(tmp_path, vowel_oracle(), max_steps=2, resume_from_checkpoint="latest")
    assert resumed.step == 1


def test_periodic_evaluation_is_logged_and_does_not_change_training(tmp_path: Path) -> None:
    judged: list[list[str]] = []

    def constant(x: list[str], a: list[str], b: list[str]) -> list[float]:
        judged.append(list(x))
        return [0.75] * len(a)

    plain = make(tmp_path / "plain", vowel_oracle(), max_steps=4)
    plain.train()
    evaluated = make(tmp_path / "eval", vowel_oracle(), max_steps=4, eval_steps=2, eval_samples_per_prompt=3)
    evaluated.eval_prompts, evaluated.eval_judge = PROMPTS[:3], CallableOracle(constant)
    evaluated.train()
    # each held-out prompt judged eval_samples_per_prompt times, at steps 0, 2 and 4
    assert judged == [[p for p in PROMPTS[:3] for _ in range(3)]] * 3
    for p, q in zip(plain.params, evaluated.params, strict=True):
        assert torch.equal(p, q)  # its own random stream: training is unchanged
    import csv

    with (tmp_path / "eval" / "run" / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    evals = [(r["step"], r["eval/win_rate_judge"]) for r in rows if r["eval/win_rate"]]
    assert evals == [("0.0", "0.75"), ("2.0", "0.75"), ("4.0", "0.75")]
    assert all(0 <= float(r["eval/win_rate"]) <= 1 for r in rows if r["eval/win_rate"])
    assert (tmp_path / "eval" / "run" / "training.png").stat().st_size > 5000


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")  # peft's warning about this very case
def test_tied_weights_are_not_merged_and_one_token_completions_score(tmp_path: Path) -> None:
    """LoRA on a tied lm_head would leak its merged delta into the embeddings: sampling stays unmerged."""
    model, tok = tiny_model_and_tokenizer(seed=0)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    cfg = NashMPConfig(max_steps=1, max_new_tokens=1, per_device_train_batch_size=2, num_generations=2,
                       output_dir=str(tmp_path / "run"), progress_bar=False, use_peft=True,
                       lora_target_modules=["q_proj", "lm_head"])  # fmt: skip
    trainer = NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=vowel_oracle(), prompts=PROMPTS)
    assert trainer._base_weights == []
    row = trainer.training_step()  # one-token completions through the grouped scorer
    assert row["train/length"] == 1.0


def test_held_out_prompts_come_from_a_test_split_or_eval_dataset(tmp_path: Path) -> None:
    from nashmp.errors import InvalidParameterError
    from nashmp.llm.prompts import default_prompts

    prompts = tmp_path / "train.txt"
    prompts.write_text("one\ntwo\nthree\n")
    cfg = NashMPConfig(dataset=str(prompts), eval_steps=2, output_dir=str(tmp_path / "a"))
    with pytest.raises(InvalidParameterError, match="no test split: set eval_dataset"):
        NashMPTrainer._held_out_prompts(cfg)
    held = tmp_path / "held.txt"
    held.write_text("four\nfive\n")
    cfg = NashMPConfig(dataset=str(prompts), eval_steps=2, eval_dataset=str(held), output_dir=str(tmp_path / "b"))
    assert NashMPTrainer._held_out_prompts(cfg) == ["four", "five"]
    default = NashMPTrainer._held_out_prompts(NashMPConfig(eval_steps=2))
    assert default == default_prompts("test") and not set(default) & set(default_prompts("train"))


def test_sample_completions_are_logged_and_resume_drops_later_ones(tmp_path: Path) -> None:
    """log_completions_steps: one JSONL record per prompt every N steps, the compared answers and P of the pair
    as the oracle gave it; a resumed run rewrites what was logged after its checkpoint."""
    oracle = vowel_oracle()
    trainer = make(tmp_path, oracle, max_steps=4, log_completions_steps=2, save_steps=2)
    trainer.train()
    path = tmp_path / "run" / "completions.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records] == [2] * 4 + [4] * 4  # B = 4 prompts, at steps 2 and 4
    assert {r["prompt"] for r in records} <= set(PROMPTS)
    for r in records:
        want = float(oracle.probability([r["prompt"]], [r["completion"]], [r["other"]])[0])
        assert r["preference"] == pytest.approx(want, abs=1e-6)
    resumed = make(
        tmp_path,
        oracle,
        max_steps=4,
        log_completions_steps=2,
        resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"),
    )
    assert [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()] == [2] * 4
    resumed.train()
    assert [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()] == [2] * 4 + [4] * 4


def test_report_to_tensorboard_logs_metrics_and_sample_text(tmp_path: Path) -> None:
    """report_to=tensorboard (installs offline): the trainer's metrics and sample completions reach the event file."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make(tmp_path, vowel_oracle(), max_steps=2, report_to=["tensorboard"], log_completions_steps=1)
    trainer.train()
    events = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events, "an event file was written"
    acc = EventAccumulator(str(events[0].parent), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"losses/loss", "train/kl_ref", "charts/learning_rate", "charts/queries"} <= scalars
    assert [e.step for e in acc.Scalars("losses/loss")] == [1, 2]
    assert any("samples/completion" in tag for tag in acc.Tags()["tensors"])
