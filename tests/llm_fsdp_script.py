"""Run by ``tests/test_llm_fsdp.py`` under ``accelerate launch`` with 2 CPU processes.

``mode`` is ``ddp`` (configs/accelerate/ddp.yaml) or ``fsdp`` (configs/accelerate/fsdp.yaml). accelerate picks
FSDP only on accelerator machines, and on CPU its MULTI_CPU type never becomes FSDP; in ``fsdp`` mode this
script therefore sets, after ``Accelerator.__init__``, the two state fields that accelerate sets on a GPU
machine (``distributed_type``, also in PartialState, and an ``FSDP plugin`` read from the launcher's FSDP_* environment, i.e. the
shipped config). Everything else — ``prepare`` (``fully_shard``), clipping, checkpointing — is accelerate's
own FSDP2 code path.

Each rank writes ``<out>/<tag>-rank<i>.safetensors``: the full (gathered) trainable parameters before and
after training and the full EMA anchor, plus ``<tag>-rank<i>.json`` (queries, whether the parameters are
sharded and LoRA merged for sampling, the sampler's stopping rule, the per-step losses). With ``resume``
(tag ``<mode>-resume``) the run stops at step 2, then a fresh trainer resumes from ``checkpoint-2`` to step 3;
with ``full`` (tag suffix ``-full``) it fine-tunes every weight instead of LoRA adapters; ``algorithm=NAME``
(tag suffix ``-NAME``) trains another recipe than nash-mp; ``gc`` (suffix ``-gc``) turns on gradient
checkpointing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def emulate_fsdp_selection() -> None:
    from accelerate import Accelerator, FullyShardedDataParallelPlugin
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = Accelerator.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        if self.state.distributed_type != DistributedType.FSDP:
            plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* set by accelerate launch
            if self.state.mixed_precision != "no":
                plugin.set_mixed_precision(self.state.mixed_precision)  # as AcceleratorState does
            self.state.fsdp_plugin = plugin
            self.state.distributed_type = DistributedType.FSDP
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState does

    Accelerator.__init__ = init  # type: ignore[method-assign]


def emulate_deepspeed_selection(persistence: int | None = None) -> None:
    """As :func:`emulate_fsdp_selection`, for DeepSpeed: the plugin from the launcher's ACCELERATE_DEEPSPEED_*
    environment (the shipped zero2.yaml), the state's distributed type, and the two Accelerator attributes that
    accelerate sets differently under DeepSpeed (no native autocast: DeepSpeed casts the model itself)."""
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = Accelerator.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        if self.state.distributed_type != DistributedType.DEEPSPEED:
            plugin = DeepSpeedPlugin()
            if persistence is not None:  # ZeRO-3 partitions even small parameters (the tiny model's embedding)
                plugin.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] = persistence
            plugin.set_mixed_precision(self.state.mixed_precision)  # as AcceleratorState does
            plugin.select(_from_accelerator_state=True)
            self.state.deepspeed_plugins = {"default": plugin}
            self.state.distributed_type = DistributedType.DEEPSPEED
            PartialState._shared_state["distributed_type"] = DistributedType.DEEPSPEED
            self.deepspeed_engine_wrapped = None
            self.native_amp = False

    Accelerator.__init__ = init  # type: ignore[method-assign]


def whole_parameters(trainer) -> list:  # type: ignore[no-untyped-def]
    """The trainable parameters, whole (gathered under ZeRO-3: a collective on every rank)."""
    if trainer.zero_stage != 3:
        return [full(p) for p in trainer.params]
    import deepspeed

    with deepspeed.zero.GatheredParameters(trainer.params):
        return [p.detach().clone() for p in trainer.params]


def whole_snapshot(trainer, values) -> list:  # type: ignore[no-untyped-def]
    """A snapshot, whole: under ZeRO-3 each rank holds its partition of each flattened parameter (padded)."""
    if trainer.zero_stage != 3 or not values:  # (EGPO and Nash-MD keep no anchor)
        return [full(v) for v in values]
    import torch

    out = []
    for p, part in zip(trainer.params, values, strict=True):
        parts = [torch.empty_like(part) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, part.contiguous())
        out.append(torch.cat(parts)[: p.ds_numel].view(p.ds_shape).clone())
    return out


def full(t):  # type: ignore[no-untyped-def]
    f = getattr(t, "full_tensor", None)
    return (f() if f is not None else t).detach().clone().contiguous()


def main(
    out: Path, mode: str, resume: bool, lora: bool, algorithm: str, checkpointing: bool = False, extra: tuple = ()
) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    if mode == "fsdp":
        emulate_fsdp_selection()
    elif mode in ("zero2", "zero3"):
        emulate_deepspeed_selection(persistence=0 if "nopersist" in extra else None)
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.models import tiny_model_and_tokenizer
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.oracles import CallableOracle

    torch.set_num_threads(1)

    def longer(x, a, b):  # type: ignore[no-untyped-def]
        d = np.array([len(s) for s in a], dtype=float) - np.array([len(s) for s in b], dtype=float)
        return 0.5 * (1 + np.tanh(d / 4))

    tag = (
        (f"{mode}-resume" if resume else mode)
        + ("" if lora else "-full")
        + ("" if algorithm == "nash-mp" else f"-{algorithm}")
        + ("-gc" if checkpointing else "")
        + "".join(f"-{flag}" for flag in extra)
    )
    folder = out / "tiny-model"  # "folder": the policy from a saved folder (from_pretrained), not an object
    prompts = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke.", "Describe rain.", "Why?"]

    def make(steps: int, resume_from: str | None):  # type: ignore[no-untyped-def]
        model, tok = (None, None) if "folder" in extra else tiny_model_and_tokenizer(seed=0)
        options = {"model_name_or_path": str(folder)} if "folder" in extra else {}
        if "accum" in extra:  # the same 2 prompts per process and step, as 2 micro-batches of 1
            options.update(per_device_train_batch_size=1, gradient_accumulation_steps=2)
        if "clip" in extra:  # clipping engaged at every step (gradient norms ≈ 0.1–1)
            options["max_grad_norm"] = 1e-3
        cfg = NashMPConfig(
            algorithm=algorithm,  # nash-mp: EMA anchor (a snapshot) and the centre's KL, every snapshot path
            max_steps=steps,
            max_new_tokens=6,
            num_generations=2,
            learning_rate=1e-2,
            use_peft=lora,
            gradient_checkpointing=checkpointing,
            lora_r=4,
            lora_target_modules=["q_proj", "v_proj"],
            save_steps=2,
            output_dir=str(out / f"{tag}-run{'-resumed' if resume_from else ''}"),
            resume_from_checkpoint=resume_from,
            progress_bar=False,
            **{"per_device_train_batch_size": 2, **options},
        )
        return NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=CallableOracle(longer), prompts=prompts)

    trainer = make(3, None)
    initial = {f"init{i}": p for i, p in enumerate(whole_parameters(trainer))}
    first_grads: dict[str, torch.Tensor] = {}
    step = trainer.optimizer.step

    def step_and_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not first_grads:  # the first optimiser step's (clipped, process-averaged) gradient
            first_grads.update({f"grad{i}": full(p.grad) for i, p in enumerate(trainer.params)})
        return step(*args, **kwargs)

    trainer.optimizer.step = step_and_record
    rank = trainer.accelerator.process_index
    # the sampler's stopping rule: under sharding a rank whose rows have ended keeps decoding for the others
    split = trainer.all_finished(torch.tensor([True, rank == 0]))
    both = trainer.all_finished(torch.tensor([True, True]))
    if resume:  # stop after the checkpoint at step 2, then resume in a fresh trainer
        trainer.config.max_steps = 2
        trainer.training_step()
        trainer.training_step()
        trainer.save_checkpoint()
        first = list(trainer.history)
        import shutil

        dst = out / f"{tag}-run-resumed"
        if trainer.accelerator.is_main_process:
            shutil.copytree(out / f"{tag}-run", dst)
        trainer.accelerator.wait_for_everyone()
        trainer = make(3, str(dst / "checkpoint-2"))
        trainer.training_step()
        history = first + trainer.history[-1:]
    else:
        trainer.train()
        history = trainer.history
    tensors = {f"param{i}": p for i, p in enumerate(whole_parameters(trainer))} | initial | first_grads
    tensors.update({f"anchor{i}": a for i, a in enumerate(whole_snapshot(trainer, trainer.anchor))})
    save_file(tensors, str(out / f"{tag}-rank{rank}.safetensors"))
    (out / f"{tag}-rank{rank}.json").write_text(
        json.dumps(
            {
                "queries": trainer.queries,
                "processes": trainer.accelerator.num_processes,
                "sharded": trainer.sharded,
                "deepspeed": trainer.deepspeed,
                "param_dtypes": sorted({str(p.dtype) for p in trainer.params}),
                "anchor_dtypes": sorted({str(a.dtype) for a in trainer.anchor}),
                "master_dtypes": sorted({str(m.dtype) for m in trainer.masters()}),
                "lora_merged_for_sampling": bool(trainer._base_weights),
                "stop_when_one_rank_done": split,
                "stop_when_all_done": both,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "losses": [row["losses/loss"] for row in history],
                "grad_norms": [row["losses/grad_norm"] for row in history],
            }
        )
    )
    trainer.accelerator.wait_for_everyone()  # no rank exits while another still has a collective in flight
    torch.distributed.destroy_process_group()
    # Skip the interpreter's teardown: under load, gloo's threads were sometimes destroyed while still
    # joinable ("terminate called without an active exception", SIGABRT) after every output was written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    flags = sys.argv[3:]
    algorithm = next((f.removeprefix("algorithm=") for f in flags if f.startswith("algorithm=")), "nash-mp")
    extra = tuple(f for f in ("accum", "clip", "folder", "nopersist") if f in flags)
    main(Path(sys.argv[1]), sys.argv[2], "resume" in flags, "full" not in flags, algorithm, "gc" in flags, extra)
