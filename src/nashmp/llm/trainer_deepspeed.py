r"""DeepSpeed ZeRO-2/3 under :class:`~nashmp.llm.NashMPTrainer`: the config the trainer fills in, and why.

The trainer runs its own optimiser loop (micro-batches accumulated, clipped, one AdamW step, then the
recipe's snapshot events), and under DeepSpeed it drives the engine the same way:

- **One step per optimiser step.** ``managed_gradient_accumulation`` is turned off, so ``engine.backward``
  adds each micro-batch's gradient into the rank's gradient partition (reduce-scattered in the backward
  under ZeRO-2/3; each micro-batch's loss is already divided by their count: ``scale_wrt_gas=False``) and
  never steps; ``engine.step()`` — called where the other launchers call ``optimizer.step()`` — finishes
  the reduction, clips at ``max_grad_norm`` and steps. accelerate's ``backward`` is not used (it steps the engine inside every
  synced backward, which EGPO's look-ahead could not undo).
- **The trainer's AdamW.** DeepSpeed wraps the trainer's ``torch.optim.AdamW``; the wrapped optimiser's
  parameters become DeepSpeed's fp32 **master partitions** (each rank its slice of the flattened
  parameters), and the learning-rate schedule sets its ``lr`` as under DDP. A DeepSpeed ``optimizer`` or
  ``scheduler`` section would replace both and is refused.
- **Snapshots.** ZeRO-2 keeps whole parameters on every rank (only gradients and optimiser state are
  partitioned), so the EMA anchor and the half-step and centre snapshots are whole and replicated, as under
  DDP. ZeRO-3 partitions the parameters too: each rank keeps its partition of every snapshot and swaps it
  into the parameters' partitions (:mod:`.trainer_weights`). Under bf16 (``mixed_precision: bf16``: DeepSpeed casts the model to bf16 and keeps fp32 masters)
  the snapshots are kept in **fp32** (an EMA with κ = 0.05 would round away in bf16) and cast into the
  bf16 weights when swapped in.
- **Writes to θ** (EGPO's return to θ_t) go to the weights *and* to the master partitions; otherwise the
  next step would start from the masters' older values.
- **Checkpoints** are the trainer's own, safetensors only: each rank writes its master partitions, their
  AdamW state and its weights or their partitions (``training_state.rank<r>.safetensors``). DeepSpeed's
  ``save_checkpoint`` is not used: it writes pickles that its loader unpickles. The final model is gathered
  from the fp32 masters (``safe_get_full_fp32_param``) under ZeRO-3 or bf16.

Refused, each with a one-line reason: ZeRO-0/1 (untested; ZeRO-2 partitions more for the same cost), hpZ
and quantised weights (a secondary or quantised copy of the weights would not follow the snapshot swaps),
``dtype`` other than float32 (DeepSpeed casts the model itself under ``mixed_precision``), fp16 (its loss scaler's state is not checkpointed: use bf16), CPU/NVMe
offload (DeepSpeed's CPU Adam needs compiled ops; untested here), ``zero3_init_flag: true`` (the trainer
loads the model whole, takes π_ref and judge copies from it, and DeepSpeed partitions it in ``prepare``),
and values that contradict the trainer's config (``gradient_accumulation_steps``, ``gradient_clipping``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    import torch

    from .config import NashMPConfig

__all__ = ["configure_deepspeed", "loading_whole", "master_parameters", "refuse_partitioned"]


def _matches(ds: dict[str, Any], key: str, value: float, field: str) -> None:
    """Fill ``ds[key]`` with the trainer's ``value`` when unset or ``auto``; refuse a different number."""
    current = ds.get(key, "auto")
    if current in ("auto", None):
        ds[key] = value
    elif float(current) != float(value):
        raise InvalidParameterError(
            f'the DeepSpeed config sets {key}={current} but the trainer\'s {field} is {value}: set it to "auto" '
            f"(the trainer fills it in) or to {value}."
        )


def configure_deepspeed(ds: dict[str, Any], cfg: NashMPConfig, num_processes: int, zero3_init: bool = False) -> int:
    """Check a DeepSpeed config dict (accelerate's plugin ``deepspeed_config``) and fill in, in place, what
    the trainer decides; returns the ZeRO stage."""
    zero = ds.get("zero_optimization", {}) or {}
    stage = zero.get("stage", 0)
    if stage not in (2, 3):  # ZeRO-0/1 would run, but untested; "auto" is not a stage
        raise InvalidParameterError(
            f"DeepSpeed ZeRO stage {stage!r} is not supported: use zero_stage 2 (configs/accelerate/zero2.yaml) "
            "or 3 (zero3.yaml)."
        )
    for key, what in (("zero_hpz_partition_size", "hpZ's secondary weight copy"),
                      ("zero_quantized_weights", "qwZ's quantised weights"),
                      ("zero_quantized_nontrainable_weights", "quantised frozen weights (π_ref's)")):  # fmt: skip
        if zero.get(key) not in (None, False, 0, 1):
            raise InvalidParameterError(
                f"DeepSpeed {key} is not supported ({what} would not follow the trainer's snapshot swaps): remove it."
            )
    if stage == 3 and zero3_init:
        raise InvalidParameterError(
            "set zero3_init_flag: false in the accelerate config (configs/accelerate/zero3.yaml): the trainer "
            "loads the model whole (π_ref and judge copies are taken from it) and ZeRO-3 partitions it in prepare."
        )
    for section in ("optimizer", "scheduler"):
        if section in ds:
            raise InvalidParameterError(
                f"remove the {section!r} section from the DeepSpeed config: the trainer's AdamW "
                "(learning_rate, weight_decay) and learning-rate schedule (lr_scheduler_type) are used."
            )
    if (ds.get("fp16") or {}).get("enabled") in (True, "true"):
        raise InvalidParameterError(
            "DeepSpeed fp16 is not supported (its loss scale is not checkpointed): use mixed_precision: bf16."
        )
    for offload in ("offload_optimizer", "offload_param"):
        device = (zero.get(offload) or {}).get("device", "none")
        if device not in (None, "none"):
            raise InvalidParameterError(
                f"DeepSpeed {offload} (device {device}) is not supported: set it to none (its CPU Adam needs "
                "DeepSpeed's compiled ops); for memory, use FSDP2 (configs/accelerate/fsdp.yaml)."
            )
    _matches(ds, "gradient_accumulation_steps", cfg.gradient_accumulation_steps, "gradient_accumulation_steps")
    _matches(ds, "gradient_clipping", cfg.max_grad_norm, "max_grad_norm")
    micro = cfg.per_device_train_batch_size * cfg.num_generations  # completions per micro-batch (bookkeeping)
    _matches(ds, "train_micro_batch_size_per_gpu", micro, "per_device_train_batch_size × num_generations")
    _matches(ds, "train_batch_size", micro * cfg.gradient_accumulation_steps * num_processes, "batch per step")
    # the trainer calls engine.backward per micro-batch and engine.step() once per optimiser step
    ds["managed_gradient_accumulation"] = False
    ds["zero_force_ds_cpu_optimizer"] = False  # the trainer's torch AdamW (no offload, so no CPU Adam)
    ds["steps_per_print"] = float("inf")
    return stage


def master_parameters(
    optimizer: torch.optim.Optimizer, engine_optimizer: Any = None, zero3: bool = False
) -> list[Tensor]:
    """The tensors the (inner) optimiser updates, keys of its state: DeepSpeed's fp32 master partitions under
    ZeRO, the model's trainable parameters otherwise. ZeRO-3 puts its flat fp32 partitions into the inner
    optimiser's groups only while it steps, so they are read from its optimiser's
    ``fp32_partitioned_groups_flat``; a DeepSpeed without it is refused (EGPO and resume would miss them)."""
    if zero3:
        flat = getattr(engine_optimizer, "fp32_partitioned_groups_flat", None)
        if not flat:
            raise InvalidParameterError(
                "this DeepSpeed's ZeRO-3 optimiser has no fp32_partitioned_groups_flat (tested with 0.19.8): "
                "install deepspeed 0.19.x or launch with FSDP2 (configs/accelerate/fsdp.yaml)."
            )
        return list(flat)
    return [p for group in optimizer.param_groups for p in group["params"]]


@contextlib.contextmanager
def loading_whole(plugin: Any) -> Iterator[None]:
    """Load models whole under ZeRO-3. accelerate registers the DeepSpeed config with transformers whatever
    ``zero3_init_flag`` says, and transformers then builds every ``from_pretrained`` model inside
    ``deepspeed.zero.Init`` (partitioned, with empty parameters). The trainer copies the loaded policy for
    π_ref and the LM judge and loads judge models of its own, so it unregisters the config while loading and
    registers it again afterwards; DeepSpeed partitions the policy in ``prepare``."""
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover - transformers without its DeepSpeed integration
        yield
        return
    if plugin is None or not is_deepspeed_zero3_enabled():
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def refuse_partitioned(model: Any) -> None:
    """A model already partitioned by ``deepspeed.zero.Init`` has empty parameters: π_ref's copy, the
    judge's and the snapshots would be empty too."""
    if any(hasattr(p, "ds_id") for p in model.parameters()):
        raise InvalidParameterError(
            "the model is already partitioned by DeepSpeed ZeRO-3 (built under deepspeed.zero.Init): pass a "
            "whole model; the trainer partitions it in prepare."
        )
