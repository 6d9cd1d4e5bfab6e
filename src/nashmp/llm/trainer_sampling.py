"""Sampling, scoring and oracle queries of :class:`~nashmp.llm.NashMPTrainer`, and its held-out evaluation.

A mixin over :class:`~nashmp.llm.trainer_weights.PolicyWeights`: the trainer holds the state (model,
tokenizer, oracle, accelerator). Everything here runs the same
for every algorithm; what differs between algorithms is which view samples (the recipe's opponent) and
which loss the scores enter (:mod:`nashmp.llm.trainer`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidParameterError
from ..online.estimators import pair_indices
from ..oracles import PreferenceOracle
from .config import NashMPConfig
from .prompts import Prompt, prompt_text
from .sampling import ModelView, completion_log_probs, encode_prompts, eval_mode, sample_completions
from .trainer_weights import PolicyWeights

__all__ = ["SamplingAndScoring"]


class SamplingAndScoring(PolicyWeights):
    """Mixin: prompts per step, one generation call per view, teacher-forced scores, oracle queries (on the
    views of :class:`~nashmp.llm.trainer_weights.PolicyWeights`)."""

    tokenizer: Any
    oracle: PreferenceOracle
    eval_judge: PreferenceOracle | None
    prompts: list[Prompt]
    eval_prompts: list[Prompt]
    model: Any
    queries: int
    step: int

    # ------------------------------------------------------------------ prompts
    @staticmethod
    def _held_out_prompts(cfg: NashMPConfig) -> list[Prompt]:
        """Prompts of the periodic evaluation: ``eval_dataset``, else the ``test`` split of ``dataset``."""
        from .prompts import load_prompts

        if cfg.eval_dataset is not None:
            return load_prompts(cfg.eval_dataset, column=cfg.prompt_column, split="test")
        if Path(cfg.dataset).suffix.lower() in (".jsonl", ".json", ".txt"):
            raise InvalidParameterError(
                f"eval_steps needs held-out prompts, and the file {cfg.dataset} has no test split: set eval_dataset "
                "to a file of evaluation prompts (or eval_steps=0)."
            )
        if cfg.dataset_split == "test":
            raise InvalidParameterError("training on the test split leaves no held-out prompts; set eval_dataset.")
        return load_prompts(cfg.dataset, column=cfg.prompt_column, split="test")

    # ------------------------------------------------------------------ data
    def _batch_prompts(self, step: int) -> list[Prompt]:
        """This process's prompts for micro-batch ``step``: a seeded permutation per epoch, sliced per process."""
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

    def encode_prompts(self, prompts: Sequence[Prompt]) -> tuple[Tensor, Tensor]:
        """Chat-templated, left-padded, left-truncated prompt ids on this process's device."""
        ids, mask = encode_prompts(
            self.tokenizer, prompts, max_length=self.config.max_prompt_length, system_prompt=self.config.system_prompt
        )
        return ids.to(self.accelerator.device), mask.to(self.accelerator.device)

    def sample(
        self, views: Sequence[tuple[ModelView, float]], ids: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, list[str]]:
        """Completions of the (left-padded) prompts from the geometric mixture of ``views``, in eval mode."""
        cfg, tok = self.config, self.tokenizer
        with eval_mode(self.raw_model):
            out, out_mask, _ = sample_completions(
                views,
                ids,
                mask,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                all_finished=self.all_finished,
            )
        texts = tok.batch_decode(out.masked_fill(out_mask == 0, tok.pad_token_id), skip_special_tokens=True)
        return out, out_mask, texts

    def _sample_from(self, who: str, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, list[str]]:
        """Sample from π_θ (``self``), a snapshot (``anchor``/``half``) or Nash-MD's ``mixture``."""
        if who == "mixture":  # two models at every token: the policy's and π_ref's KV caches
            c = self.config.mixture_coef
            views = [(v, w) for v, w in ((self.policy_view, 1 - c), (self.ref_view, c)) if w > 0]
            return self.sample(views, ids, mask)
        with self._weights_of(who) as view:
            return self.sample([(view, 1.0)], ids, mask)

    def _token_logp(
        self, view: Any, ids: Tensor, mask: Tensor, comp: Tensor, comp_mask: Tensor, full: bool = False
    ) -> Tensor:
        """Per-token log-probs of the B·k rows (``full``: whole distributions); each prompt encoded once, except
        in a pass with gradient under gradient checkpointing (the checkpointed layers drop a prompt cache)."""
        k, temperature = self.config.num_generations, self.config.temperature
        group = 1 if self.config.gradient_checkpointing and torch.is_grad_enabled() else k
        return completion_log_probs(view, ids, mask, comp, comp_mask, temperature=temperature, group=group, full=full)

    def _preference(self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str]) -> Tensor:
        p = self.oracle.probability([prompt_text(x) for x in prompts], list(first), list(second))
        self.queries += len(first) * self.accelerator.num_processes
        return torch.as_tensor(p, dtype=torch.float32, device=self.accelerator.device)

    def selfplay_preferences(
        self, prompts: Sequence[Prompt], texts: Sequence[str]
    ) -> tuple[Tensor, list[str], list[str]]:
        """P(y_i ≻ y_j) for all k(k−1)/2 pairs of each prompt's k completions (rows in runs of k), ``(B, pairs)``,
        with the first and second answers of every pair in query order."""
        k, b = self.config.num_generations, len(prompts)
        i, j = pair_indices(k)
        first = [texts[r * k + a] for r in range(b) for a in i.tolist()]
        second = [texts[r * k + c] for r in range(b) for c in j.tolist()]
        p = self._preference([x for x in prompts for _ in i.tolist()], first, second).view(b, -1)
        return p, first, second

    @contextlib.contextmanager
    def _scoring_mode(self) -> Iterator[None]:
        """Dropout off while scoring. Under gradient checkpointing the decoder layers keep their own training
        flag (transformers checkpoints only layers in training mode); their dropouts are still off."""
        with eval_mode(self.model):
            layers = []
            if self.config.gradient_checkpointing:
                from transformers.modeling_layers import GradientCheckpointingLayer

                layers = [
                    m
                    for m in self.raw_model.modules()
                    if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
                ]
            for layer in layers:
                layer.training = True  # the flag only: children (attention, dropout) stay in eval mode
            try:
                yield
            finally:
                for layer in layers:
                    layer.training = False

    def _eos_fraction(self, ids: Tensor, mask: Tensor) -> float:
        last = (mask.sum(-1) - 1).clamp(min=0)
        ended = ids.gather(1, last[:, None])[:, 0] == self.tokenizer.eos_token_id
        return float(ended.float().mean())

    # ------------------------------------------------------------------ periodic held-out evaluation
    @torch.no_grad()
    def evaluate_win_rate(self) -> dict[str, float]:
        """Held-out win rate of π_θ against π_ref: ``eval_samples_per_prompt`` completions of each per prompt,
        at temperature T.

        Uses its own random stream (seeded by the step), so evaluating does not change training.
        """
        if not self.eval_prompts:
            return {}
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), self.accelerator.autocast():
            torch.manual_seed(self.config.seed * 7919 + self.step)
            prompts = [x for x in self.eval_prompts for _ in range(self.config.eval_samples_per_prompt)]
            ids, mask = self.encode_prompts(prompts)
            _, _, mine = self._sample_from("self", ids, mask)
            _, _, ref = self.sample([(self.ref_view, 1.0)], ids, mask)
        texts = [prompt_text(x) for x in prompts]
        out = {"eval/win_rate": float(np.mean(self.oracle.probability(texts, mine, ref)))}
        if self.eval_judge is not None:
            out["eval/win_rate_judge"] = float(np.mean(self.eval_judge.probability(texts, mine, ref)))
        return out
