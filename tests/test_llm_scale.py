"""The trainer's memory and precision stack on a tiny model: gradient accumulation, gradient checkpointing,
mixed precision, attention kernels and remote code (issue: LLM trainer at scale)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from nashmp.errors import InvalidParameterError
from nashmp.llm.config import NashMPConfig
from nashmp.llm.models import load_model_and_tokenizer, tiny_model_and_tokenizer
from nashmp.llm.trainer import NashMPTrainer
from nashmp.oracles import CallableOracle

PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is water?", "Pick a fruit.", "Give a number."]


def code_point_oracle() -> CallableOracle:
    """Bradley–Terry on the mean code point: P(a ≻ b) = σ((s(a) − s(b))/8), vectorised over the pairs."""

    def score(text: str) -> float:
        return float(np.mean([ord(c) for c in text])) if text else 0.0

    def fn(x: object, a: list[str], b: list[str]) -> np.ndarray:
        d = (np.array([score(s) for s in a]) - np.array([score(s) for s in b])) / 8.0
        return 0.5 * (1 + np.tanh(d / 2))

    return CallableOracle(fn)


def make(tmp_path: Path, oracle: str | None = None, **fields: object) -> NashMPTrainer:
    model, tok = tiny_model_and_tokenizer(seed=0)
    base = {"max_steps": 2, "max_new_tokens": 6, "per_device_train_batch_size": 2, "num_generations": 2,
            "output_dir": str(tmp_path / "run"), "progress_bar": False, "learning_rate": 1e-2, "warmup_ratio": 0.0}  # fmt: skip
    if oracle:  # an oracle spec: the trainer builds it
        base["oracle"] = oracle
    config = NashMPConfig(**{**base, **fields})
    return NashMPTrainer(
        config, model=model, tokenizer=tok, oracle=None if oracle else code_point_oracle(), prompts=PROMPTS
    )


@pytest.mark.parametrize("algorithm", ["nash-mp", "nash-md", "egpo"])
def test_gradient_accumulation_averages_the_micro_batch_gradients(tmp_path: Path, algorithm: str) -> None:
    """One optimiser step over G micro-batches: the applied gradient is the mean of each micro-batch's loss
    gradient (recomputed here on the same samples), the prompts are those of one G·B batch, and the counters
    count the whole optimiser step."""
    accumulate = 3
    trainer = make(tmp_path, algorithm=algorithm, gradient_accumulation_steps=accumulate, max_steps=1)
    seen: list[list[str]] = []
    micro_grads: list[list[torch.Tensor]] = []
    applied: list[list[torch.Tensor]] = []
    original_loss, original_apply = trainer._loss, trainer._apply_gradients

    def recording_loss(prompts: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, stats = original_loss(prompts)
        seen.append(list(prompts))
        grads = torch.autograd.grad(loss, trainer.params, retain_graph=True, allow_unused=True)
        micro_grads.append(
            [
                torch.zeros_like(p) if g is None else g.detach().clone()
                for p, g in zip(trainer.params, grads, strict=True)
            ]
        )
        return loss, stats

    def recording_apply() -> float:
        applied.append([p.grad.detach().clone() for p in trainer.params])  # type: ignore[union-attr]
        return original_apply()

    trainer._loss = recording_loss  # type: ignore[method-assign]
    trainer._apply_gradients = recording_apply  # type: ignore[method-assign]
    row = trainer.training_step()
    passes = 2 if algorithm == "egpo" else 1  # EGPO: a look-ahead update, then the real one
    assert len(seen) == passes * accumulate and len(applied) == passes
    single = make(tmp_path / "single", algorithm=algorithm, per_device_train_batch_size=2 * accumulate)
    assert sum(seen[:accumulate], []) == single._batch_prompts(0)  # the same prompts as one big batch
    for g in range(passes):
        for n, got in enumerate(applied[g]):
            want = torch.stack([m[n] for m in micro_grads[g * accumulate : (g + 1) * accumulate]]).mean(0)
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    per_prompt = {"nash-mp": 1, "egpo": 1, "nash-md": 2}[algorithm]  # k = 2: one self-play pair, or k opponents
    assert row["charts/queries"] == passes * accumulate * 2 * per_prompt
    assert row["charts/completions"] == passes * accumulate * 2 * 2


def test_accumulation_changes_the_run_so_resume_refuses_it(tmp_path: Path) -> None:
    make(tmp_path, max_steps=1).train()
    with pytest.raises(InvalidParameterError, match="gradient_accumulation_steps"):
        make(tmp_path, max_steps=2, gradient_accumulation_steps=2, resume_from_checkpoint="latest")


def _first_gradient(trainer: NashMPTrainer) -> list[torch.Tensor]:
    grads: list[torch.Tensor] = []
    original = trainer._apply_gradients

    def capture() -> float:
        grads.extend(p.grad.detach().clone() for p in trainer.params)  # type: ignore[union-attr]
        return original()

    trainer._apply_gradients = capture  # type: ignore[method-assign]
    trainer.training_step()
    return grads


def test_gradient_checkpointing_gives_the_same_gradient(tmp_path: Path) -> None:
    """Checkpointed layers recompute activations in the backward pass: the same samples, loss and gradient
    (the layers really are checkpointed in the policy's pass, and their flags are restored afterwards)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    plain = make(tmp_path / "plain", use_peft=True, num_generations=4, max_new_tokens=12)
    want = _first_gradient(plain)
    ckpt = make(tmp_path / "ckpt", use_peft=True, num_generations=4, max_new_tokens=12, gradient_checkpointing=True)
    layers = [
        m for m in ckpt.raw_model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
    ]
    assert len(layers) == 2  # both decoder layers of the tiny Llama
    calls = []
    for layer in layers:
        func = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=func, **k: calls.append(1) or _f(*a, **k)
    got = _first_gradient(ckpt)
    assert calls, "the policy's scoring pass ran through the checkpointed layers"
    assert all(layer.training == ckpt.model.training for layer in layers)  # flags restored after scoring
    assert ckpt.history[0]["losses/loss"] == pytest.approx(plain.history[0]["losses/loss"], rel=1e-4, abs=1e-4)
    assert sum(float(g.abs().sum()) for g in want) > 0
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """accelerate keeps one mixed-precision setting per process: reset it around a test that changes it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_gradient_checkpointing_with_lora_dropout_recomputes_in_the_same_mode(tmp_path: Path) -> None:
    """With dropout in the adapters, the backward's recompute must run in the scoring mode too (dropout off):
    otherwise torch's checkpoint sees different activations and raises. Same gradient as without checkpointing."""
    fields = {"use_peft": True, "num_generations": 4, "max_new_tokens": 12, "lora_dropout": 0.5}
    want = _first_gradient(make(tmp_path / "plain", **fields))
    got = _first_gradient(make(tmp_path / "ckpt", gradient_checkpointing=True, **fields))
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_resume_refuses_a_changed_schedule(tmp_path: Path) -> None:
    make(tmp_path, max_steps=2, warmup_ratio=0.5, save_steps=1).train()
    for change, message in (({"learning_rate": 5e-3}, "learning_rate"), ({"max_steps": 4}, "warmup_steps=1"),
                            ({"lr_scheduler_type": "linear"}, "lr_scheduler_type")):  # fmt: skip
        with pytest.raises(InvalidParameterError, match=message):
            make(tmp_path, **{"max_steps": 2, "warmup_ratio": 0.5, **change}, resume_from_checkpoint="latest")
    resumed = make(tmp_path, max_steps=4, warmup_steps=1, warmup_ratio=0.5, resume_from_checkpoint="latest")
    assert resumed.step == 2 and resumed.lr_scheduler.last_epoch == 2  # the schedule's position came back


def test_bf16_mixed_precision_keeps_fp32_master_weights_and_anchor(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    trainer = make(tmp_path, mixed_precision="bf16", use_peft=True)
    autocast_dtypes = []
    original = trainer._loss

    def recording(prompts: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
        autocast_dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(prompts)

    trainer._loss = recording  # type: ignore[method-assign]
    history = trainer.train()
    assert autocast_dtypes == [torch.bfloat16] * 2  # sampling and scoring ran under bf16 autocast
    assert trainer.accelerator.mixed_precision == "bf16"
    assert all(p.dtype == torch.float32 for p in trainer.params)
    assert all(t.dtype == torch.float32 for t in trainer.anchor)
    state = trainer.optimizer_impl.state[trainer.params[0]]
    assert state["exp_avg"].dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(row["losses/loss"])) for row in history)
    assert all(float(p.detach().abs().max()) > 0 for p in trainer.params)  # LoRA B moved from zero too


def test_mixed_precision_needs_fp32_weights() -> None:
    with pytest.raises(InvalidParameterError, match="dtype=float32"):
        NashMPConfig(mixed_precision="bf16", dtype="bfloat16")
    with pytest.raises(InvalidParameterError, match="mixed_precision"):
        NashMPConfig(mixed_precision="fp8")


def _saved_tiny(folder: Path) -> Path:
    model, tok = tiny_model_and_tokenizer(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_attn_implementation_is_passed_to_transformers(tmp_path: Path) -> None:
    folder = _saved_tiny(tmp_path / "tiny")
    model, _ = load_model_and_tokenizer(str(folder), attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    model, _ = load_model_and_tokenizer(str(folder), attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(InvalidParameterError, match="cannot load"):
        load_model_and_tokenizer(str(folder), attn_implementation="no_such_kernel")


def test_remote_code_never_runs_unless_trusted(tmp_path: Path) -> None:
    """A model folder that ships its own modelling code: transformers' own class is used when it knows the
    architecture, a one-line error is raised when it does not, and the folder's code is never imported."""
    folder = _saved_tiny(tmp_path / "remote")
    marker = tmp_path / "ran.txt"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nEvilModel = None\n")
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nEvilConfig = None\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    model, _ = load_model_and_tokenizer(str(folder))
    assert type(model).__name__ == "LlamaForCausalLM"
    config["model_type"] = "evil-llm"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidParameterError, match="cannot load"):
        load_model_and_tokenizer(str(folder))
    assert not marker.exists()


def _saved_reward_model(folder: Path, num_labels: int = 1) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    _, tok = tiny_model_and_tokenizer(seed=0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=num_labels,
                         pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(3)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_reward_model_and_judge_by_name(tmp_path: Path) -> None:
    """``reward-model:<folder>`` loads that sequence classifier (σ(r_a − r_b)); ``lm-judge:<folder>`` that LM;
    the trainer uses the named judge, not a copy of the policy."""
    from nashmp.llm.judges import LMJudge, RewardModelOracle, make_oracle

    rm_dir = _saved_reward_model(tmp_path / "rm")
    oracle = make_oracle(f"reward-model:{rm_dir}")
    assert isinstance(oracle, RewardModelOracle)
    r = oracle.rewards(["Say hi."] * 2, ["hello", "zzzz"])
    p = oracle.probability(["Say hi."], ["hello"], ["zzzz"])
    assert r[0] != r[1] and float(p[0]) == pytest.approx(1 / (1 + np.exp(-(r[0] - r[1]))), abs=1e-6)

    judge_dir = _saved_tiny(tmp_path / "judge")
    judge = make_oracle(f"lm-judge:{judge_dir}")
    assert isinstance(judge, LMJudge)

    trainer = make(tmp_path / "run", oracle=f"reward-model:{rm_dir}", max_steps=1)
    assert isinstance(trainer.oracle, RewardModelOracle)
    trainer.train()
    assert trainer.history[-1]["charts/queries"] == 2  # B = 2 prompts, k = 2: one pair each


def test_named_judge_models_are_checked_before_loading(tmp_path: Path) -> None:
    from nashmp.llm.judges import make_oracle
    from nashmp.llm.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        make(tmp_path, oracle=f"reward-model:{tmp_path / 'missing'}")
    with pytest.raises(InvalidParameterError, match="2 labels"):
        make_oracle(f"reward-model:{_saved_reward_model(tmp_path / 'two', num_labels=2)}")
    with pytest.raises(InvalidParameterError, match="needs a model after the colon"):
        NashMPConfig(oracle="reward-model:")


@pytest.mark.parametrize(
    ("kind", "fsdp_version", "refused"),
    [
        ("FSDP", 1, "FSDP version 1 is not supported.*configs/accelerate/fsdp.yaml"),
        ("FSDP", 2, ""),
        ("DEEPSPEED", 2, ""),  # its ZeRO stage is checked by configure_deepspeed (the next test)
        ("MULTI_GPU", 2, ""),
        ("NO", 2, ""),
    ],
)
def test_launchers_the_trainer_cannot_drive_are_refused(kind: str, fsdp_version: int, refused: str) -> None:
    """FSDP1 (flat parameters) is refused with one clear line that names the supported configuration; FSDP2,
    DeepSpeed, DDP and a single process pass."""
    from accelerate.utils import DistributedType

    from nashmp.llm.trainer import check_parameter_sharding

    if refused:
        with pytest.raises(InvalidParameterError, match=refused):
            check_parameter_sharding(DistributedType[kind], fsdp_version)
    else:
        check_parameter_sharding(DistributedType[kind], fsdp_version)


def test_deepspeed_configs_are_filled_from_the_trainer_or_refused_in_one_line() -> None:
    from nashmp.llm.trainer_deepspeed import configure_deepspeed

    cfg = NashMPConfig(per_device_train_batch_size=2, num_generations=4, gradient_accumulation_steps=3,
                       max_grad_norm=0.5)  # fmt: skip
    ds = {"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
          "train_micro_batch_size_per_gpu": "auto"}  # fmt: skip
    assert configure_deepspeed(ds, cfg, num_processes=2) == 2
    assert ds["gradient_accumulation_steps"] == 3 and ds["gradient_clipping"] == 0.5
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["train_batch_size"] == 8 * 3 * 2
    assert ds["managed_gradient_accumulation"] is False  # engine.step() once per optimiser step
    configure_deepspeed(dict(ds), cfg, num_processes=2)  # the values it filled in agree with themselves
    refused = {
        "'optimizer' section": {"optimizer": {"type": "AdamW"}},
        "'scheduler' section": {"scheduler": {"type": "WarmupLR"}},
        "fp16 is not supported": {"fp16": {"enabled": True}},
        "offload_optimizer.*not supported": {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}},
        "gradient_accumulation_steps=2 but": {"gradient_accumulation_steps": 2},
        "gradient_clipping=1.0 but.*max_grad_norm": {"gradient_clipping": 1.0},
    }
    for message, extra in refused.items():
        with pytest.raises(InvalidParameterError, match=message):
            configure_deepspeed({"zero_optimization": {"stage": 2}, **extra}, cfg, num_processes=2)
    for stage in (0, 1, "auto"):
        with pytest.raises(InvalidParameterError, match=f"ZeRO stage {stage!r} is not supported"):
            configure_deepspeed({"zero_optimization": {"stage": stage}}, cfg, num_processes=2)
    with pytest.raises(InvalidParameterError, match="ZeRO stage 0 is not supported"):  # no ZeRO section at all
        configure_deepspeed({}, cfg, num_processes=2)
    for key in ("zero_hpz_partition_size", "zero_quantized_weights"):  # a copy of the weights the swaps miss
        with pytest.raises(InvalidParameterError, match=f"{key} is not supported"):
            configure_deepspeed({"zero_optimization": {"stage": 3, key: 2}}, cfg, num_processes=2)
    zero3 = {"zero_optimization": {"stage": 3}}
    assert configure_deepspeed(dict(zero3), cfg, num_processes=2) == 3
    with pytest.raises(InvalidParameterError, match="zero3_init_flag: false"):  # the model is loaded whole first
        configure_deepspeed(dict(zero3), cfg, num_processes=2, zero3_init=True)


def test_zero3_models_are_loaded_whole_and_partitioned_ones_refused() -> None:
    """accelerate registers a ZeRO-3 config with transformers (whatever zero3_init_flag says), after which
    ``from_pretrained`` builds partitioned models; the trainer loads inside ``loading_whole`` and refuses a
    model that is already partitioned."""
    pytest.importorskip("deepspeed")
    from accelerate import DeepSpeedPlugin
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    from nashmp.llm.trainer_deepspeed import loading_whole, refuse_partitioned

    plugin = DeepSpeedPlugin(zero_stage=3, zero3_init_flag=False)
    plugin.set_deepspeed_weakref()
    try:
        assert is_deepspeed_zero3_enabled()  # what from_pretrained checks
        with loading_whole(plugin):
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled()  # registered again for accelerate's prepare
    finally:
        unset_hf_deepspeed_config()  # process-wide state: other tests in this worker must not see it
    model, _ = tiny_model_and_tokenizer(seed=0)
    refuse_partitioned(model)
    next(model.parameters()).ds_id = 0  # what deepspeed.zero.Init leaves on every parameter
    with pytest.raises(InvalidParameterError, match="already partitioned by DeepSpeed ZeRO-3"):
        refuse_partitioned(model)


def test_hub_ids_resolve_from_the_cache_and_download_only_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from nashmp.llm.models import ModelNotFoundError, resolve_model_path

    uncached = "nashmp-tests/not-in-any-cache"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        resolve_model_path(uncached)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online: from_pretrained may download it
    assert resolve_model_path(uncached) == uncached
    with pytest.raises(ModelNotFoundError, match="unknown model"):  # still not a hub id: refused either way
        resolve_model_path("no/such/three-part-id")


def test_eval_applies_the_system_prompt_as_training_does() -> None:
    from nashmp.llm.eval_generation import generate
    from nashmp.llm.evaluate import win_rate_matrix
    from nashmp.oracles import CallableOracle

    model, tok = tiny_model_and_tokenizer(0)
    common = dict(max_new_tokens=6, temperature=1.0, seed=3)
    with_system = generate(model, tok, ["Say hi.", "Name a fruit."], system_prompt="Be kind.", **common)
    explicit = generate(
        model, tok, [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": q}]
                     for q in ("Say hi.", "Name a fruit.")], **common,
    )  # fmt: skip
    assert with_system.texts == explicit.texts  # the system turn, rendered once by the chat template
    prefill: list[int] = []  # the model saw it: a longer prompt (a tiny random model's samples barely move)
    hook = model.register_forward_pre_hook(lambda m, a, kw: prefill.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        generate(model, tok, ["Say hi."], system_prompt="Be kind.", **common)
        generate(model, tok, ["Say hi."], **common)
    finally:
        hook.remove()
    with_turn, without = (n for n in prefill if n > 1)  # the two prefill passes (decode steps feed one token)
    assert with_turn - without == len(
        tok("<|im_start|>system\nBe kind.<|im_end|>\n", add_special_tokens=False)["input_ids"]
    )
    half = CallableOracle(lambda x, a, b: [0.5] * len(a))
    result = win_rate_matrix({"ref": (model, tok)}, ["Say hi."], half, system_prompt="Be kind.", max_new_tokens=4)
    assert result.settings["system_prompt"] == "Be kind."
    with pytest.raises(InvalidParameterError, match="system_prompt must be a string"):
        win_rate_matrix({"ref": (model, tok)}, ["Say hi."], half, system_prompt=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("aliased", [True, False])
def test_per_rank_training_state_round_trips_masters_that_alias_the_weights_or_not(
    tmp_path: Path, aliased: bool
) -> None:
    """DeepSpeed's masters are either separate fp32 partitions (ZeRO-2; ZeRO-3 with bf16 weights) or the
    weights' own flat buffer (ZeRO-3 in fp32 on an accelerator; on CPU DeepSpeed clones it, so the launch
    tests cannot reach this case). Aliased masters are not written twice (safetensors refuses overlapping
    tensors) and come back with the weights; separate ones are written and restored; AdamW state both ways."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from nashmp.llm.trainer_weights import PolicyWeights

    class Stub(PolicyWeights):  # the attributes the per-rank checkpoint reads
        def __init__(self) -> None:
            self.flat = torch.arange(10, dtype=torch.float32)
            self.params = [self.flat[:4], self.flat[4:]]  # the weights: views of one flat buffer
            self._masters = [self.flat if aliased else self.flat.clone()]
            self.optimizer_impl = torch.optim.AdamW(self._masters, lr=0.1)
            self.accelerator = SimpleNamespace(process_index=0)  # type: ignore[assignment]
            self.deepspeed, self.zero_stage = True, 3

        def masters(self) -> list[torch.Tensor]:
            return self._masters

    saved = Stub()
    saved._masters[0].grad = torch.ones(10)
    saved.optimizer_impl.step()  # AdamW state exists (and, aliased, moved the weights too)
    expected_weights, expected_master = saved.flat.clone(), saved._masters[0].clone()
    expected_avg = saved.optimizer_impl.state[saved._masters[0]]["exp_avg"].clone()
    saved.save_sharded_training_state(tmp_path)
    assert ("master.0" in load_file(str(tmp_path / "training_state.rank0.safetensors"))) is not aliased
    fresh = Stub()
    fresh.load_sharded_training_state(tmp_path)
    assert torch.equal(fresh.flat, expected_weights) and torch.equal(fresh._masters[0], expected_master)
    assert torch.equal(fresh.optimizer_impl.state[fresh._masters[0]]["exp_avg"], expected_avg)
