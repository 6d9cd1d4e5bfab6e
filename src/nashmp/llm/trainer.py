r"""``NashMPTrainer``: online NLHF fine-tuning of causal LMs with the recipes of :mod:`nashmp.online`.

One optimiser step, for every algorithm (B prompts per process, k = ``num_generations``):

1. sample k completions per prompt from π_θ at temperature T — **one** generation call of B·k rows, with
   LoRA folded into the weights — and, when the recipe's opponent is not π_θ itself (Nash-MD's mixture,
   an anchor or half-step snapshot), k opponent completions per prompt;
2. query the oracle: all k(k−1)/2 pairs of a prompt under self-play, else each completion against its
   opponent (:func:`~nashmp.online.estimators.selfplay_advantages`, ``paired_advantages``);
3. score the completions **in eval mode** (dropout off, the policy that sampled them) with π_θ (with
   gradient), π_ref and the prox centre (without);
4. minimise the recipe's loss: :func:`~nashmp.online.estimators.token_pg_loss` (REINFORCE with
   per-token reward-to-go KLs to π_ref, weight β, and to the centre, weight β/η) or the grouped online-IPO
   loss; EGPO takes its extragradient step;
5. run the recipe's events (EMA θ̄ ← (1−κ)θ̄ + κθ, snapshot refreshes, optimiser resets).

The trainer never branches on the algorithm's name: it reads :class:`~nashmp.online.Recipe`.

Anchors and half-step policies are parameter snapshots, π_ref the base model with adapters disabled (or a
frozen copy); under FSDP2 each rank keeps its own shard of every snapshot (:mod:`.trainer_weights`). Each
process samples with its own seed (``seed + process_index``), so processes never draw identical completions
for the same prompt.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidParameterError
from ..online.estimators import (
    grouped_ipo_loss,
    paired_advantages,
    per_token_kl,
    selfplay_advantages,
    token_pg_loss,
    token_pg_loss_analytic,
)
from ..oracles import PreferenceOracle
from .config import NashMPConfig
from .prompts import Prompt, prompt_text
from .trainer_io import METRICS, RunFolder, latest_checkpoint, resolve_resume
from .trainer_sampling import SamplingAndScoring
from .trainer_weights import check_parameter_sharding, is_sharded, snapshot

__all__ = ["NashMPTrainer", "METRICS", "check_parameter_sharding", "latest_checkpoint"]  # re-exported


def _installed_trackers() -> list[str]:
    from accelerate.tracking import get_available_trackers

    return [str(getattr(t, "value", t)) for t in get_available_trackers()]


def _move_judge(judge: Any, device: torch.device) -> None:
    """Put a judge's own model (``LMJudge.model``, a reward model's classifier) on ``device``."""
    for holder in (judge, getattr(judge, "reward_fn", None)):
        if isinstance(getattr(holder, "model", None), torch.nn.Module):
            holder.model.to(device)  # type: ignore[union-attr]


class NashMPTrainer(SamplingAndScoring, RunFolder):
    """Online NLHF trainer on transformers + accelerate (runs unchanged under ``accelerate launch``).

    Parameters
    ----------
    config:
        the run's :class:`NashMPConfig`.
    model, tokenizer:
        a causal LM and its tokenizer; loaded from ``config.model_name_or_path`` when None.
    oracle:
        the training :class:`~nashmp.oracles.PreferenceOracle` over (prompt, completion, completion);
        built from ``config.oracle`` when None.
    prompts:
        training prompts; loaded from ``config.dataset`` when None.
    eval_prompts:
        held-out prompts of the periodic evaluation (``eval_steps``); by default the first
        ``eval_num_prompts`` of ``eval_dataset``, else of the ``test`` split of ``dataset``.
    eval_judge:
        the second judge of that evaluation; built from ``config.eval_judge`` when None.
    """

    def __init__(
        self,
        config: NashMPConfig,
        *,
        model: Any = None,
        tokenizer: Any = None,
        oracle: PreferenceOracle | None = None,
        prompts: Sequence[Prompt] | None = None,
        eval_prompts: Sequence[Prompt] | None = None,
        eval_judge: PreferenceOracle | None = None,
    ) -> None:
        if not isinstance(config, NashMPConfig):
            raise InvalidParameterError(f"config must be a NashMPConfig, got {type(config).__name__}.")
        self.config = cfg = config
        self.recipe = cfg.recipe
        # ---- everything that can fail cheaply fails before a model is loaded
        from .prompts import load_prompts

        if prompts is None:
            prompts = load_prompts(cfg.dataset, column=cfg.prompt_column, split=cfg.dataset_split)
        from .prompts import as_prompt

        self.prompts = [as_prompt(p, "training prompts") for p in prompts]
        if not self.prompts:
            raise InvalidParameterError("the prompt set is empty; give a dataset with at least one prompt.")
        if cfg.eval_steps and eval_prompts is None:
            eval_prompts = self._held_out_prompts(cfg)
        self.eval_prompts = [as_prompt(p, "evaluation prompts") for p in (eval_prompts or [])][: cfg.eval_num_prompts]
        if (model is None) != (tokenizer is None):
            raise InvalidParameterError("pass both model and tokenizer, or neither (then config.model_name_or_path).")
        if model is None:
            from .models import resolve_model_path

            resolve_model_path(cfg.model_name_or_path)
        oracle_spec = cfg.oracle
        from .judges import make_oracle, parse_oracle_spec

        parsed = parse_oracle_spec(oracle_spec)
        judge_is_base = parsed.kind == "lm-judge" and not parsed.model  # a frozen copy of the base model judges
        named_judge = oracle is None and bool(parsed.model)  # lm-judge:<model> / reward-model:<model>
        if named_judge:
            from .models import resolve_model_path

            resolve_model_path(parsed.model)  # a missing judge model fails before anything loads

        if oracle is None and not judge_is_base and not named_judge:  # cheap oracles are built (and validated) first
            oracle = make_oracle(oracle_spec)
        if oracle is not None and not isinstance(oracle, PreferenceOracle):
            raise InvalidParameterError(f"oracle must be a PreferenceOracle, got {type(oracle).__name__}.")
        if eval_judge is None and cfg.eval_steps and cfg.eval_judge != "none":
            eval_judge = make_oracle(cfg.eval_judge)
        self.eval_judge = eval_judge
        resume = resolve_resume(cfg)
        missing = [t for t in cfg.trackers if t != "all" and t not in _installed_trackers()]
        if missing:  # accelerate would only warn and drop them: the run would log nowhere the user asked
            raise InvalidParameterError(f"report_to {missing}: not installed (pip install {' '.join(missing)}).")

        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # Without a GPU/accelerator, run on CPU explicitly: that is what makes accelerate pick its MULTI_CPU
        # (gloo) backend when launched with several processes (`accelerate launch --multi_gpu` or torchrun).
        accel = getattr(torch, "accelerator", None)
        has_accelerator = bool(accel.is_available()) if accel is not None else torch.cuda.is_available()
        try:
            self.accelerator = Accelerator(
                cpu=cfg.use_cpu or not has_accelerator,
                log_with=cfg.trackers or None,
                project_dir=cfg.output_dir,
                # "no" requests nothing, so `accelerate launch --mixed_precision bf16` (or its config file) applies
                mixed_precision=None if cfg.mixed_precision == "no" else cfg.mixed_precision,
            )
        except ValueError as exc:  # accelerate's process-wide state already holds another mixed precision
            raise InvalidParameterError(f"accelerate refused the run: {str(exc).splitlines()[0]}") from None
        if self.accelerator.mixed_precision != "no" and cfg.dtype != "float32":  # e.g. set by accelerate launch
            raise InvalidParameterError(
                f"mixed precision ({self.accelerator.mixed_precision}) keeps fp32 master weights: set dtype=float32 "
                f"(got {cfg.dtype})."
            )
        state = self.accelerator.state
        check_parameter_sharding(
            self.accelerator.distributed_type, getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", 2)
        )
        from accelerate.utils import DistributedType

        self.deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        from .trainer_deepspeed import configure_deepspeed, loading_whole, refuse_partitioned

        plugin = state.deepspeed_plugin if self.deepspeed else None
        if plugin is not None:  # ZeRO-2/3, driven as the trainer's own loop (see trainer_deepspeed)
            if cfg.dtype != "float32":  # DeepSpeed casts the model itself (mixed_precision) over fp32 masters
                raise InvalidParameterError(f"under DeepSpeed set dtype=float32 (got {cfg.dtype}); use "
                                            "mixed_precision bf16 for bf16 compute.")  # fmt: skip
            self.zero_stage = configure_deepspeed(
                plugin.deepspeed_config, cfg, self.accelerator.num_processes, zero3_init=bool(plugin.zero3_init_flag)
            )
        set_seed(cfg.seed)  # the same on every process: identical LoRA initialisation and snapshots
        if model is None:
            from .models import load_model_and_tokenizer

            with loading_whole(plugin):  # not partitioned at load under ZeRO-3 (prepare partitions it)
                model, tokenizer = load_model_and_tokenizer(
                    cfg.model_name_or_path, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                    trust_remote_code=cfg.trust_remote_code,
                )  # fmt: skip
        if plugin is not None:
            refuse_partitioned(model)
        from .models import prepare_tokenizer

        self.tokenizer = prepare_tokenizer(tokenizer)
        judge_model = None
        if oracle is None and judge_is_base:  # a frozen copy of the base model judges
            judge_model = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            # transformers ≥ 5.x names it activation checkpointing (the old name warns); non-reentrant, so
            # frozen embeddings under LoRA need no input-gradient hook
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            elif hasattr(model, "gradient_checkpointing_enable"):
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                raise InvalidParameterError("gradient_checkpointing needs a transformers model.")
        model = self._wrap_peft(model)
        self._peft = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self._ref_model = None
        if not self._peft:  # full fine-tuning: one frozen copy is π_ref
            self._ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise InvalidParameterError("the model has no trainable parameters.")
        self.optimizer_impl = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer_impl)
        # FSDP2 replaces the parameters by DTensors (and the optimiser's references with them)
        self.params = [p for p in self.raw_model.parameters() if p.requires_grad]
        self.sharded = is_sharded(self.params) or self.zero_stage == 3  # FSDP2 DTensors, ZeRO-3 partitions
        # under DeepSpeed the weights may be bf16 while its masters are fp32: the snapshots stay fp32
        self.snapshot_dtype = torch.float32 if self.deepspeed else None
        device = self.accelerator.device
        # snapshots only for the recipes that use them (Nash-MD, online IPO and EGPO keep none); taken after
        # prepare moved (or sharded) the parameters, so they live on the same device, in the same placement
        self.snapshots: dict[str, list[Tensor]] = {
            name: snapshot(self.theta, self.snapshot_dtype) for name in self.recipe.snapshots(cfg)
        }
        for frozen in (self._ref_model, judge_model):
            if frozen is not None:
                frozen.to(device)
        _move_judge(self.eval_judge, device)
        from transformers import get_scheduler

        # Not passed through accelerator.prepare: its wrapper steps a scheduler once per process per call
        # (it assumes a per-process batch schedule); ours counts optimiser steps. Checkpointed as JSON in
        # trainer_state.json, not with accelerator.register_for_checkpointing: accelerate unpickles registered
        # objects with weights_only=False, so a crafted checkpoint could run code on resume.
        self.lr_scheduler = get_scheduler(
            cfg.lr_scheduler_type, self.optimizer_impl, num_warmup_steps=cfg.num_warmup_steps,
            num_training_steps=cfg.max_steps,
        )  # fmt: skip
        self._base_weights = self._lora_base_weights()
        if self._peft and not self.own_training_state:  # checkpoints hold the adapters only, not the frozen base
            # (under FSDP2 and DeepSpeed the trainer writes its own per-rank files instead of accelerate's save_state)
            self.accelerator.register_save_state_pre_hook(self._save_trainable_only)
            self.accelerator.register_load_state_pre_hook(self._load_trainable_only)
        if oracle is None and named_judge:  # a judge model of its own, on this process's device
            with loading_whole(plugin):
                oracle = make_oracle(oracle_spec, trust_remote_code=cfg.trust_remote_code)
            _move_judge(oracle, device)
        elif oracle is None:  # the LM judge: a frozen copy of the base model
            oracle = make_oracle(oracle_spec, model=judge_model, tokenizer=self.tokenizer)
        self.oracle = oracle
        # per-process sampling streams (checkpointed per process by accelerate's save_state)
        torch.manual_seed(cfg.seed + 1_000_003 * self.accelerator.process_index)
        self.step = 0
        self.queries = 0
        self.completions = 0
        self.history: list[dict[str, float]] = []
        self._samples: list[tuple[str, str, str, float]] = []  # this step's (prompt, answer, other, P) per prompt
        self.output_dir = Path(cfg.output_dir)
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if cfg.trackers:
            self.accelerator.init_trackers("nashmp", config={k: str(v) for k, v in cfg.to_dict().items()})
        if resume is not None:
            self.load_checkpoint(resume)

    # ------------------------------------------------------------------ the recipe's loss
    def _loss(self, prompts: list[Prompt]) -> tuple[Tensor, dict[str, float]]:
        """The recipe's loss on this step's prompts: k completions each, every one in the gradient."""
        cfg, recipe, k = self.config, self.recipe, self.config.num_generations
        ids, mask = self.encode_prompts(prompts)
        ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        opponent = recipe.opponent_at(cfg, self.step)
        start = time.perf_counter()
        y, y_mask, texts = self._sample_from("self", ids, mask)  # one call for all B·k rows
        if opponent == "self":
            sample_seconds = time.perf_counter() - start
            p, first, second = self.selfplay_preferences(prompts, texts)
            advantage = selfplay_advantages(p, k)
            pairs = p.shape[1]  # each prompt's first compared pair is the one a sample log shows
            self._samples += [
                (prompt_text(x), first[r * pairs], second[r * pairs], float(p[r, 0])) for r, x in enumerate(prompts)
            ]
        else:
            _, _, o_texts = self._sample_from(opponent, ids, mask)
            sample_seconds = time.perf_counter() - start
            rows = [x for x in prompts for _ in range(k)]
            p = self._preference(rows, texts, o_texts).view(len(prompts), k)
            advantage = paired_advantages(p)
            self._samples += [
                (prompt_text(x), texts[r * k], o_texts[r * k], float(p[r, 0])) for r, x in enumerate(prompts)
            ]
        self.completions += len(texts) * self.accelerator.num_processes
        analytic = cfg.kl_estimator == "analytic" and recipe.loss == "pg"
        with self._scoring_mode():  # score the policies that sampled (no dropout); π_θ with gradient
            out = self._token_logp(self.model, ids, mask, y, y_mask, full=analytic)
            with torch.no_grad():
                ref = self._token_logp(self.ref_view, ids, mask, y, y_mask, full=analytic)
                center = (
                    self._token_logp(self.snapshot_view(self.anchor), ids, mask, y, y_mask, full=analytic)
                    if recipe.anchor_kl
                    else None
                )
        if analytic:  # per-token KLs over the vocabulary, then the sampled tokens' log-probs
            kl_ref_t = per_token_kl(out, ref) * y_mask
            kl_center_t = per_token_kl(out, center) * y_mask if center is not None else None
            logp = out.gather(-1, y[..., None])[..., 0] * y_mask
            kls = [(cfg.beta, kl_ref_t)] + ([(cfg.anchor_weight, kl_center_t)] if kl_center_t is not None else [])
            loss = token_pg_loss_analytic(logp, y_mask, advantage.reshape(-1), kls)
            kl_ref = float(kl_ref_t.detach().sum(-1).mean())
            kl_center = float(kl_center_t.detach().sum(-1).mean()) if kl_center_t is not None else 0.0
        else:
            logp = out
            seq_logp = logp.detach().sum(-1)
            if recipe.loss == "ipo":
                loss = grouped_ipo_loss(logp.sum(-1), ref.sum(-1), p, cfg.beta, k)
            else:
                anchors = [(cfg.beta, ref)] + ([(cfg.anchor_weight, center)] if center is not None else [])
                loss = token_pg_loss(logp, y_mask, advantage.reshape(-1), anchors)
            kl_ref = float((seq_logp - ref.sum(-1)).mean())
            kl_center = float((seq_logp - center.sum(-1)).mean()) if center is not None else 0.0
        stats = {
            "losses/loss": float(loss.detach()),
            "train/preference": float(p.mean()),
            "train/advantage_std": float(advantage.std()) if advantage.numel() > 1 else 0.0,
            "train/kl_ref": kl_ref,
            "train/kl_anchor": kl_center,
            "train/length": float(y_mask.sum(-1).float().mean()),
            "train/eos_fraction": self._eos_fraction(y, y_mask),
            "charts/sample_seconds": sample_seconds,
        }
        return loss, stats

    def _accumulate(self, batches: Sequence[list[Prompt]]) -> dict[str, float]:
        """Backward of the mean loss over the micro-batches (gradient accumulation); their mean metrics."""
        rows = []
        for n, prompts in enumerate(batches):
            last = n == len(batches) - 1
            # (under DeepSpeed the boundary is engine.step(): ZeRO-2/3 reduce-scatter in every backward)
            with contextlib.nullcontext() if last or self.deepspeed else self.accelerator.no_sync(self.model):
                loss, stats = self._loss(prompts)
                with self._scoring_mode():  # a checkpointed layer's recompute must see the same (dropout-free) mode
                    if self.deepspeed:  # accelerate's backward would step the engine here (see trainer_deepspeed)
                        self.model.backward(loss / len(batches), scale_wrt_gas=False)
                    else:
                        self.accelerator.backward(loss / len(batches))
            rows.append(stats)
        out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        out["charts/sample_seconds"] = float(sum(r["charts/sample_seconds"] for r in rows))  # a sum, not a mean
        return out

    def _extragradient_step(self, batches: Sequence[list[Prompt]]) -> dict[str, float]:
        # Look-ahead θ_{t+½}: the same optimiser step as the real update, from a saved state; then the
        # update from θ_t with the gradient at θ_{t+½} on fresh completions sampled from π_{θ_{t+½}}.
        start = snapshot(self.theta)
        masters = self.masters() if self.deepspeed else []  # DeepSpeed's fp32 partitions
        master_start = snapshot(masters)
        opt_state = self.optimizer_state_copy()
        first = self._accumulate(batches)
        self._apply_gradients()
        self._samples = []  # the sample log shows the update's own completions, not the look-ahead's
        stats = self._accumulate(batches)
        with torch.no_grad():
            for p, v in zip(self.theta + masters, start + master_start, strict=True):
                p.copy_(v)
        self._reshard()  # no gathered copy of θ_{t+½} (ZeRO-3's persistent parameters) outlives the restore
        self.restore_optimizer_state(opt_state)
        stats["losses/grad_norm"] = self._apply_gradients()
        stats["charts/sample_seconds"] += first["charts/sample_seconds"]
        return stats

    def _apply_gradients(self) -> float:
        if self.deepspeed:  # finish the gradients' reduction, clip at max_grad_norm, step, zero
            self.model.step()
            norm = self.model.get_global_grad_norm()
            if norm is None:  # (compute_grad_norm: false) the metric would read 0 and a NaN would go unseen
                raise InvalidParameterError("DeepSpeed computed no gradient norm: remove compute_grad_norm: false.")
            return float(norm)
        norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        full = getattr(norm, "full_tensor", None)  # FSDP2: a replicated DTensor
        return float(full() if full is not None else norm)

    def _learning_rate(self) -> float:
        return float(self.optimizer_impl.param_groups[0]["lr"])

    def training_step(self) -> dict[str, float]:
        """One optimiser step of the configured recipe; returns its metrics (see :data:`METRICS`)."""
        start = time.perf_counter()
        self._samples = []
        self.model.train()
        self._run_events(self.recipe.before(self.config, self.step))
        accumulate = self.config.gradient_accumulation_steps
        batches = [self._batch_prompts(self.step * accumulate + n) for n in range(accumulate)]
        learning_rate = self._learning_rate()
        with self.accelerator.autocast():
            if self.recipe.extragradient:
                stats = self._extragradient_step(batches)
            else:
                stats = self._accumulate(batches)
                stats["losses/grad_norm"] = self._apply_gradients()
        self.lr_scheduler.step()
        self.step += 1
        self._run_events(self.recipe.after(self.config, self.step))
        stats = self._reduce(stats)
        # fp16 loss-scale overflow (DeepSpeed runs no fp16: a step it skips is a non-finite gradient, an error)
        skipped = not self.deepspeed and bool(getattr(self.accelerator, "optimizer_step_was_skipped", False))
        for name, value in stats.items():
            if not math.isfinite(value) and not (skipped and name == "losses/grad_norm"):
                raise FloatingPointError(f"{name} is {value} at step {self.step}; lower learning_rate or raise beta.")
        row = {**self._counters(), **stats, "charts/learning_rate": learning_rate}
        row["charts/seconds"] = time.perf_counter() - start
        self.history.append(row)
        return row

    def _reduce(self, stats: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return stats
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], device=self.accelerator.device)
        t = self.accelerator.reduce(t, reduction="mean")
        return dict(zip(keys, t.tolist(), strict=True))

    # ------------------------------------------------------------------ loop, logging, checkpoints
    def train(self) -> list[dict[str, float]]:
        """Run to ``max_steps`` (from a resumed step if any), logging and checkpointing on the way."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=f"nashmp {cfg.algorithm}",
            disable=not (cfg.progress_bar and acc.is_main_process),
        )
        if cfg.eval_steps and self.step == 0:
            self._log({**self._counters(), **self.evaluate_win_rate()})
        while self.step < cfg.max_steps:
            row = self.training_step()
            if cfg.eval_steps and (self.step % cfg.eval_steps == 0 or self.step == cfg.max_steps):
                row.update(self.evaluate_win_rate())
            bar.update(1)
            win = row.get("eval/win_rate", "-")
            bar.set_postfix(loss=f"{row['losses/loss']:.3g}", kl=f"{row['train/kl_ref']:.3g}", win=f"{win}")
            if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps or "eval/win_rate" in row:
                self._log(row)
            if cfg.log_completions_steps and self.step % cfg.log_completions_steps == 0:
                self._log_completions()
            if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        self.save_model(self.output_dir / "final")
        if acc.is_main_process:
            from .plots import plot_training

            title = f"{cfg.algorithm} on {cfg.model_name_or_path}"
            plot_training(self.output_dir / "log.csv", self.output_dir / "training.png", title=title)
        if cfg.trackers:
            acc.end_training()
        return self.history


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' fork warning under accelerate
