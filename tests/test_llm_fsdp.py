"""FSDP2 and DeepSpeed ZeRO-2 under ``accelerate launch`` with two CPU processes (gloo): shard-aware
snapshots, DeepSpeed's engine and masters, exact resume.

accelerate selects FSDP only on accelerator machines (its MULTI_CPU type never becomes FSDP), so the worker
(``llm_fsdp_script.py``) sets the two state fields accelerate sets on a GPU machine and then runs
accelerate's own FSDP2 path (``fully_shard`` in ``prepare``, full-state checkpoints) with the shipped
``configs/accelerate/fsdp.yaml`` (and likewise for DeepSpeed with ``zero2.yaml``: DeepSpeed runs on CPU
with its gloo backend). The reference is the same script under the shipped ``ddp.yaml``: the same
per-process seeds, prompts and samples, so the two must train the same weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs" / "accelerate"
SCRIPT = Path(__file__).with_name("llm_fsdp_script.py")


def _launch(out: Path, config: str, *args: str, port_offset: int, mixed_precision: str = "no") -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
        "--mixed_precision", mixed_precision,
        "--main_process_port", str(29500 + (os.getpid() + port_offset) % 1000), str(SCRIPT), str(out), *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]


def _read(out: Path, tag: str) -> tuple[list[dict], list[dict]]:
    infos = [json.loads((out / f"{tag}-rank{r}.json").read_text()) for r in (0, 1)]
    tensors = [load_file(str(out / f"{tag}-rank{r}.safetensors")) for r in (0, 1)]
    return infos, tensors


def _max_diff(a: dict, b: dict, prefix: str) -> float:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys and sorted(keys) == sorted(k for k in b if k.startswith(prefix))
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


def test_fsdp2_trains_like_ddp_keeps_sharded_snapshots_and_resumes_exactly(tmp_path: Path) -> None:
    _launch(tmp_path, "ddp.yaml", "ddp", port_offset=0)
    _launch(tmp_path, "fsdp.yaml", "fsdp", port_offset=1)
    _launch(tmp_path, "fsdp.yaml", "fsdp", "resume", port_offset=2)
    ddp_info, ddp = _read(tmp_path, "ddp")
    fsdp_info, fsdp = _read(tmp_path, "fsdp")
    resumed_info, resumed = _read(tmp_path, "fsdp-resume")

    for info in fsdp_info:  # really sharded: DTensor parameters, no LoRA merge into sharded base weights
        assert info["distributed_type"] == "DistributedType.FSDP" and info["sharded"] is True
        assert info["lora_merged_for_sampling"] is False
        assert info["stop_when_one_rank_done"] is False  # a rank whose rows ended keeps decoding for the other
        assert info["stop_when_all_done"] is True
    assert ddp_info[0]["sharded"] is False and ddp_info[0]["stop_when_one_rank_done"] is True  # the local rule
    assert fsdp_info[0]["queries"] == ddp_info[0]["queries"] == 3 * 2 * 1 * 2  # steps × prompts × pairs × ranks

    # the gathered weights and EMA anchor of FSDP2 equal DDP's (measured: bit-identical on torch 2.13)
    tol = 1e-6
    assert _max_diff(fsdp[0], ddp[0], "param") < tol
    assert _max_diff(fsdp[0], ddp[0], "anchor") < tol
    assert _max_diff(fsdp[0], fsdp[1], "param") == 0.0  # both ranks gather the same weights
    count = sum(k.startswith("param") for k in fsdp[0])
    moved = max(float((fsdp[0][f"param{i}"] - fsdp[0][f"init{i}"]).abs().max()) for i in range(count))
    assert moved > 1e-3  # training moved the adapters
    assert fsdp_info[0]["losses"] == pytest.approx(ddp_info[0]["losses"], abs=1e-6)
    assert _max_diff(fsdp[0], ddp[0], "grad") < tol

    # stop at step 2, resume from the checkpoint in a fresh trainer: the same step 3
    assert _max_diff(resumed[0], fsdp[0], "param") < tol
    assert _max_diff(resumed[0], fsdp[0], "anchor") < tol
    assert resumed_info[0]["losses"] == pytest.approx(fsdp_info[0]["losses"], abs=1e-6)
    ckpt = tmp_path / "fsdp-resume-run" / "checkpoint-2"
    assert (ckpt / "anchor.rank0.safetensors").is_file() and (ckpt / "anchor.rank1.safetensors").is_file()
    assert (ckpt / "training_state.rank1.safetensors").is_file()  # each rank its shards of adapters and AdamW
    assert not [f.name for f in ckpt.rglob("*") if f.suffix in (".pkl", ".bin", ".pt", ".distcp", ".metadata")]
    # the final model is gathered once and saved like DDP's: the same adapter file, value for value
    saved = load_file(str(tmp_path / "fsdp-run" / "final" / "adapter_model.safetensors"))
    reference = load_file(str(tmp_path / "ddp-run" / "final" / "adapter_model.safetensors"))
    assert sorted(saved) == sorted(reference) and len(saved) == count
    assert max(float((saved[k] - reference[k]).abs().max()) for k in saved) < tol


def test_fsdp2_full_fine_tuning_computes_ddps_gradient(tmp_path: Path) -> None:
    """Without LoRA every weight is a sharded DTensor (snapshots too). The first step's clipped, averaged
    gradient equals DDP's to float rounding (reduce-scatter and all-reduce sum in different orders; measured
    3e-7 relative). Later steps are not compared: Adam turns rounding-level gradients into steps of size
    ``learning_rate`` (sign steps), so the weights, and then the samples drawn from them, part within a step."""
    _launch(tmp_path, "ddp.yaml", "ddp", "full", port_offset=3)
    _launch(tmp_path, "fsdp.yaml", "fsdp", "full", port_offset=4)
    ddp_info, ddp = _read(tmp_path, "ddp-full")
    fsdp_info, fsdp = _read(tmp_path, "fsdp-full")
    assert fsdp_info[0]["sharded"] is True and ddp_info[0]["sharded"] is False
    grads = [k for k in ddp[0] if k.startswith("grad")]
    assert len(grads) == 20  # every weight of the tiny Llama (tied embeddings counted once)
    for k in grads:
        scale = float(ddp[0][k].abs().max())
        assert float((fsdp[0][k] - ddp[0][k]).abs().max()) <= 1e-5 * max(scale, 1e-12), k
    assert fsdp_info[0]["losses"][0] == pytest.approx(ddp_info[0]["losses"][0], abs=1e-6)
    assert _max_diff(fsdp[0], fsdp[1], "anchor") == 0.0  # the EMA anchor's shards gather identically


@pytest.mark.parametrize(
    ("flag", "port"),
    [
        ("algorithm=nash-md", 5),  # the mixture opponent: two KV caches, adapters switched off at every token
        ("algorithm=egpo", 7),  # the extragradient look-ahead: a snapshot restored in place, optimiser reloaded
        ("gc", 11),  # gradient checkpointing: FSDP2's per-layer all-gathers again in the backward's recompute
    ],
)
def test_fsdp2_matches_ddp_for_the_other_code_paths(tmp_path: Path, flag: str, port: int) -> None:
    _launch(tmp_path, "ddp.yaml", "ddp", flag, port_offset=port)
    _launch(tmp_path, "fsdp.yaml", "fsdp", flag, port_offset=port + 1)
    suffix = "-" + flag.removeprefix("algorithm=")
    ddp_info, ddp = _read(tmp_path, f"ddp{suffix}")
    fsdp_info, fsdp = _read(tmp_path, f"fsdp{suffix}")
    assert fsdp_info[0]["sharded"] is True
    assert _max_diff(fsdp[0], ddp[0], "param") < 1e-6
    # float rounding of the sharded reductions (measured ≤ 3e-6 relative on the loss)
    assert fsdp_info[0]["losses"] == pytest.approx(ddp_info[0]["losses"], rel=1e-5, abs=1e-6)


def test_fsdp2_without_resharding_sees_every_snapshot(tmp_path: Path) -> None:
    """``configs/accelerate/fsdp_no_reshard.yaml`` (ZeRO-2-like): a module stays gathered after a forward pass
    without backward, so the trainer reshards before and after putting a snapshot in (without that, the
    EMA anchor's scoring pass computed with θ and the run left DDP's after one step: 0.03 apart)."""
    _launch(tmp_path, "ddp.yaml", "ddp", port_offset=13)
    _launch(tmp_path, "fsdp_no_reshard.yaml", "fsdp", port_offset=14)
    ddp_info, ddp = _read(tmp_path, "ddp")
    fsdp_info, fsdp = _read(tmp_path, "fsdp")
    assert fsdp_info[0]["sharded"] is True
    assert _max_diff(fsdp[0], ddp[0], "param") < 1e-6
    assert _max_diff(fsdp[0], ddp[0], "anchor") < 1e-6
    assert fsdp_info[0]["losses"] == pytest.approx(ddp_info[0]["losses"], rel=1e-5, abs=1e-6)


def test_fsdp2_bf16_keeps_fp32_master_weights_and_anchor(tmp_path: Path) -> None:
    """``--mixed_precision bf16``: FSDP2 computes in bf16 (its MixedPrecisionPolicy) while the sharded
    parameters, their gradients and the EMA anchor stay fp32. DDP's bf16 is autocast instead, so the two agree
    only to bf16 rounding: the first step's gradient to 2 % of its largest entry (measured 0.4 %)."""
    _launch(tmp_path, "ddp.yaml", "ddp", port_offset=9, mixed_precision="bf16")
    _launch(tmp_path, "fsdp.yaml", "fsdp", port_offset=10, mixed_precision="bf16")
    _, ddp = _read(tmp_path, "ddp")
    fsdp_info, fsdp = _read(tmp_path, "fsdp")
    assert fsdp_info[0]["sharded"] is True
    import torch

    for key, value in fsdp[0].items():
        assert value.dtype == torch.float32, key  # parameters, gradients and anchor: fp32 masters
    scale = max(float(ddp[0][k].abs().max()) for k in ddp[0] if k.startswith("grad"))
    assert _max_diff(fsdp[0], ddp[0], "grad") < 0.02 * scale


# --------------------------------------------------------------------------- DeepSpeed ZeRO-2/3 (zero2/3.yaml)
# deepspeed is in the dev extra (make test installs it); without it only these tests are skipped
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="pip install deepspeed")


@needs_deepspeed
@pytest.mark.parametrize(("stage", "port", "tol"), [(2, 15, 1e-6), (3, 27, 1e-5)])
def test_deepspeed_trains_like_ddp_and_resumes_exactly(tmp_path: Path, stage: int, port: int, tol: float) -> None:
    """Driven as the trainer's own loop (engine.backward per micro-batch, engine.step() once), 3 nash-mp steps
    under ZeRO-2 equal DDP's bit for bit (measured); under ZeRO-3, whose partitioned parameters change the
    order of the sums and sample through the unmerged adapters, to 3e-6 (measured; without releasing the
    gathered parameters around every snapshot swap, 0.03). Stopped at step 2 and resumed from the trainer's
    own per-rank checkpoint (masters and AdamW state, no pickle), a run reaches the same step 3 bit for bit."""
    mode = f"zero{stage}"
    _launch(tmp_path, "ddp.yaml", "ddp", port_offset=port)
    _launch(tmp_path, f"{mode}.yaml", mode, port_offset=port + 1)
    _launch(tmp_path, f"{mode}.yaml", mode, "resume", port_offset=port + 2)
    ddp_info, ddp = _read(tmp_path, "ddp")
    zero_info, zero = _read(tmp_path, mode)
    resumed_info, resumed = _read(tmp_path, f"{mode}-resume")
    for info in zero_info:
        assert info["distributed_type"] == "DistributedType.DEEPSPEED" and info["deepspeed"] is True
        # ZeRO-2: whole weights (LoRA merged for sampling, local stopping rule); ZeRO-3: partitioned, as FSDP2
        assert info["sharded"] is (stage == 3) and info["lora_merged_for_sampling"] is (stage == 2)
        assert info["stop_when_all_done"] is True and info["master_dtypes"] == ["torch.float32"]
    # the stopping rule (rank 0's rows ended, rank 1's not): local under ZeRO-2, all ranks' under ZeRO-3
    assert zero_info[0]["stop_when_one_rank_done"] is (stage == 2) and zero_info[1]["stop_when_one_rank_done"] is False
    assert zero_info[0]["queries"] == ddp_info[0]["queries"] == 12
    assert _max_diff(zero[0], ddp[0], "param") < tol
    assert _max_diff(zero[0], ddp[0], "anchor") < tol
    assert _max_diff(zero[0], zero[1], "param") == 0.0
    assert zero_info[0]["losses"] == pytest.approx(ddp_info[0]["losses"], abs=1e-5)
    assert _max_diff(resumed[0], zero[0], "param") == 0.0
    assert _max_diff(resumed[0], zero[0], "anchor") == 0.0
    assert resumed_info[0]["losses"] == zero_info[0]["losses"]
    ckpt = tmp_path / f"{mode}-resume-run" / "checkpoint-2"
    for rank in (0, 1):  # each rank its master partitions and their AdamW state
        state = load_file(str(ckpt / f"training_state.rank{rank}.safetensors"))
        assert any(k.startswith("master.") for k in state) and any(k.endswith(".exp_avg_sq") for k in state)
    assert (ckpt / "anchor.rank1.safetensors").is_file() is (stage == 3)  # partitions of the anchor per rank
    assert not [f.name for f in ckpt.rglob("*") if f.suffix in (".pkl", ".bin", ".pt", ".distcp", ".metadata")]
    saved = load_file(str(tmp_path / f"{mode}-run" / "final" / "adapter_model.safetensors"))
    reference = load_file(str(tmp_path / "ddp-run" / "final" / "adapter_model.safetensors"))
    assert sorted(saved) == sorted(reference)
    assert max(float((saved[k] - reference[k]).abs().max()) for k in saved) < tol


@needs_deepspeed
@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize(
    ("flag", "port", "tol"),
    [
        # θ_t restored in the weights (partitions), DeepSpeed's masters and the AdamW state (measured 9e-8 under
        # ZeRO-2 and 9e-6 under ZeRO-3; without the masters' restore 0.05 apart)
        ("algorithm=egpo", 30, 1e-4),
        ("algorithm=nash-md", 36, 1e-6),  # the mixture opponent (measured ≤ 7e-8)
        ("full", 42, 1e-3),  # every weight trained (measured 3e-6 and 4e-5 after 3 steps)
        ("gc", 56, 1e-5),  # gradient checkpointing (ZeRO-3 gathers again in the backward's recompute)
        ("accum", 62, 1e-5),  # 2 micro-batches per step: engine.backward twice, engine.step() once
        ("clip", 68, 1e-5),  # max_grad_norm 1e-3: DeepSpeed's clipping engaged at every step
    ],
)
def test_deepspeed_matches_ddp_for_the_other_code_paths(
    tmp_path: Path, flag: str, port: int, tol: float, stage: int
) -> None:
    mode = f"zero{stage}"
    _launch(tmp_path, "ddp.yaml", "ddp", flag, port_offset=port + 2 * stage)
    _launch(tmp_path, f"{mode}.yaml", mode, flag, port_offset=port + 2 * stage + 1)
    suffix = "-" + flag.removeprefix("algorithm=")
    ddp_info, ddp = _read(tmp_path, f"ddp{suffix}")
    zero_info, zero = _read(tmp_path, f"{mode}{suffix}")
    assert zero_info[0]["deepspeed"] is True and zero_info[0]["sharded"] is (stage == 3)
    assert _max_diff(zero[0], ddp[0], "param") < tol
    assert zero_info[0]["losses"] == pytest.approx(ddp_info[0]["losses"], rel=1e-5, abs=1e-5)
    # the logged (pre-clip) gradient norm: DeepSpeed's, of the averaged gradient, equals DDP's
    assert zero_info[0]["grad_norms"] == pytest.approx(ddp_info[0]["grad_norms"], rel=1e-4)
    if flag == "clip":
        assert min(zero_info[0]["grad_norms"]) > 1e-2  # far above max_grad_norm: every step clipped


@needs_deepspeed
@pytest.mark.parametrize(("stage", "port"), [(2, 50), (3, 53)])
def test_deepspeed_bf16_keeps_fp32_masters_and_anchor(tmp_path: Path, stage: int, port: int) -> None:
    """``--mixed_precision bf16`` under DeepSpeed: the weights it computes with are bf16, its master partitions
    fp32, and the trainer keeps the EMA anchor in fp32 (finer than bf16: asserted) and saves the final adapters
    from the fp32 masters. The first loss (before any update) agrees with DDP's bf16 autocast to bf16 rounding
    (measured 0.4 %)."""
    import torch

    mode = f"zero{stage}"
    _launch(tmp_path, "ddp.yaml", "ddp", port_offset=port, mixed_precision="bf16")
    _launch(tmp_path, f"{mode}.yaml", mode, port_offset=port + 1, mixed_precision="bf16")
    ddp_info, _ = _read(tmp_path, "ddp")
    zero_info, zero = _read(tmp_path, mode)
    info = zero_info[0]
    assert info["param_dtypes"] == ["torch.bfloat16"]
    assert info["anchor_dtypes"] == ["torch.float32"] and info["master_dtypes"] == ["torch.float32"]
    anchors = [v for k, v in zero[0].items() if k.startswith("anchor")]
    assert max(float((a - a.bfloat16().float()).abs().max()) for a in anchors) > 0  # not bf16 values
    assert info["losses"][0] == pytest.approx(ddp_info[0]["losses"][0], rel=0.02)
    final = load_file(str(tmp_path / f"{mode}-run" / "final" / "adapter_model.safetensors"))
    assert {v.dtype for v in final.values()} == {torch.float32}


@needs_deepspeed
def test_deepspeed_zero3_loads_a_saved_model_whole_and_saves_every_weight(tmp_path: Path) -> None:
    """Full fine-tuning under ZeRO-3 from a saved model folder, every parameter partitioned (persistence
    threshold 0). accelerate registers the DeepSpeed config with transformers, so ``from_pretrained`` would
    build the model partitioned (empty parameters, and an empty π_ref copy); the trainer loads it whole. The
    final model.safetensors holds every weight, the tied embedding once, and equals DDP's."""
    from nashmp.llm.models import tiny_model_and_tokenizer

    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model.save_pretrained(str(tmp_path / "tiny-model"))
    tokenizer.save_pretrained(str(tmp_path / "tiny-model"))
    _launch(tmp_path, "ddp.yaml", "ddp", "full", "folder", "nopersist", port_offset=74)
    _launch(tmp_path, "zero3.yaml", "zero3", "full", "folder", "nopersist", port_offset=75)
    ddp_info, ddp = _read(tmp_path, "ddp-full-folder-nopersist")
    zero_info, zero = _read(tmp_path, "zero3-full-folder-nopersist")
    assert zero_info[0]["sharded"] is True
    assert _max_diff(zero[0], ddp[0], "param") < 1e-3
    saved = load_file(str(tmp_path / "zero3-full-folder-nopersist-run" / "final" / "model.safetensors"))
    reference = load_file(str(tmp_path / "ddp-full-folder-nopersist-run" / "final" / "model.safetensors"))
    assert sorted(saved) == sorted(reference)
    assert min(v.numel() for v in saved.values()) > 0  # no partition-freed (empty) tensor written
    assert max(float((saved[k] - reference[k]).abs().max()) for k in saved) < 1e-3
