r"""The policy's weights inside :class:`~nashmp.llm.NashMPTrainer`: LoRA, π_ref, parameter snapshots, sharding.

Anchors and half-step policies are **parameter snapshots** of the trainable parameters, put into the one
model when needed (:func:`~nashmp.llm.sampling.swap_parameters`): with LoRA a snapshot costs the adapter's
size (≈ 2 MB for r=16 on SmolLM2-135M), without LoRA one copy of the weights. π_ref is the base model with
adapters disabled (LoRA) or one frozen copy (full fine-tuning).

**Sharded parameters (FSDP2).** Every snapshot operation is elementwise — a clone, the EMA
θ̄ ← (1−κ)θ̄ + κθ, a copy in and back out — so under FSDP2 (``fully_shard``: the parameters are DTensors
holding this rank's shard) each rank keeps and updates **its own shard** of every snapshot and nothing is
ever gathered for them. What changes under sharding, and why:

- a snapshot is copied in place into the parameters (FSDP2 all-gathers from the storage it registered,
  so the O(1) ``.data`` swap used otherwise would go unseen), with every module resharded before and after
  (a module that stayed gathered, ``reshard_after_forward=false``, would not see the copy);
- LoRA is not merged into the (sharded) base weights for sampling: generation runs through the adapters;
- every forward pass is a collective, so the sampler decodes until the rows of *all* ranks have ended;
- checkpoints are per rank and safetensors only: the rank's shards of the trainable parameters and their
  AdamW state (``training_state.rank<r>.safetensors``; the frozen base is not saved) and of every snapshot
  (``<name>.rank<r>.safetensors``); accelerate's FSDP checkpointing is not used (it gathers the whole model
  on rank 0, or writes torch.distributed.checkpoint metadata, a pickle). The final model is gathered once
  (``accelerator.get_state_dict``).

**DeepSpeed** (ZeRO-2 or 3). ZeRO-2 keeps whole parameters on every rank: snapshots are as under DDP. Under ZeRO-3 each
parameter is a partition (``ds_tensor``, this rank's slice of the flattened tensor) and each rank keeps its
partition of every snapshot, as under FSDP2; a snapshot is swapped into the partitions (storage swap, or a
cast copy) with every gathered parameter released before and after (``empty_partition_cache``: DeepSpeed
keeps small "persistent" parameters, and recently used ones, gathered). The engine, the fp32 master
partitions and the checkpoints are described in :mod:`.trainer_deepspeed`. FSDP1 (``fsdp_version: 1``) is
refused (see :func:`check_parameter_sharding`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import CheckpointError, InvalidParameterError
from .sampling import ModelView, is_sharded, swap_parameters
from .trainer_deepspeed import master_parameters

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import NashMPConfig

__all__ = ["PolicyWeights", "check_parameter_sharding", "is_sharded", "snapshot"]


def check_parameter_sharding(distributed_type: Any, fsdp_version: int = 2) -> None:
    """Refuse FSDP1: its flat parameters are not elementwise views of the model's parameters, so the trainer
    could not swap snapshots into them. DDP, FSDP2, DeepSpeed (whose ZeRO stage, 2 or 3, is checked by
    :func:`~nashmp.llm.trainer_deepspeed.configure_deepspeed`) and a single process pass. Under FSDP2 and
    DeepSpeed the trainer writes its own per-rank checkpoints, so accelerate's ``fsdp_state_dict_type`` and
    DeepSpeed's checkpointing are not used."""
    from accelerate.utils import DistributedType

    if distributed_type == DistributedType.FSDP and fsdp_version != 2:
        raise InvalidParameterError(
            f"FSDP version {fsdp_version} is not supported: set fsdp_version: 2 in the accelerate config "
            "(configs/accelerate/fsdp.yaml)."
        )


def snapshot(params: Sequence[Tensor], dtype: torch.dtype | None = None) -> list[Tensor]:
    """A detached copy of ``params`` (of this rank's shards, when sharded), in ``dtype`` if given."""
    return [p.detach().to(dtype or p.dtype, copy=True) for p in params]


def _own_masters(masters: Sequence[Tensor], weights: Sequence[Tensor]) -> list[bool]:
    """Which optimiser tensors are stored apart from the weights, so a checkpoint must hold them. Not the
    weights themselves (DDP, FSDP2), nor DeepSpeed masters that alias the weights' flat buffer (ZeRO-3 in
    fp32 on an accelerator): those are restored with the weights, and safetensors refuses overlapping tensors."""
    storages = {w.untyped_storage().data_ptr() for w in weights}
    return [local(m).untyped_storage().data_ptr() not in storages for m in masters]


def local(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor, its partition of a ZeRO-3 parameter (the tensor itself otherwise)."""
    partition = getattr(t, "ds_tensor", None)
    if partition is not None:
        return partition
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


class PolicyWeights:
    """Mixin of the trainer's weight handling (the trainer sets the attributes below)."""

    accelerator: Accelerator
    config: NashMPConfig
    model: Any
    params: list[Tensor]
    snapshots: dict[str, list[Tensor]]
    _peft: bool
    _ref_model: Any
    _base_weights: list[tuple[Tensor, Tensor]]
    sharded: bool = False
    deepspeed: bool = False
    zero_stage: int | None = None
    snapshot_dtype: torch.dtype | None = None

    def masters(self) -> list[Tensor]:
        """The tensors the optimiser updates (keys of its state): the trainable parameters, or DeepSpeed's
        fp32 master partitions."""
        engine_optimizer = getattr(self.model, "optimizer", None) if self.deepspeed else None
        return master_parameters(self.optimizer_impl, engine_optimizer, self.zero_stage == 3)  # type: ignore[attr-defined]

    def optimizer_state_copy(self) -> list[dict[str, Any]]:
        """A copy of the AdamW state of every :meth:`masters` tensor (EGPO's look-ahead is undone with it)."""
        state = self.optimizer_impl.state  # type: ignore[attr-defined]
        return [{k: v.clone() if isinstance(v, Tensor) else v for k, v in state.get(m, {}).items()}
                for m in self.masters()]  # fmt: skip

    def restore_optimizer_state(self, saved: list[dict[str, Any]]) -> None:
        state = self.optimizer_impl.state  # type: ignore[attr-defined]
        for m, values in zip(self.masters(), saved, strict=True):
            if values:
                state[m] = values
            else:
                state.pop(m, None)

    @property
    def theta(self) -> list[Tensor]:
        """The tensors holding θ on this rank, which snapshots copy and are swapped into: the trainable
        parameters (under FSDP2 DTensors, whose operations act shard by shard), or under ZeRO-3 each one's
        partition (the parameter itself is empty between forward passes)."""
        return [local(p) for p in self.params] if self.zero_stage == 3 else self.params

    @property
    def own_training_state(self) -> bool:
        """Whether checkpoints hold the trainer's own per-rank training state (FSDP2, DeepSpeed) rather than
        accelerate's ``save_state`` (which would gather the model, or write pickles)."""
        return self.sharded or self.deepspeed

    @property
    def launch(self) -> str:
        """The launch mode a checkpoint was written under (resume needs the same one)."""
        if self.deepspeed:
            return f"deepspeed-zero{self.zero_stage}"
        return "fsdp2" if self.sharded else "replicated"

    @property
    def raw_model(self) -> Any:
        """The model without the DDP wrapper (used for every pass without gradient)."""
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------ LoRA
    def _wrap_peft(self, model: Any) -> Any:
        cfg = self.config
        if not cfg.use_peft or hasattr(model, "peft_config"):
            return model
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=(
                "all-linear" if list(cfg.lora_target_modules) == ["all-linear"] else list(cfg.lora_target_modules)
            ),
            task_type="CAUSAL_LM",
        )
        import warnings

        with warnings.catch_warnings():  # peft 0.21 reads a deprecated transformers alias (harmless, theirs)
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            return get_peft_model(model, lora)

    def _lora_base_weights(self) -> list[tuple[Tensor, Tensor]]:
        """(weight, exact copy) of every LoRA-wrapped base layer, to undo a merge without rounding drift; empty
        (sample through the unmerged adapters) without LoRA, when turned off, or with sharded weights."""
        if not (self._peft and self.config.merge_lora_for_sampling) or self.sharded:
            return []
        out = []
        for module in self.raw_model.modules():
            base = getattr(module, "base_layer", None)
            if base is not None and hasattr(module, "lora_A") and isinstance(getattr(base, "weight", None), Tensor):
                out.append((base.weight, base.weight.detach().clone()))
        # a merged delta must not leak into another parameter that shares the storage (tied embeddings)
        from collections import Counter

        uses = Counter(p.data_ptr() for _, p in self.raw_model.named_parameters(remove_duplicate=False))
        if any(uses[w.data_ptr()] > 1 for w, _ in out):
            return []  # sample through the unmerged adapters instead
        return out

    def _trainable_state(self) -> dict[str, Tensor]:
        return {n: p.detach() for n, p in self.raw_model.named_parameters() if p.requires_grad}

    def _save_trainable_only(self, models: list[Any], weights: list[Any], output_dir: str) -> None:
        if weights:
            weights[0] = self._trainable_state()

    def _load_trainable_only(self, models: list[Any], input_dir: str) -> None:
        from safetensors.torch import load_file

        if not models:
            return
        models.pop(0)  # accelerate would expect the full state dict
        state = load_file(str(Path(input_dir) / "model.safetensors"), device=str(self.accelerator.device))
        expected = self._trainable_state()
        if set(state) != set(expected):
            raise InvalidParameterError(f"checkpoint {input_dir} holds other adapters than this model's.")
        with torch.no_grad():
            for name, value in state.items():
                expected[name].copy_(value)

    # ------------------------------------------------------------------ views
    @property
    def anchor(self) -> list[Tensor]:
        """The prox centre θ̄ (EMA or frozen π_k), empty for recipes without one."""
        return self.snapshots.get("anchor", [])

    @property
    def half(self) -> list[Tensor]:
        return self.snapshots.get("half", [])

    @property
    def policy_view(self) -> ModelView:
        return ModelView(self.raw_model)

    @property
    def ref_view(self) -> ModelView:
        if self._peft:
            return ModelView(self.raw_model, self.raw_model.disable_adapter)
        return ModelView(self._ref_model)

    def snapshot_view(self, values: list[Tensor]) -> ModelView:
        return ModelView(self.raw_model, lambda: self._swapped(values))

    @contextlib.contextmanager
    def _swapped(self, values: list[Tensor]) -> Iterator[None]:
        """The model holding ``values`` instead of θ. Under FSDP2 every module is resharded first and before θ
        comes back: with ``reshard_after_forward=false`` a module stays gathered after a forward pass without
        backward, and would go on computing with that gathered copy instead of the swapped-in shards."""
        self._reshard()
        with swap_parameters(self.theta, values):
            try:
                yield
            finally:
                self._reshard()

    def _reshard(self) -> None:
        """Release every gathered copy of the parameters (FSDP2: reshard; ZeRO-3: re-partition)."""
        if not self.sharded:
            return
        if self.zero_stage == 3:  # the optimiser's empty_partition_cache (the engine's adds gc.collect)
            self.model.optimizer.empty_partition_cache()
            return
        from torch.distributed.fsdp import FSDPModule

        for module in self.raw_model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    @contextlib.contextmanager
    def _weights_of(self, which: str) -> Iterator[ModelView]:
        """A plain view of the model holding ``which`` weights (policy or a snapshot), LoRA merged.

        The swap and the merge happen once for the whole generation call, not per decoding step; the merge is
        undone with peft's ``unmerge_adapter`` and the base weights then restored bit for bit.
        """
        swap = contextlib.nullcontext() if which == "self" else self._swapped(self.snapshots[which])
        with torch.no_grad(), swap:
            if not self._base_weights:
                yield ModelView(self.raw_model)
                return
            self.raw_model.merge_adapter()
            try:
                yield ModelView(self.raw_model)
            finally:
                self.raw_model.unmerge_adapter()
                for weight, original in self._base_weights:
                    weight.copy_(original)

    def all_finished(self, finished: Tensor) -> bool:
        """The sampler's stopping rule: this rank's rows have all ended, and under sharding every rank's have
        (each decoding step is a collective there, so all ranks must take the same number)."""
        done = bool(finished.all())
        if not self.sharded:
            return done
        pending = torch.tensor([0.0 if done else 1.0], device=self.accelerator.device)
        return float(self.accelerator.reduce(pending, reduction="sum")) == 0.0

    # ------------------------------------------------------------------ snapshots and recipe events
    @torch.no_grad()
    def _run_events(self, events: Sequence[str]) -> None:
        """Execute a recipe's events (see :class:`~nashmp.online.Recipe`); shard by shard under FSDP2."""
        for event in events:
            if event == "ema":  # θ̄ ← (1−κ)θ̄ + κθ (in the anchor's dtype: fp32 under DeepSpeed bf16)
                anchor = self.snapshots["anchor"]
                theta = [p.detach().to(a.dtype) for p, a in zip(self.theta, anchor, strict=True)]
                torch._foreach_lerp_(anchor, theta, self.config.ema)
            elif event.endswith("<-theta"):
                self.snapshots[event.split("<-")[0]] = snapshot(self.theta, self.snapshot_dtype)
            elif event == "reset-optimizer":
                self.optimizer_impl.state.clear()  # type: ignore[attr-defined]
            else:  # pragma: no cover - a recipe names an event this trainer does not know
                raise InvalidParameterError(f"unknown recipe event {event!r}")

    def snapshot_files(self, folder: Path, name: str) -> Path:
        """Where snapshot ``name`` lives in a checkpoint: one file, or one per rank under sharding."""
        suffix = f".rank{self.accelerator.process_index}" if self.sharded else ""
        return folder / f"{name}{suffix}.safetensors"

    def save_snapshots(self, folder: Path) -> None:
        """Write every snapshot (each rank its shards under sharding, else the main process all of it)."""
        from safetensors.torch import save_file

        if not (self.sharded or self.accelerator.is_main_process):
            return
        for name, values in self.snapshots.items():
            tensors = {str(i): local(t).contiguous() for i, t in enumerate(values)}
            save_file(tensors, str(self.snapshot_files(folder, name)))

    def load_snapshots(self, folder: Path) -> None:
        """Read back :meth:`save_snapshots`' files into the (identically placed) snapshots."""
        from safetensors.torch import load_file

        for name, values in self.snapshots.items():  # every recipe snapshot exists from the first step on
            path = self.snapshot_files(folder, name)
            if not path.is_file():
                raise CheckpointError(f"{folder} has no {path.name}: it was not written by this recipe and launch.")
            data = load_file(str(path))  # on CPU; copy_ moves each tensor to its shard's device
            shapes = [tuple(local(t).shape) for t in values]
            saved = [tuple(data[str(i)].shape) if str(i) in data else None for i in range(len(values))]
            if len(data) != len(values) or saved != shapes:  # copy_ would broadcast a wrong shape silently
                raise CheckpointError(f"{path} does not hold this model's {name} snapshot (other shapes or count).")
            with torch.no_grad():
                for i, t in enumerate(values):
                    local(t).copy_(data[str(i)])

    def save_sharded_training_state(self, folder: Path) -> None:
        """Under FSDP2 and DeepSpeed, instead of accelerate's checkpoint (which gathers the whole model, frozen
        base included, on rank 0, or writes torch.distributed.checkpoint or DeepSpeed files holding pickles):
        each rank writes its shards of the trainable parameters, of the optimiser's own parameters when
        they are other tensors (DeepSpeed's fp32 master partitions) and of their AdamW state to
        ``training_state.rank<r>.safetensors``, and the optimiser's hyper-parameters to JSON."""
        import json

        from safetensors.torch import save_file

        optimizer: torch.optim.Optimizer = self.optimizer_impl  # type: ignore[attr-defined]
        masters = self.masters()
        tensors: dict[str, Tensor] = {f"param.{i}": local(p).detach().contiguous() for i, p in enumerate(self.params)}
        own = _own_masters(masters, [local(p) for p in self.params])
        for j, m in enumerate(masters):
            if own[j]:
                tensors[f"master.{j}"] = m.detach().contiguous()
            for key, value in optimizer.state.get(m, {}).items():
                if isinstance(value, Tensor):
                    tensors[f"optim.{j}.{key}"] = local(value).detach().contiguous()
        rank = self.accelerator.process_index
        save_file(tensors, str(folder / f"training_state.rank{rank}.safetensors"))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        (folder / f"optimizer_groups.rank{rank}.json").write_text(json.dumps(groups))

    def load_sharded_training_state(self, folder: Path) -> None:
        """Read back :meth:`save_sharded_training_state` into this rank's shards (same process count and
        placement: checked at resume)."""
        import json

        from safetensors.torch import load_file
        from torch.distributed.tensor import DTensor

        rank = self.accelerator.process_index
        path = folder / f"training_state.rank{rank}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{folder} has no {path.name}: it was not written by a run of this launch and size.")
        data = load_file(str(path))
        optimizer: torch.optim.Optimizer = self.optimizer_impl  # type: ignore[attr-defined]
        masters = self.masters()
        own = _own_masters(masters, [local(p) for p in self.params])

        def restore(target: Tensor, key: str) -> None:
            saved = data.get(key)
            if saved is None or tuple(saved.shape) != tuple(local(target).shape):
                raise CheckpointError(f"{path} does not hold this run's {key} (other model, launch or size).")
            local(target).copy_(saved)

        with torch.no_grad():
            for i, p in enumerate(self.params):
                restore(p, f"param.{i}")
            for j, m in enumerate(masters):
                if own[j]:
                    restore(m, f"master.{j}")
                state: dict[str, Any] = {}
                for key in [k for k in data if k.startswith(f"optim.{j}.")]:
                    name, value = key.split(".", 2)[2], data[key]
                    if value.dim() == 0:  # AdamW's step counter stays a CPU scalar, as torch keeps it
                        state[name] = value
                    elif isinstance(m, DTensor):
                        state[name] = DTensor.from_local(
                            value.to(local(m).device), m.device_mesh, m.placements, shape=m.shape, stride=m.stride()
                        )
                    else:
                        state[name] = value.to(m.device)
                if state:
                    optimizer.state[m] = state
        groups = json.loads((folder / f"optimizer_groups.rank{rank}.json").read_text())
        if len(groups) != len(optimizer.param_groups):
            raise CheckpointError(f"{folder}: {len(groups)} optimiser parameter groups saved, this run has "
                                  f"{len(optimizer.param_groups)}.")  # fmt: skip
        for group, saved_group in zip(optimizer.param_groups, groups, strict=True):
            group.update(saved_group)
        self._reshard()  # gathered copies (ZeRO-3's persistent parameters) still hold the values before loading

    def model_state_for_saving(self) -> dict[str, Tensor] | None:
        """The full model state to save (gathered once under sharding: a collective on every rank; under
        DeepSpeed with bf16 weights, the trainable ones from its fp32 masters, also a collective), else None
        (``save_pretrained`` reads the model itself)."""
        if self.sharded and not self.deepspeed:  # FSDP2
            return self.accelerator.get_state_dict(self.model)
        if not self.deepspeed or (self.zero_stage != 3 and all(p.dtype == torch.float32 for p in self.params)):
            return None
        import deepspeed
        from deepspeed.utils import safe_get_full_fp32_param

        frozen = [p for p in self.raw_model.parameters() if not p.requires_grad]
        state: dict[str, Tensor] = {}
        if not self._peft:  # full fine-tuning: every weight is saved (gathered once, under ZeRO-3)
            with deepspeed.zero.GatheredParameters(frozen):
                state = {k: v.detach().clone() for k, v in self.raw_model.state_dict().items()}
        whole: dict[int, Tensor] = {}
        # the trainable ones from the fp32 masters, every alias (tied embeddings: lm_head.weight) the same
        # tensor, so that save_pretrained sees the tie (a clone of an alias under ZeRO-3 would be empty)
        for name, p in self.raw_model.named_parameters(remove_duplicate=False):
            if p.requires_grad:
                if id(p) not in whole:
                    whole[id(p)] = safe_get_full_fp32_param(p)  # a collective, in the same order on every rank
                state[name] = whole[id(p)]
        return state
