"""Part A of ``benchmarks/llm_vs_trl.py``: the speed/memory workers, TRL 1.0.0 ``NashMDTrainer`` (patched for
transformers 5.x) and nashmp's ``NashMPTrainer`` on the same work. Each runs in its own subprocess, started
by ``llm_vs_trl.py --_worker speed:<config>@<mode>``."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _trl_common import DEFAULT_TRL, DEFAULT_TRL_DEPS, chat_text, model_dir, peak_rss_gb, prompt_split, setup_process


def nash_md_trainer_module() -> Any:
    from trl.experimental.nash_md import nash_md_trainer

    return nash_md_trainer


def _import_trl(trl_path: Path, deps_path: Path, mixture_fix: bool = False) -> Any:
    """Import trl 1.0.0 from ``trl_path`` and patch ``GeometricMixtureWrapper`` for transformers 5.x.

    Always: the two-line patch (``get/set_experts_implementation`` delegating to ``self.model``), without
    which generation raises. With ``mixture_fix`` also the mixture-generation fix (see
    :func:`_fixed_prepare_inputs`): with transformers 5.24 and only the two-line patch, the mixture's
    generation loop feeds the wrapper one token per step (it slices by the generation config's
    ``use_cache=True`` while the wrapper forces ``use_cache=False``), and the policy and π_ref write into one
    shared ``DynamicCache`` — so the opponent samples are not drawn from π^{1−c}·π_ref^c (for two identical
    models the greedy mixture differs from the greedy policy; the worker records this check).
    """
    for p in (deps_path, trl_path):
        if not p.is_dir():
            raise SystemExit(
                f"{p} does not exist: install TRL 1.0.0 with\n"
                f"  .venv/bin/pip install --no-deps --target {DEFAULT_TRL} trl==1.0.0\n"
                f"  .venv/bin/pip install --no-deps --target {DEFAULT_TRL_DEPS} datasets==5.2.0 pyarrow==24.0.0 "
                "'dill<0.4.2,>=0.3.0' pandas xxhash 'multiprocess<0.70.20'"
            )
        sys.path.insert(0, str(p))
    import trl

    if not trl.__version__.startswith("1.0."):
        raise SystemExit(f"expected trl 1.0.x from {trl_path}, imported {trl.__version__} from {trl.__file__}")
    patch_geometric_mixture(mixture_fix)
    return trl


def patch_geometric_mixture(mixture_fix: bool = False) -> None:
    """The two-line patch of TRL 1.0.0's ``GeometricMixtureWrapper`` for transformers ≥ 5.2x (which asks the
    generating object for its experts implementation), and with ``mixture_fix`` :func:`_fixed_prepare_inputs`."""
    from trl.experimental.nash_md import nash_md_trainer

    wrapper = nash_md_trainer.GeometricMixtureWrapper
    wrapper.get_experts_implementation = lambda self, *a, **k: self.model.get_experts_implementation(*a, **k)
    wrapper.set_experts_implementation = lambda self, *a, **k: self.model.set_experts_implementation(*a, **k)
    if mixture_fix:
        wrapper.prepare_inputs_for_generation = _fixed_prepare_inputs


def _fixed_prepare_inputs(self: Any, input_ids: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """TRL's intended ``use_cache=False`` mixture step: the full prefix every step, no shared cache object,
    position ids from the attention mask (left padding)."""
    kwargs["next_sequence_length"] = None
    kwargs["use_cache"] = False
    inputs = self.model.prepare_inputs_for_generation(input_ids, *args, **kwargs)
    inputs.pop("cache", None)
    inputs.pop("past_key_values", None)
    mask = inputs.get("attention_mask")
    if mask is not None and inputs.get("position_ids") is None:
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    inputs["use_cache"] = False
    return inputs


def _mixture_sanity(wrapper_cls: Any, model: Any, tok: Any, prompts: list[str], new_tokens: int = 8) -> dict[str, Any]:
    """Greedy decoding from the geometric mixture of a model with an identical copy must equal the model's own
    greedy decoding (π^{1−c}·π^c = π); returns whether it does, and the two texts of the first prompt."""
    import copy

    import torch
    from transformers import GenerationConfig

    enc = tok([chat_text(tok, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    gc = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        use_cache=True,
    )
    twin = copy.deepcopy(model).eval()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        plain = model.generate(**enc, generation_config=gc)
        mix = wrapper_cls(model=model, ref_model=twin, generation_config=gc, mixture_coef=0.5, device=model.device)
        mixed = mix.generate(**enc, generation_config=gc)
    model.train(was_training)
    del twin
    n = enc["input_ids"].shape[1]
    return {
        "mixture_equals_policy": bool(torch.equal(plain, mixed)),
        "policy_greedy": tok.decode(plain[0, n:], skip_special_tokens=False),
        "mixture_greedy": tok.decode(mixed[0, n:], skip_special_tokens=False),
    }


class _StepClock:
    """Accumulates named durations inside one step."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    @contextlib.contextmanager
    def time(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - t0

    def pop(self) -> dict[str, float]:
        out, self.parts = self.parts, {}
        return out


def speed_worker_trl(a: argparse.Namespace, mixture_fix: bool) -> dict[str, Any]:
    setup_process(a.threads)
    trl = _import_trl(Path(a.trl_path), Path(a.trl_deps), mixture_fix)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.judges import BasePairwiseJudge
    from trl.experimental.nash_md import NashMDConfig, NashMDTrainer

    from nashmp.llm.judges import CommitteeOracle

    t_load = time.perf_counter()
    src = str(model_dir())
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    load_s = time.perf_counter() - t_load

    train, _, source = prompt_split(a.eval_prompts, a.seed)
    sanity = _mixture_sanity(nash_md_trainer_module().GeometricMixtureWrapper, model, tok, train[:2])
    templated = [chat_text(tok, p) for p in train]
    question = dict(zip(templated, train, strict=True))
    oracle = CommitteeOracle()
    clock = _StepClock()

    class CommitteeJudge(BasePairwiseJudge):
        """TRL judge calling nashmp's CommitteeOracle: P(first ≻ second | prompt) per pair."""

        def judge(self, prompts, completions, shuffle_order=True, return_scores=False):
            with clock.time("oracle"):
                xs = [question.get(p, p) for p in prompts]
                p = oracle.probability(xs, [c[0] for c in completions], [c[1] for c in completions])
            return [float(v) for v in p] if return_scores else [0 if v >= 0.5 else 1 for v in p]

    lengths: list[float] = []

    class TimedNashMD(NashMDTrainer):
        def _generate_completions(self, model, prompts):
            with clock.time("generation"):
                return super()._generate_completions(model, prompts)

        def _process_completions(self, model_output, mixture_output, prompts):
            model_data, mixture_data = super()._process_completions(model_output, mixture_output, prompts)
            ctx = prompts["input_ids"].shape[1]
            for d in (model_data, mixture_data):
                lengths.append(float(d["attention_mask"][:, ctx:].sum(-1).float().mean()))
            return model_data, mixture_data

    steps: list[dict[str, float]] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.pop()
            lengths.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            dt = time.perf_counter() - self.t0
            parts = clock.pop()
            steps.append(
                {
                    "seconds": dt,
                    "generation": parts.get("generation", 0.0),
                    "oracle": parts.get("oracle", 0.0),
                    "policy_length": lengths[0] if lengths else math.nan,
                    "opponent_length": lengths[1] if len(lengths) > 1 else math.nan,
                    "rss_gb": peak_rss_gb(),
                }
            )

    total = a.warmup + a.steps
    cfg = NashMDConfig(
        output_dir=str(Path(a.workdir) / "trl_out"),
        per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=1,
        max_steps=total,
        learning_rate=a.full_lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        top_k=0,
        top_p=1.0,
        beta=0.1,
        mixture_coef=0.5,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=a.seed,
        # fixed length: both samples get exactly max_new_tokens tokens (EOS masked until then)
        generation_kwargs={"min_new_tokens": a.max_new_tokens} if a.length_mode == "fixed" else None,
    )
    # An explicit fingerprint: datasets would otherwise hash the Arrow table with dill, which pickles modules
    # installed outside sys.prefix (our --target folders) by value and fails on pyarrow types.
    import pyarrow as pa

    ds = Dataset(pa.table({"prompt": templated}), fingerprint="llm_vs_trl_prompts")
    trainer = TimedNashMD(
        model=model, ref_model=None, judge=CommitteeJudge(), args=cfg, train_dataset=ds, processing_class=tok
    )
    trainer.add_callback(Clock())
    rss_before = peak_rss_gb()
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    return {
        "config": "trl-nash-md-fixmix" if mixture_fix else "trl-nash-md",
        "impl": f"trl {trl.__version__} NashMDTrainer" + (" + mixture fix" if mixture_fix else ""),
        "mixture_sanity": sanity,
        **_run_record(
            (p for p in model.parameters() if p.requires_grad), load_s, rss_before, wall, steps, source, oracle
        ),
    }


def _run_record(
    trainable: Iterable[Any], load_s: float, rss_before: float, wall: float, steps: list[Any], source: str, oracle: Any
) -> dict[str, Any]:
    """The fields every speed worker reports, whichever trainer it timed."""
    return {
        "trainable_params": sum(p.numel() for p in trainable),
        "load_seconds": load_s,
        "rss_before_train_gb": rss_before,
        "train_wall_seconds": wall,
        "steps": steps,
        "prompt_source": source,
        "oracle_queries": oracle.queries,
    }


def speed_worker_nashmp(a: argparse.Namespace, algorithm: str) -> dict[str, Any]:
    setup_process(a.threads)
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.judges import CommitteeOracle
    from nashmp.llm.models import load_model_and_tokenizer
    from nashmp.llm.trainer import NashMPTrainer

    t_load = time.perf_counter()
    model, tok = load_model_and_tokenizer("smollm2")
    load_s = time.perf_counter() - t_load
    train, _, source = prompt_split(a.eval_prompts, a.seed)
    clock = _StepClock()
    lengths: list[float] = []
    oracle = CommitteeOracle()

    fixed = a.length_mode == "fixed"

    class TimedTrainer(NashMPTrainer):
        def sample(self, views, ids, mask):
            with clock.time("generation"):
                if fixed:  # the trainer's own sampler with an EOS id that never matches: max_new_tokens tokens
                    out, out_mask, texts = self._sample_fixed(views, ids, mask)
                else:
                    out, out_mask, texts = super().sample(views, ids, mask)
            lengths.append(float(out_mask.sum(-1).float().mean()))
            return out, out_mask, texts

        def _sample_fixed(self, views, ids, mask):
            from nashmp.llm.sampling import sample_completions

            tok = self.tokenizer
            was_training = self.raw_model.training
            self.raw_model.eval()
            try:
                out, out_mask, _ = sample_completions(
                    views,
                    ids,
                    mask,
                    max_new_tokens=self.config.max_new_tokens,
                    temperature=self.config.temperature,
                    eos_token_id=-1,
                    pad_token_id=tok.pad_token_id,
                )
            finally:
                self.raw_model.train(was_training)
            return out, out_mask, tok.batch_decode(out, skip_special_tokens=True)

        def _preference(self, prompts, first, second):
            with clock.time("oracle"):
                return super()._preference(prompts, first, second)

    total = a.warmup + a.steps
    cfg = NashMPConfig(
        model_name_or_path="smollm2",
        algorithm=algorithm,
        use_peft=False,
        per_device_train_batch_size=a.batch,
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        learning_rate=a.full_lr,
        beta=0.1,
        mixture_coef=0.5,
        max_steps=total,
        output_dir=str(Path(a.workdir) / f"speed_{algorithm}"),
        num_threads=a.threads,
        progress_bar=False,
        seed=a.seed,
    )
    trainer = TimedTrainer(cfg, model=model, tokenizer=tok, oracle=oracle, prompts=train)
    rss_before = peak_rss_gb()
    steps = []
    t0 = time.perf_counter()
    for _ in range(total):
        clock.pop()
        lengths.clear()
        row = trainer.training_step()
        parts = clock.pop()
        steps.append(
            {
                "seconds": row["charts/seconds"],
                "generation": parts.get("generation", 0.0),
                "oracle": parts.get("oracle", 0.0),
                "policy_length": lengths[0] if lengths else math.nan,
                "opponent_length": lengths[1] if len(lengths) > 1 else math.nan,
                "rss_gb": peak_rss_gb(),
            }
        )
    wall = time.perf_counter() - t0
    return {
        "config": f"nashmp-{algorithm}",
        "impl": f"nashmp NashMPTrainer ({algorithm})",
        **_run_record(trainer.params, load_s, rss_before, wall, steps, source, oracle),
    }
