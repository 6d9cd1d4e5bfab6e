r"""``NashMPTrainer``: online Nash-MP (and Nash-MD, online IPO, EGPO) fine-tuning of causal LMs.

One optimiser step, for every algorithm (B prompts per process):

1. sample ``y ~ π_θ`` and the opponent ``y' ~ μ`` with the KV cache, at temperature T;
2. query the preference oracle once per pair: ``p = P(y ≻ y' | x)``;
3. score the sequences with the tempered π_θ (with gradient), π_ref and the anchor (without);
4. minimise the loss of the approximate layer (:mod:`nashmp.approx.losses`, the same functions):

   * Nash-MP / Nash-MD: :func:`~nashmp.approx.losses.prox_pg_loss` with reward p, baseline ½ and anchors
     ``[(β, log π_ref(y)), (β/η, log π̄(y))]`` — the REINFORCE surrogate of the KL-proximal step
     :math:`\max_\pi \mathcal P(\pi\succ\mu)-\beta\mathrm{KL}(\pi\|\pi_{\rm ref})-\tfrac\beta\eta\mathrm{KL}(\pi\|\bar\pi)`
     (Nash-MD has no anchor term);
   * online IPO / EGPO: :func:`~nashmp.approx.losses.ipo_loss` on self-play pairs;

5. update the anchor: θ̄ ← (1−κ)θ̄ + κθ (practical Nash-MP) or the phase switches of the faithful variant.

Sequence log-probabilities are sums over completion tokens (EOS included), so the KL terms are the
sequence-level KLs, estimated on the sampled ``y`` as in TRL's Nash-MD.

Anchors and half-step policies are **parameter snapshots** of the trainable parameters, swapped into
the one model when needed (:func:`~nashmp.llm.sampling.swap_parameters`): with LoRA a snapshot costs the
adapter's size (≈ 2 MB for r=16 on SmolLM2-135M), without LoRA one copy of the weights — the same as a
frozen model, without a second module. π_ref is the base model with adapters disabled (LoRA) or one
frozen copy (full fine-tuning).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..approx.losses import ipo_loss, prox_pg_loss
from ..errors import InvalidParameterError
from ..oracles import PreferenceOracle
from .config import NashMPConfig
from .sampling import ModelView, completion_log_probs, encode_prompts, sample_completions, swap_parameters

__all__ = ["NashMPTrainer", "METRICS", "latest_checkpoint"]

#: The metrics every algorithm logs (one CSV column each, the same names in every tracker).
METRICS = {
    "step": "optimiser steps taken",
    "queries": "preference queries so far, summed over processes (one per compared pair)",
    "loss": "the algorithm's loss on this step's batch",
    "preference": "mean P(y ≻ y') of the policy's sample against the opponent's (½ for self-play in expectation)",
    "kl_ref": "sequence KL(π_θ‖π_ref) estimated on the policy's samples (mean of Σ_t log π_θ − log π_ref)",
    "kl_anchor": "sequence KL(π_θ‖π̄) to the anchor, same estimator (0 for algorithms without one)",
    "length": "mean completion length in tokens",
    "eos_fraction": "fraction of completions that ended with EOS within max_new_tokens",
    "grad_norm": "gradient norm before clipping",
    "seconds": "wall-clock seconds of the step",
}


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N in ``output_dir``, or None."""
    found = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


def _snapshot(params: Sequence[Tensor]) -> list[Tensor]:
    return [p.detach().clone() for p in params]


class NashMPTrainer:
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
    """

    def __init__(
        self,
        config: NashMPConfig,
        *,
        model: Any = None,
        tokenizer: Any = None,
        oracle: PreferenceOracle | None = None,
        prompts: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(config, NashMPConfig):
            raise InvalidParameterError(f"config must be a NashMPConfig, got {type(config).__name__}.")
        self.config = cfg = config
        # ---- everything that can fail cheaply fails before a model is loaded
        if prompts is None:
            from .prompts import load_prompts

            prompts = load_prompts(cfg.dataset, column=cfg.prompt_column, split=cfg.dataset_split)
        self.prompts = [str(p) for p in prompts]
        if not self.prompts:
            raise InvalidParameterError("the prompt set is empty; give a dataset with at least one prompt.")
        if (model is None) != (tokenizer is None):
            raise InvalidParameterError("pass both model and tokenizer, or neither (then config.model_name_or_path).")
        if model is None:
            from .models import resolve_model_path

            resolve_model_path(cfg.model_name_or_path)
        oracle_spec = cfg.oracle
        if oracle is None and oracle_spec != "lm-judge":  # cheap oracles are built (and validated) first
            from .judges import make_oracle

            oracle = make_oracle(oracle_spec)
        if oracle is not None and not isinstance(oracle, PreferenceOracle):
            raise InvalidParameterError(f"oracle must be a PreferenceOracle, got {type(oracle).__name__}.")
        resume = self._resolve_resume(cfg)

        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # Without a GPU/accelerator, run on CPU explicitly: that is what makes accelerate pick its MULTI_CPU
        # (gloo) backend when launched with several processes (`accelerate launch --multi_gpu` or torchrun).
        accel = getattr(torch, "accelerator", None)
        has_accelerator = bool(accel.is_available()) if accel is not None else torch.cuda.is_available()
        self.accelerator = Accelerator(
            cpu=cfg.use_cpu or not has_accelerator, log_with=cfg.trackers or None, project_dir=cfg.output_dir
        )
        set_seed(cfg.seed)
        if model is None:
            from .models import load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(cfg.model_name_or_path, dtype=cfg.dtype)
        from .models import prepare_tokenizer

        self.tokenizer = prepare_tokenizer(tokenizer)
        judge_model = None
        if oracle is None and oracle_spec == "lm-judge":  # a frozen copy of the base model judges
            judge_model = copy.deepcopy(model).eval().requires_grad_(False)
        model = self._wrap_peft(model)
        self._peft = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self._ref_model = None
        if not self._peft:  # full fine-tuning: one frozen copy is π_ref
            self._ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise InvalidParameterError("the model has no trainable parameters.")
        # snapshots only for the algorithms that use them (Nash-MD, online IPO and EGPO have no anchor)
        self.anchor = _snapshot(self.params) if cfg.algorithm.startswith("nash-mp") else []
        self.half = _snapshot(self.params) if self._needs_half else []
        self.optimizer_impl = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer_impl)
        if self._peft:  # checkpoints hold the adapters only, not a copy of the frozen base model
            self.accelerator.register_save_state_pre_hook(self._save_trainable_only)
            self.accelerator.register_load_state_pre_hook(self._load_trainable_only)
        if oracle is None:  # the LM judge: a frozen copy of the base model
            from .judges import make_oracle

            oracle = make_oracle(oracle_spec, model=judge_model, tokenizer=self.tokenizer)
        self.oracle = oracle
        self.step = 0
        self.queries = 0
        self.history: list[dict[str, float]] = []
        self.output_dir = Path(cfg.output_dir)
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if cfg.trackers:
            self.accelerator.init_trackers("nashmp", config={k: str(v) for k, v in cfg.to_dict().items()})
        if resume is not None:
            self.load_checkpoint(resume)

    # ------------------------------------------------------------------ setup helpers
    @staticmethod
    def _resolve_resume(cfg: NashMPConfig) -> Path | None:
        if cfg.resume_from_checkpoint is None:
            return None
        if cfg.resume_from_checkpoint == "latest":
            found = latest_checkpoint(cfg.output_dir)
            if found is None:
                raise InvalidParameterError(f"resume_from_checkpoint=latest but {cfg.output_dir} has no checkpoint-N.")
            return found
        path = Path(cfg.resume_from_checkpoint)
        if not (path / "trainer_state.json").is_file():
            raise InvalidParameterError(f"{path} is not a nashmp checkpoint (no trainer_state.json).")
        return path

    def _wrap_peft(self, model: Any) -> Any:
        cfg = self.config
        if not cfg.use_peft or hasattr(model, "peft_config"):
            return model
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        import warnings

        with warnings.catch_warnings():  # peft 0.21 reads a deprecated transformers alias (harmless, theirs)
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            return get_peft_model(model, lora)

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

    @property
    def _needs_half(self) -> bool:
        cfg = self.config
        return cfg.algorithm == "nash-mp-faithful" or (cfg.algorithm == "nash-mp" and cfg.opponent == "half")

    @property
    def raw_model(self) -> Any:
        """The model without the DDP wrapper (used for every pass without gradient)."""
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------ views
    @property
    def policy_view(self) -> ModelView:
        return ModelView(self.raw_model)

    @property
    def ref_view(self) -> ModelView:
        if self._peft:
            return ModelView(self.raw_model, self.raw_model.disable_adapter)
        return ModelView(self._ref_model)

    def snapshot_view(self, values: list[Tensor]) -> ModelView:
        return ModelView(self.raw_model, lambda: swap_parameters(self.params, values))

    # ------------------------------------------------------------------ data
    def _batch_prompts(self, step: int) -> list[str]:
        """This process's prompts for ``step``: a seeded permutation per epoch, sliced per process."""
        acc, per = self.accelerator, self.config.per_device_train_batch_size
        global_batch = per * acc.num_processes
        n = len(self.prompts)
        start = step * global_batch
        rows = []
        for k in range(start + acc.process_index * per, start + (acc.process_index + 1) * per):
            epoch, pos = divmod(k, n)
            perm = np.random.default_rng([self.config.seed, epoch]).permutation(n)
            rows.append(self.prompts[int(perm[pos])])
        return rows

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Chat-templated, left-padded, left-truncated prompt ids on this process's device."""
        ids, mask = encode_prompts(self.tokenizer, prompts, max_length=self.config.max_prompt_length)
        return ids.to(self.accelerator.device), mask.to(self.accelerator.device)

    def sample(
        self, views: Sequence[tuple[ModelView, float]], ids: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, list[str]]:
        cfg, tok = self.config, self.tokenizer
        was_training = self.raw_model.training
        self.raw_model.eval()  # no dropout while sampling
        try:
            out, out_mask, _ = sample_completions(
                views,
                ids,
                mask,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        finally:
            self.raw_model.train(was_training)
        texts = tok.batch_decode(out.masked_fill(out_mask == 0, tok.pad_token_id), skip_special_tokens=True)
        return out, out_mask, texts

    def _pair(self, first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Stack two completion batches along the batch axis, right-padding to a common length."""
        length = max(first[0].shape[1], second[0].shape[1])
        pad = self.tokenizer.pad_token_id

        def widen(t: Tensor, value: int) -> Tensor:
            return torch.nn.functional.pad(t, (0, length - t.shape[1]), value=value)

        return (
            torch.cat([widen(first[0], pad), widen(second[0], pad)]),
            torch.cat([widen(first[1], 0), widen(second[1], 0)]),
        )

    def _seq_logp(self, view: Any, ids: Tensor, mask: Tensor, comp: Tensor, comp_mask: Tensor) -> Tensor:
        return completion_log_probs(view, ids, mask, comp, comp_mask, temperature=self.config.temperature).sum(-1)

    @torch.no_grad()
    def _frozen_logp(self, view: ModelView, ids: Tensor, mask: Tensor, comp: Tensor, comp_mask: Tensor) -> Tensor:
        return self._seq_logp(view, ids, mask, comp, comp_mask)

    def _preference(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> Tensor:
        p = self.oracle.probability(list(prompts), list(first), list(second))
        self.queries += len(first) * self.accelerator.num_processes
        return torch.as_tensor(p, dtype=torch.float32, device=self.accelerator.device)

    # ------------------------------------------------------------------ the algorithms
    def _opponent_views(self) -> list[tuple[ModelView, float]]:
        cfg = self.config
        if cfg.algorithm == "nash-md":
            c = cfg.mixture_coef
            return [(v, w) for v, w in ((self.policy_view, 1 - c), (self.ref_view, c)) if w > 0]
        if cfg.algorithm == "nash-mp-faithful":
            phase_two = self.step % (2 * cfg.inner_steps) >= cfg.inner_steps
            return [(self.snapshot_view(self.half if phase_two else self.anchor), 1.0)]
        if cfg.opponent == "ema":
            return [(self.snapshot_view(self.anchor), 1.0)]
        if cfg.opponent == "half":
            return [(self.snapshot_view(self.half), 1.0)]
        return [(self.policy_view, 1.0)]

    def _prox_pg_step(self, prompts: list[str]) -> dict[str, float]:
        """Nash-MP (practical and faithful) and Nash-MD: one REINFORCE step on the KL-proximal problem."""
        cfg = self.config
        ids, mask = self.encode_prompts(prompts)
        y, y_mask, y_text = self.sample([(self.policy_view, 1.0)], ids, mask)
        _, _, o_text = self.sample(self._opponent_views(), ids, mask)
        p = self._preference(prompts, y_text, o_text)
        logp = self._seq_logp(self.model, ids, mask, y, y_mask)
        ref = self._frozen_logp(self.ref_view, ids, mask, y, y_mask)
        anchors: list[tuple[float, Tensor]] = [(cfg.beta, ref)]
        kl_anchor = torch.zeros(())
        if cfg.algorithm != "nash-md":
            center = self._frozen_logp(self.snapshot_view(self.anchor), ids, mask, y, y_mask)
            anchors.append((cfg.anchor_weight, center))
            kl_anchor = (logp.detach() - center).mean()
        loss = prox_pg_loss(logp, p, 0.5, anchors)
        grad_norm = self._update(loss)
        return {
            "loss": float(loss.detach()),
            "preference": float(p.mean()),
            "kl_ref": float((logp.detach() - ref).mean()),
            "kl_anchor": float(kl_anchor),
            "length": float(y_mask.sum(-1).float().mean()),
            "eos_fraction": self._eos_fraction(y, y_mask),
            "grad_norm": grad_norm,
        }

    def _ipo_loss(self, prompts: list[str], sample_view: ModelView) -> tuple[Tensor, dict[str, float]]:
        """Self-play online-IPO loss on a fresh batch of pairs sampled from ``sample_view``."""
        cfg = self.config
        ids, mask = self.encode_prompts(prompts)
        y1, m1, t1 = self.sample([(sample_view, 1.0)], ids, mask)
        y2, m2, t2 = self.sample([(sample_view, 1.0)], ids, mask)
        p = self._preference(prompts, t1, t2)
        comp, comp_mask = self._pair((y1, m1), (y2, m2))
        ids2, mask2 = torch.cat([ids, ids]), torch.cat([mask, mask])
        logp = self._seq_logp(self.model, ids2, mask2, comp, comp_mask)
        ref = self._frozen_logp(self.ref_view, ids2, mask2, comp, comp_mask)
        b = len(prompts)
        loss = ipo_loss(logp[:b], logp[b:], ref[:b], ref[b:], p, cfg.beta)
        stats = {
            "loss": float(loss.detach()),
            "preference": float(p.mean()),
            "kl_ref": float((logp.detach() - ref).mean()),
            "kl_anchor": 0.0,
            "length": float(m1.sum(-1).float().mean()),
            "eos_fraction": self._eos_fraction(y1, m1),
        }
        return loss, stats

    def _online_ipo_step(self, prompts: list[str]) -> dict[str, float]:
        loss, stats = self._ipo_loss(prompts, self.policy_view)
        stats["grad_norm"] = self._update(loss)
        return stats

    def _egpo_step(self, prompts: list[str]) -> dict[str, float]:
        # Look-ahead θ_{t+½}: the same optimiser step as the real update, from a saved state; then the
        # update from θ_t with the gradient at θ_{t+½} on fresh pairs sampled from π_{θ_{t+½}}.
        start = _snapshot(self.params)
        opt_state = copy.deepcopy(self.optimizer_impl.state_dict())
        loss, _ = self._ipo_loss(prompts, self.policy_view)
        self._update(loss)
        loss, stats = self._ipo_loss(prompts, self.policy_view)
        self.accelerator.backward(loss)
        with torch.no_grad():
            for p, v in zip(self.params, start, strict=True):
                p.copy_(v)
        self.optimizer_impl.load_state_dict(opt_state)
        stats["grad_norm"] = self._apply_gradients()
        return stats

    def _update(self, loss: Tensor) -> float:
        self.accelerator.backward(loss)
        return self._apply_gradients()

    def _apply_gradients(self) -> float:
        norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def _eos_fraction(self, ids: Tensor, mask: Tensor) -> float:
        last = (mask.sum(-1) - 1).clamp(min=0)
        ended = ids.gather(1, last[:, None])[:, 0] == self.tokenizer.eos_token_id
        return float(ended.float().mean())

    def _before_step(self) -> None:
        """Phase switches of the faithful variant (at the start of each phase)."""
        cfg = self.config
        if cfg.algorithm != "nash-mp-faithful":
            return
        pos = self.step % (2 * cfg.inner_steps)
        if pos == 0:  # new outer iteration: π_k ← current θ; a fresh optimiser per sub-problem
            self.anchor = _snapshot(self.params)
            self.optimizer_impl.state.clear()
        elif pos == cfg.inner_steps:  # π_{k+½} frozen; warm start the second sub-problem from it
            self.half = _snapshot(self.params)
            self.optimizer_impl.state.clear()

    @torch.no_grad()
    def _after_step(self) -> None:
        cfg = self.config
        if cfg.algorithm == "nash-mp":
            torch._foreach_lerp_(self.anchor, [p.detach() for p in self.params], cfg.ema)  # θ̄ ← (1−κ)θ̄ + κθ
            if cfg.opponent == "half" and self.step % cfg.half_every == 0:
                self.half = _snapshot(self.params)

    def training_step(self) -> dict[str, float]:
        """One optimiser step of the configured algorithm; returns its metrics (see :data:`METRICS`)."""
        start = time.perf_counter()
        self.model.train()
        self._before_step()
        prompts = self._batch_prompts(self.step)
        algo = self.config.algorithm
        if algo == "online-ipo":
            stats = self._online_ipo_step(prompts)
        elif algo == "egpo":
            stats = self._egpo_step(prompts)
        else:
            stats = self._prox_pg_step(prompts)
        self.step += 1
        self._after_step()
        stats = self._reduce(stats)
        for name, value in stats.items():
            if not math.isfinite(value):
                raise FloatingPointError(f"{name} is {value} at step {self.step}; lower learning_rate or raise beta.")
        row = {"step": float(self.step), "queries": float(self.queries), **stats}
        row["seconds"] = time.perf_counter() - start
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
        while self.step < cfg.max_steps:
            row = self.training_step()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3g}", pref=f"{row['preference']:.3f}", kl=f"{row['kl_ref']:.3g}")
            if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps:
                self._log(row)
            if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        self.save_model(self.output_dir / "final")
        if cfg.trackers:
            acc.end_training()
        return self.history

    def _log(self, row: dict[str, float]) -> None:
        acc = self.accelerator
        if self.config.trackers:
            acc.log({k: v for k, v in row.items() if k != "step"}, step=self.step)
        if not acc.is_main_process:
            return
        path = self.output_dir / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(METRICS))
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in METRICS})

    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-{step}``: model, optimiser and RNG (accelerate), anchors, state."""
        from safetensors.torch import save_file

        acc = self.accelerator
        path = self.output_dir / f"checkpoint-{self.step}"
        acc.save_state(str(path))
        if acc.is_main_process:
            if self.anchor:
                save_file({str(i): t.contiguous() for i, t in enumerate(self.anchor)}, str(path / "anchor.safetensors"))
            if self.half:
                save_file({str(i): t.contiguous() for i, t in enumerate(self.half)}, str(path / "half.safetensors"))
            state = {
                "step": self.step,
                "queries": self.queries,
                "history": self.history,
                "config": self.config.to_dict(),
            }
            (path / "trainer_state.json").write_text(json.dumps(state, indent=1))
        acc.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a :meth:`save_checkpoint` folder; training then continues exactly where it stopped."""
        from safetensors.torch import load_file

        path = Path(path)
        self.accelerator.load_state(str(path))
        device = self.accelerator.device

        def read(name: str) -> list[Tensor]:
            data = load_file(str(path / name))
            return [data[str(i)].to(device) for i in range(len(data))]

        if (path / "anchor.safetensors").is_file():
            self.anchor = read("anchor.safetensors")
        if (path / "half.safetensors").is_file():
            self.half = read("half.safetensors")
        state = json.loads((path / "trainer_state.json").read_text())
        self.step, self.queries, self.history = int(state["step"]), int(state["queries"]), state["history"]
        log = self.output_dir / "log.csv"
        if self.accelerator.is_main_process and log.exists():  # drop rows logged after the checkpoint
            with log.open() as fh:
                rows = [r for r in csv.DictReader(fh) if float(r["step"]) <= self.step]
            with log.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(METRICS))
                writer.writeheader()
                writer.writerows(rows)

    def save_model(self, path: str | Path) -> Path:
        """The policy as safetensors (adapters only with LoRA) plus the tokenizer: loadable by ``nashmp eval``."""
        path = Path(path)
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.raw_model.save_pretrained(str(path), safe_serialization=True)
            self.tokenizer.save_pretrained(str(path))
            (path / "nashmp_config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        acc.wait_for_everyone()
        return path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' fork warning under accelerate
