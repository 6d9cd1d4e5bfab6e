"""LLM layer: sampling, losses on hand-computed tensors, every algorithm, resume, config errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

from nashmp.approx.losses import ipo_loss, prox_pg_loss  # noqa: E402
from nashmp.errors import CheckpointError, InvalidOracleOutputError, InvalidParameterError  # noqa: E402
from nashmp.llm.config import LLM_ALGORITHMS, NashMPConfig  # noqa: E402
from nashmp.llm.models import ModelNotFoundError, tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.sampling import ModelView, completion_log_probs, sample_completions, swap_parameters  # noqa: E402
from nashmp.llm.trainer import NashMPTrainer  # noqa: E402
from nashmp.oracles import CallableOracle  # noqa: E402

PROMPTS = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke.", "Describe rain.", "Why is the sky blue?"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def score(text: str) -> float:
    return sum(ord(c) for c in text) / (10 * max(len(text), 1)) + len(text) / 5


def length_oracle() -> CallableOracle:
    """Bradley–Terry on a content score (mean code point, length): P = σ(s(a) − s(b))."""

    def fn(x, a, b):  # type: ignore[no-untyped-def]
        d = np.array([score(s) for s in a]) - np.array([score(s) for s in b])
        return 0.5 * (1 + np.tanh(d / 2))  # σ(d) without overflow

    return CallableOracle(fn)


def make_trainer(tmp_path: Path, **overrides: object) -> NashMPTrainer:
    model, tok = tiny_model_and_tokenizer(seed=0)
    fields = {
        "max_steps": 2,
        "max_new_tokens": 6,
        "per_device_train_batch_size": 2,
        "output_dir": str(tmp_path / "run"),
        "progress_bar": False,
        "learning_rate": 1e-2,
        "inner_steps": 1,
        **overrides,
    }
    return NashMPTrainer(NashMPConfig(**fields), model=model, tokenizer=tok, oracle=length_oracle(), prompts=PROMPTS)


# --------------------------------------------------------------------------- sampling


def _prompt_batch(tok):  # type: ignore[no-untyped-def]
    enc = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def test_sampled_log_probs_equal_teacher_forced_log_probs() -> None:
    """The KV-cache decoding and the one-pass scoring agree (positions, padding, temperature)."""
    model, tok = tiny_model_and_tokenizer(seed=1)
    ids, mask = _prompt_batch(tok)
    torch.manual_seed(0)
    view = ModelView(model)
    out, out_mask, logp = sample_completions(
        [(view, 1.0)], ids, mask, max_new_tokens=10, temperature=0.7, eos_token_id=0, pad_token_id=tok.pad_token_id
    )
    scored = completion_log_probs(view, ids, mask, out, out_mask, temperature=0.7)
    assert out.shape == (2, 10)
    torch.testing.assert_close(scored, logp * out_mask, atol=1e-5, rtol=0)


def test_mixture_sampling_is_the_normalised_geometric_mixture() -> None:
    """Nash-MD's opponent: log μ = log_softmax((1−c) log π_1 + c log π_2) at every token."""
    m1, tok = tiny_model_and_tokenizer(seed=1)
    m2, _ = tiny_model_and_tokenizer(seed=2)
    ids, mask = _prompt_batch(tok)
    c, T = 0.3, 0.9
    torch.manual_seed(0)
    out, out_mask, logp = sample_completions(
        [(ModelView(m1), 1 - c), (ModelView(m2), c)],
        ids,
        mask,
        max_new_tokens=5,
        temperature=T,
        eos_token_id=0,
        pad_token_id=tok.pad_token_id,
    )
    full = torch.cat([ids, out], 1)
    fmask = torch.cat([mask, torch.ones_like(out)], 1)
    pos = (fmask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        l1 = torch.log_softmax(m1(input_ids=full, attention_mask=fmask, position_ids=pos).logits / T, -1)
        l2 = torch.log_softmax(m2(input_ids=full, attention_mask=fmask, position_ids=pos).logits / T, -1)
    mix = torch.log_softmax((1 - c) * l1 + c * l2, -1)[:, ids.shape[1] - 1 : -1]
    expected = mix.gather(-1, out[..., None])[..., 0]
    torch.testing.assert_close(logp, expected * out_mask, atol=1e-5, rtol=0)


def test_sampling_stops_at_eos_and_masks_the_rest() -> None:
    """Issue 13, item 12: EOS is forced to probability 0.3 at every step, so every row ends (at different
    steps); the EOS token is kept in the mask, everything after it is padding and masked, and the loop stops
    once all rows have ended."""
    model, tok = tiny_model_and_tokenizer(seed=3)
    vocab, eos, p_eos = model.config.vocab_size, 5, 0.3
    with torch.no_grad():  # logits = the head's bias alone: uniform except EOS
        model.lm_head.weight.zero_()  # (tied to the input embeddings in the tiny model)
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(vocab))
        model.lm_head.bias[eos] = math.log(p_eos / (1 - p_eos) * (vocab - 1))
    enc = tok(["hello there", "hi"] * 8, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    budget = 40
    out, out_mask, logp = sample_completions(
        [(ModelView(model), 1.0)],
        enc["input_ids"],
        enc["attention_mask"],
        max_new_tokens=budget,
        temperature=1.0,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id,
    )
    ends = []
    for row, m, lp in zip(out, out_mask, logp, strict=True):
        hits = (row == eos).nonzero()
        assert len(hits), "P(no EOS in 40 tokens) = 0.7⁴⁰ ≈ 6e-7 per row"
        first = int(hits[0])
        ends.append(first)
        assert m[: first + 1].all() and not m[first + 1 :].any()
        assert (row[first + 1 :] == tok.pad_token_id).all() and (lp[first + 1 :] == 0).all()
        assert float(lp[first]) == pytest.approx(math.log(p_eos), abs=1e-5)
    assert len(set(ends)) > 3  # rows end at different steps
    assert out.shape[1] == max(ends) + 1 < budget  # sampling stopped when the last row ended


def test_sampling_follows_the_callers_stopping_rule() -> None:
    """Under FSDP2 every decoding step is a collective, so the trainer passes a rule that waits for every
    rank: rows that ended keep being padded (mask 0, log-prob 0) until the rule says stop."""
    model, tok = tiny_model_and_tokenizer(seed=3)
    enc = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    args = dict(max_new_tokens=20, temperature=0.0, pad_token_id=tok.pad_token_id)
    first, _, _ = sample_completions([(ModelView(model), 1.0)], enc["input_ids"], enc["attention_mask"],
                                     eos_token_id=-1, **args)  # fmt: skip
    eos = int(first[0, 0])  # greedy: the first row's first token, now declared EOS
    calls: list[int] = []

    def after_five(finished: torch.Tensor) -> bool:
        calls.append(int(finished.sum()))
        return len(calls) == 5

    out, mask, logp = sample_completions(
        [(ModelView(model), 1.0)], enc["input_ids"], enc["attention_mask"], eos_token_id=eos,
        all_finished=after_five, **args,
    )  # fmt: skip
    assert out.shape[1] == 5 and calls[0] >= 1  # row 0 ended at its first token, decoding went on
    assert mask[0].tolist() == [1, 0, 0, 0, 0] and (logp[0, 1:] == 0).all()
    assert (out[0, 1:] == tok.pad_token_id).all()
    default, _, _ = sample_completions([(ModelView(model), 1.0)], enc["input_ids"][:1], enc["attention_mask"][:1],
                                       eos_token_id=eos, **args)  # fmt: skip
    assert default.shape[1] == 1  # the default rule: stop once this call's rows have all ended


def test_swap_parameters_is_exact_and_restores() -> None:
    model, _ = tiny_model_and_tokenizer(seed=0)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    values = [torch.randn_like(p) for p in params]
    kept = [v.clone() for v in values]
    with swap_parameters(params, values):
        for p, v in zip(params, kept, strict=True):
            assert torch.equal(p, v)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)
    for v, k in zip(values, kept, strict=True):
        assert torch.equal(v, k)


# --------------------------------------------------------------------------- losses by hand


def test_sequence_prox_pg_loss_by_hand() -> None:
    """Nash-MP's loss on token log-probs: value and gradient computed by hand."""
    tokens = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -1.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    logp = (tokens * mask).sum(-1)  # [-3, -2]
    ref, anchor = torch.tensor([-2.5, -2.5]), torch.tensor([-3.5, -1.0])
    p = torch.tensor([0.8, 0.3])
    beta, w = 0.1, 0.5
    loss = prox_pg_loss(logp, p, 0.5, [(beta, ref), (w, anchor)])
    # advantages: 0.3 − 0.1·(−0.5) − 0.5·(0.5) = 0.1 ;  −0.2 − 0.1·(0.5) − 0.5·(−1) = 0.25
    adv = [0.3 + 0.05 - 0.25, -0.2 - 0.05 + 0.5]
    assert math.isclose(float(loss.detach()), -(adv[0] * -3 + adv[1] * -2) / 2, rel_tol=1e-6)
    loss.backward()
    expected = -torch.tensor(adv)[:, None] * mask / 2
    torch.testing.assert_close(tokens.grad, expected)


def test_sequence_ipo_loss_by_hand() -> None:
    logp_y, logp_yp = torch.tensor([-3.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    ref_y, ref_yp = torch.tensor([-2.5]), torch.tensor([-2.5])
    beta, o = 0.5, torch.tensor([0.9])
    loss = ipo_loss(logp_y, logp_yp, ref_y, ref_yp, o, beta)
    h = (-3.0 + 2.5) - (-2.0 + 2.5)  # −1
    assert math.isclose(float(loss.detach()), (h - 0.4 / 0.5) ** 2, rel_tol=1e-6)
    loss.backward()
    assert math.isclose(float(logp_y.grad), 2 * (h - 0.8), rel_tol=1e-6)
    assert math.isclose(float(logp_yp.grad), -2 * (h - 0.8), rel_tol=1e-6)


# --------------------------------------------------------------------------- the trainer


def _reference_parameters(trainer: NashMPTrainer) -> dict[str, torch.Tensor]:
    """π_ref's weights: the frozen base layers under the adapters (LoRA), else the frozen copy (full fine-tuning)."""
    if trainer._ref_model is not None:
        return dict(trainer._ref_model.named_parameters())
    return {n: p for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("algorithm", list(LLM_ALGORITHMS))
@pytest.mark.parametrize("use_peft", [True, False])
def test_every_algorithm_trains_three_steps(tmp_path: Path, algorithm: str, use_peft: bool) -> None:
    trainer = make_trainer(
        tmp_path, algorithm=algorithm, use_peft=use_peft, opponent="ema", num_generations=4, max_steps=3
    )
    before = [p.detach().clone() for p in trainer.params]
    frozen = _reference_parameters(trainer)
    frozen_before = {name: p.detach().clone() for name, p in frozen.items()}
    assert frozen and not any(p.requires_grad for p in frozen.values())
    history = trainer.train()  # three steps: LoRA's A moves only once B ≠ 0 (and a warm-up may hold step 1)
    assert [int(h["step"]) for h in history] == [1, 2, 3]
    selfplay = trainer.recipe.opponent_at(trainer.config, 0) == "self"
    pairs_per_prompt = 6 if selfplay else 4  # all 6 pairs of 4 completions, or 4 (completion, opponent) pairs
    pairs_per_step = 2 * pairs_per_prompt * (2 if algorithm == "egpo" else 1)  # EGPO: a fresh batch for its look-ahead
    assert history[-1]["charts/queries"] == 3 * pairs_per_step
    assert history[-1]["charts/completions"] == 3 * 2 * 4 * (2 if algorithm == "egpo" else 1)
    for row in history:
        assert all(math.isfinite(v) for v in row.values())
        assert 0 <= row["train/preference"] <= 1
    # every trainable tensor moved (TRL's canonical check), and π_ref's weights stayed bit-for-bit
    unmoved = [i for i, (p, b) in enumerate(zip(trainer.params, before, strict=True)) if torch.equal(p.detach(), b)]
    assert not unmoved, f"{len(unmoved)} of {len(before)} trainable tensors did not move"
    for name, p in frozen.items():
        assert torch.equal(p.detach(), frozen_before[name]), f"π_ref weight {name} changed"
    out = Path(trainer.config.output_dir)
    assert (out / "log.csv").read_text().count("\n") == 4
    assert (out / "final" / ("adapter_model.safetensors" if use_peft else "model.safetensors")).is_file()
    has_anchor = algorithm.startswith("nash-mp") or algorithm == "nash-prox"  # Nash-MD, IPO, EGPO keep none
    assert (out / "checkpoint-3" / "anchor.safetensors").is_file() == has_anchor
    assert (out / "checkpoint-3" / "trainer_state.json").is_file()


def test_peft_reference_is_the_base_model(tmp_path: Path) -> None:
    """π_ref = adapters disabled: equal to the untouched base model's logits after training."""
    trainer = make_trainer(tmp_path, use_peft=True, max_steps=3)
    base, tok = tiny_model_and_tokenizer(seed=0)
    trainer.train()
    ids, mask = _prompt_batch(tok)
    comp = torch.tensor([[70, 71], [72, 73]])
    cm = torch.ones_like(comp)
    ref = completion_log_probs(trainer.ref_view, ids, mask, comp, cm, temperature=0.7)
    exp = completion_log_probs(ModelView(base), ids, mask, comp, cm, temperature=0.7)
    with torch.no_grad():
        pol = completion_log_probs(trainer.policy_view, ids, mask, comp, cm, temperature=0.7)
    torch.testing.assert_close(ref, exp)
    assert float((pol - ref).abs().max()) > 1e-4  # the adapters did move the policy


def test_ema_anchor_update(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, algorithm="nash-mp", ema=0.25, max_steps=1)
    theta0 = [p.detach().clone() for p in trainer.params]
    trainer.training_step()
    for a, t0, t1 in zip(trainer.anchor, theta0, trainer.params, strict=True):
        torch.testing.assert_close(a, 0.75 * t0 + 0.25 * t1.detach())


def test_faithful_phases_switch_anchor_and_half(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, algorithm="nash-mp-faithful", inner_steps=1, max_steps=3)
    snaps = []
    for _ in range(3):
        snaps.append([p.detach().clone() for p in trainer.params])
        trainer.training_step()
    # step 0 starts iteration k=0 (anchor = θ_0), step 1 freezes π_{½} = θ_1, step 2 starts k=1 (anchor = θ_2)
    for a, s in zip(trainer.anchor, snaps[2], strict=True):
        assert torch.equal(a, s)
    for h, s in zip(trainer.half, snaps[1], strict=True):
        assert torch.equal(h, s)


@pytest.mark.parametrize(
    ("schedule", "fields", "factors"),
    [
        ("constant_with_warmup", {"warmup_steps": 3}, [0, 1 / 3, 2 / 3, 1, 1, 1]),
        ("constant_with_warmup", {"warmup_ratio": 0.5}, [0, 1 / 3, 2 / 3, 1, 1, 1]),  # floor(0.5 · 6) = 3
        ("constant_with_warmup", {"warmup_ratio": 0.1}, [1] * 6),  # floor(0.6) = 0: a short run is not held at 0
        ("linear", {"warmup_steps": 2}, [0, 0.5, 1, 0.75, 0.5, 0.25]),
        ("constant", {"warmup_steps": 2}, [1] * 6),  # transformers' constant schedule ignores the warm-up
    ],
)
def test_learning_rate_schedule_with_warmup(
    tmp_path: Path, schedule: str, fields: dict[str, float], factors: list[float]
) -> None:
    """The logged learning rate is the transformers schedule's, one scheduler step per optimiser step."""
    trainer = make_trainer(tmp_path, max_steps=6, learning_rate=1e-2, lr_scheduler_type=schedule, **fields)
    history = trainer.train()
    assert [row["charts/learning_rate"] for row in history] == pytest.approx([1e-2 * f for f in factors])


@pytest.mark.parametrize("algorithm", ["nash-mp", "nash-mp-faithful", "nash-prox", "nash-md", "egpo"])
def test_resume_equals_uninterrupted(tmp_path: Path, algorithm: str) -> None:
    """A run killed after step 3 and resumed from checkpoint-2 ends exactly like an uninterrupted one."""
    common = {"algorithm": algorithm, "max_steps": 4, "save_steps": 2, "inner_steps": 2, "opponent": "half",
              "lr_scheduler_type": "linear", "warmup_steps": 2}  # the schedule's position is resumed too  # fmt: skip
    full = make_trainer(tmp_path / "full", **common)
    full_history = full.train()

    killed = make_trainer(tmp_path / "killed", **common)
    original = killed.training_step

    def dies_at_step_three() -> dict[str, float]:
        if killed.step == 3:
            raise KeyboardInterrupt("killed")
        return original()

    killed.training_step = dies_at_step_three  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = make_trainer(tmp_path / "killed", **common, resume_from_checkpoint="latest")
    assert resumed.step == 2
    resumed_history = resumed.train()

    assert len(resumed_history) == len(full_history) == 4
    for got, want in zip(resumed_history, full_history, strict=True):
        assert set(got) == set(want)
        for key in want:
            if key not in ("charts/seconds", "charts/sample_seconds"):
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    for p, q in zip(full.params, resumed.params, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    log = (tmp_path / "killed" / "run" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1.0", "2.0", "3.0", "4.0"]


class _RunsCode:
    """A pickle that runs code when loaded (what a crafted checkpoint file would hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_resume_never_runs_code_from_a_checkpoint(tmp_path: Path) -> None:
    """The schedule's state is JSON in trainer_state.json, so a checkpoint holding a ``custom_checkpoint_0.pkl``
    (accelerate unpickles registered objects with weights_only=False) is refused before anything is read; a
    crafted RNG pickle is read by accelerate with weights_only=True and does not run either."""
    common = {"max_steps": 3, "save_steps": 2, "lr_scheduler_type": "linear", "warmup_steps": 2}
    make_trainer(tmp_path / "a", **common).train()
    ckpt = tmp_path / "a" / "run" / "checkpoint-2"
    assert not list(ckpt.glob("custom_checkpoint_*"))  # the scheduler is no longer pickled
    resumed = make_trainer(tmp_path / "a", **common, resume_from_checkpoint=str(ckpt))
    assert resumed.step == 2 and resumed.lr_scheduler.last_epoch == 2  # the schedule came back from the JSON
    marker = tmp_path / "ran.txt"
    torch.save(_RunsCode(marker), ckpt / "custom_checkpoint_0.pkl")
    with pytest.raises(CheckpointError, match="custom_checkpoint_0.pkl, a pickle nashmp does not load"):
        make_trainer(tmp_path / "a", **common, resume_from_checkpoint=str(ckpt))
    assert not marker.exists()
    (ckpt / "custom_checkpoint_0.pkl").unlink()
    # accelerate reads its RNG pickle with weights_only=True (and skips it silently when that fails); the
    # trainer's own safetensors copy of the streams keeps the resumed run exact
    (ckpt / "random_states_0.pkl").write_bytes(__import__("pickle").dumps(_RunsCode(marker)))
    again = make_trainer(tmp_path / "a", **common, resume_from_checkpoint=str(ckpt))
    assert not marker.exists()
    last = again.train()[-1]["losses/loss"]  # (before another trainer re-seeds the process's generator)
    uninterrupted = make_trainer(tmp_path / "b", **common).train()
    assert last == pytest.approx(uninterrupted[-1]["losses/loss"], rel=1e-5, abs=1e-6)


def test_resume_refuses_snapshots_or_launches_that_do_not_match(tmp_path: Path) -> None:
    """A snapshot file of other shapes (copy_ would broadcast it silently), a missing one, or a checkpoint from
    the other launch mode (FSDP2 vs DDP: other files, and a broadcast only rank 0 would join) is refused."""
    import json

    from safetensors.torch import load_file, save_file

    common = {"max_steps": 2, "save_steps": 2}
    make_trainer(tmp_path, **common).train()
    ckpt = tmp_path / "run" / "checkpoint-2"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["sharded"] is False and state["launch"] == "replicated"
    older = {k: v for k, v in state.items() if k != "launch"}  # an FSDP2 checkpoint from before "launch" was kept
    for written, other in (("deepspeed", {**state, "launch": "deepspeed"}), ("fsdp2", {**older, "sharded": True})):
        (ckpt / "trainer_state.json").write_text(json.dumps(other))
        with pytest.raises(CheckpointError, match=rf"another launch \({written}; this run: replicated\)"):
            make_trainer(tmp_path, **common, resume_from_checkpoint=str(ckpt))
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    anchor = load_file(str(ckpt / "anchor.safetensors"))
    save_file({**anchor, "0": anchor["0"][:1].contiguous()}, str(ckpt / "anchor.safetensors"))
    with pytest.raises(CheckpointError, match="other shapes or count"):
        make_trainer(tmp_path, **common, resume_from_checkpoint=str(ckpt))
    (ckpt / "anchor.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no anchor.safetensors"):
        make_trainer(tmp_path, **common, resume_from_checkpoint=str(ckpt))


def test_checkpoints_without_a_saved_schedule_replay_it(tmp_path: Path) -> None:
    """A checkpoint written before the schedule moved into trainer_state.json (its pickle deleted, as the
    refusal above asks) resumes at the same learning rate."""
    import json

    common = {"max_steps": 4, "save_steps": 2, "lr_scheduler_type": "linear", "warmup_steps": 2}
    full = make_trainer(tmp_path / "full", **common)
    full.train()
    old = make_trainer(tmp_path / "old", **common)
    old.training_step()
    old.training_step()
    ckpt = old.save_checkpoint()
    state = json.loads((ckpt / "trainer_state.json").read_text())
    del state["lr_scheduler"]
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    resumed = make_trainer(tmp_path / "old", **common, resume_from_checkpoint=str(ckpt))
    rows = resumed.train()
    assert [r["charts/learning_rate"] for r in rows[2:]] == pytest.approx(
        [r["charts/learning_rate"] for r in full.history[2:]]
    )


# --------------------------------------------------------------------------- errors before loading


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"algorithm": "dpo"}, "unknown algorithm"),
        ({"opponent": "mirror"}, "opponent"),
        ({"ema": 1.5}, "ema"),
        ({"temperature": 0.0}, "temperature"),
        ({"max_steps": 0}, "max_steps"),
        ({"lr_scheduler_type": "cosine_annealing"}, "lr_scheduler_type"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_bad_config_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        NashMPConfig(**fields)  # type: ignore[arg-type]


def test_unknown_model_path_fails_before_loading(tmp_path: Path) -> None:
    cfg = NashMPConfig(model_name_or_path=str(tmp_path / "no-such-model"), output_dir=str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="unknown model|not a local folder"):
        NashMPTrainer(cfg, prompts=PROMPTS)


def test_empty_prompt_set(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="empty"):
        NashMPTrainer(NashMPConfig(output_dir=str(tmp_path)), prompts=[])


def test_garbage_judge_is_an_error_not_a_tie(tmp_path: Path) -> None:
    model, tok = tiny_model_and_tokenizer(seed=0)
    garbage = CallableOracle(lambda x, a, b: [float("nan")] * len(a))
    cfg = NashMPConfig(max_steps=1, max_new_tokens=4, per_device_train_batch_size=2, output_dir=str(tmp_path))
    trainer = NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=garbage, prompts=PROMPTS)
    with pytest.raises(InvalidOracleOutputError, match="NaN"):
        trainer.training_step()


# --------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_process_accelerate_launch(tmp_path: Path) -> None:
    """``accelerate launch --config_file configs/accelerate/ddp.yaml`` on CPU: DDP keeps both replicas identical.

    (``accelerate launch --cpu`` always starts a single process; see the README's scale-out section.)
    """
    script = Path(__file__).with_name("llm_ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",  # the shipped DDP config: 2 processes, torchrun; without a GPU the trainer selects
        str(Path(__file__).parents[1] / "configs" / "accelerate" / "ddp.yaml"),  # accelerate's MULTI_CPU (gloo)
        "--main_process_port",
        str(29500 + os.getpid() % 1000),
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sums = sorted((tmp_path / "ranks").glob("rank*.txt"))
    assert len(sums) == 2
    values = [s.read_text().split() for s in sums]
    assert values[0][0] == values[1][0]  # parameter checksum identical on both ranks
    assert values[0][1] != values[0][2]  # ... and training moved it
    assert values[0][4] == values[1][4] == "2"  # two processes
    assert int(float(values[0][3])) == 2 * 2 * 2  # 2 steps × 2 prompts × 1 pair (k = 2) × 2 processes
    assert values[0][5] != values[1][5]  # per-process sampling seeds: different completions of the same prompt
