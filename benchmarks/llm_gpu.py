r"""LLM trainer on one GPU: seconds per step, generation tokens/s, peak memory and model-FLOPs utilisation.

One prepared script for the GPU machine (no model hub, no package registry: random-weight models of real
architectures, a tokenizer built in code), side by side in one run::

    python benchmarks/llm_gpu.py --out benchmarks/results/llm_gpu                 # ≈ 5–7 min on one H200
    python benchmarks/llm_gpu.py --trl-wheel trl-1.0.0-py3-none-any.whl ...      # TRL from a carried wheel
    python benchmarks/llm_gpu.py --tiny --in-process --out /tmp/llm_gpu          # CPU smoke size (make test)

Configurations (each in its own subprocess, so peak memory is that configuration's): the architectures
``smollm2-135m`` (SmolLM2-135M-Instruct's Llama config) and ``llama-1b`` (Llama-3.2-1B's config), each
× {nashmp ``nash-mp``, nashmp ``nash-md``, TRL 1.0.0 ``NashMDTrainer``} × {LoRA r = 16 on q/k/v/o, full
fine-tuning}; bf16 mixed precision on both sides (fp32 master weights; nashmp ``mixed_precision="bf16"``,
TRL ``bf16=True``), the same prompts, ``--batch`` prompts per step, ``--num-generations`` completions per
prompt for nashmp (TRL's Nash-MD draws one policy and one mixture completion per prompt), ``--max-new-tokens``
at T = 1, and a constant oracle (P = ½: the oracle's cost is not what is measured; it is the same
``CallableOracle`` / ``BasePairwiseJudge`` on both sides).

What is measured, after ``--warmup`` discarded steps, over ``--steps`` steps:

* **seconds per step** (median), and the part spent sampling;
* **generation tokens/s**: tokens sampled per second of sampling (nashmp: its sampler, all B·k rows of one
  weight set in one call; TRL: ``generate`` of the policy plus the geometric-mixture sampler);
* **peak memory**: ``torch.cuda.max_memory_allocated`` over the measured steps (on CPU: the process's peak
  RSS, which includes the interpreter and libraries);
* **model FLOPs utilisation** (MFU): model FLOPs counted from the tokens every forward pass actually
  processed — a global forward hook on each ``LlamaModel`` records batch × sequence tokens and whether
  autograd is on — times 2·N per forward token (N = parameters in matrix multiplies, the LM head included,
  the embedding lookup not) plus 4·N per token of a pass that is backpropagated in full fine-tuning and
  2·N with LoRA (gradients of activations only; the adapters' own FLOPs are < 2 % and not counted);
  attention-score FLOPs are left out (≈ context / (6 · hidden) of the total: < 10 % here). MFU = model
  FLOP/s ÷ ``--peak-tflops`` (default: 989 TFLOP/s, dense bf16, when the device name says H100/H200; none
  otherwise, and MFU is then not reported).

Tokenizer: nashmp's byte-level tokenizer built in code (258 tokens, ChatML template); the models keep their
real vocabulary sizes (49 152 and 128 256), so the LM head costs what it costs in the real model; sampled
ids above 257 decode to nothing, which the constant oracle does not mind. EOS is one id among the
vocabulary, so random models run to ``max_new_tokens`` (each record has the mean length).

TRL: imported from the environment or from ``--trl-wheel`` (a pure-Python wheel is importable as a zip);
``trl.experimental.nash_md`` is patched for transformers 5.x as ``benchmarks/_trl_speed.py`` documents. If
TRL cannot be imported (or ``datasets``, which it needs, is missing), its rows record why and the rest runs.

Outputs: ``<out>.json`` (every record) and ``<out>.md`` (the table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the GPU machine runs from the working tree (nothing installed)
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Llama configurations of real models (public config.json values); ``tiny`` is the CPU smoke size.
ARCHS: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, tie_word_embeddings=True),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, rope_theta=10000.0, tie_word_embeddings=True),
}  # fmt: skip
TRAINERS = ("nashmp:nash-mp", "nashmp:nash-md", "trl:nash-md")
PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "Explain what a black hole is to a ten-year-old.",
    "Write a short, friendly message inviting a neighbour to dinner.",
    "What are the benefits of drinking water regularly?",
    "How do I make a simple tomato sauce?",
    "Why is the sky blue?",
    "Suggest a name for a small coffee shop and explain why.",
    "What should I pack for a day hike?",
]


# --------------------------------------------------------------------------------------------------
# model, device, FLOP counting
# --------------------------------------------------------------------------------------------------


def build_model(arch: str, seed: int) -> tuple[Any, Any]:
    """A random-weight ``LlamaForCausalLM`` of ``arch`` in fp32 and nashmp's byte tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from nashmp.llm.models import byte_tokenizer

    tok = byte_tokenizer()
    config = LlamaConfig(
        **ARCHS[arch], max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tok


def matmul_params(model: Any) -> int:
    """N of the 2·N FLOPs-per-token rule: every ``nn.Linear`` weight (the LM head included, once)."""
    import torch

    seen: set[int] = set()
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            n += m.weight.numel()
    return n


class TokenCounter:
    """Counts the tokens each model forward pass processes, split by whether autograd records it.

    A global forward pre-hook on the token embedding (``nn.Embedding`` with the model's vocabulary, which
    every ``LlamaModel`` forward calls with ``input_ids``): it sees every model object a trainer makes
    (policy, π_ref copy, snapshots), batch × sequence tokens per call; a KV-cached decode step counts its
    new tokens only.
    """

    def __init__(self, vocab_size: int) -> None:
        import torch
        from torch.nn.modules.module import register_module_forward_pre_hook

        self.forward_no_grad = 0
        self.forward_grad = 0

        def hook(module: Any, args: tuple[Any, ...]) -> None:
            if not (isinstance(module, torch.nn.Embedding) and module.num_embeddings == vocab_size and args):
                return
            tokens = int(args[0].numel())
            if torch.is_grad_enabled():
                self.forward_grad += tokens
            else:
                self.forward_no_grad += tokens

        self.handle = register_module_forward_pre_hook(hook)

    def reset(self) -> None:
        self.forward_no_grad = self.forward_grad = 0

    def flops(self, n: int, lora: bool) -> float:
        backward = 2 if lora else 4
        return 2.0 * n * (self.forward_no_grad + self.forward_grad) + backward * n * self.forward_grad


def device_info() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"device": torch.cuda.get_device_name(0), "cuda": True}
    return {"device": "cpu", "cuda": False}


def default_peak_tflops(device: str) -> float | None:
    """Dense bf16 peak of the accelerator, where it is known (H100/H200 SXM: 989.4 TFLOP/s)."""
    return 989.4 if ("H100" in device or "H200" in device) else None


class Meter:
    """Per-step wall time, sampling time and sampled tokens; peak memory over the measured steps."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.sample_s = 0.0
        self.sampled_tokens = 0

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @contextlib.contextmanager
    def sampling(self) -> Any:
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.sample_s += time.perf_counter() - t0

    def row(self, seconds: float, counter: TokenCounter, n: int, lora: bool, lengths: list[float]) -> dict[str, float]:
        """One step's record: wall and sampling time, sampled tokens, counted tokens and model FLOPs."""
        return {"seconds": seconds, "sample_seconds": self.sample_s, "sampled_tokens": self.sampled_tokens,
                "flops": counter.flops(n, lora), "forward_tokens": counter.forward_no_grad + counter.forward_grad,
                "backward_tokens": counter.forward_grad, "length": statistics.mean(lengths) if lengths else 0.0}  # fmt: skip

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def summarise(steps: list[dict[str, float]], peak_tflops: float | None) -> dict[str, Any]:
    """Median seconds per step, tokens/s and MFU over the measured steps."""
    sec = statistics.median(s["seconds"] for s in steps)
    flops = statistics.median(s["flops"] for s in steps)
    gen_s = sum(s["sample_seconds"] for s in steps)
    out: dict[str, Any] = {
        "seconds_per_step": sec,
        "sample_seconds_per_step": statistics.median(s["sample_seconds"] for s in steps),
        "generation_tokens_per_s": sum(s["sampled_tokens"] for s in steps) / gen_s if gen_s > 0 else None,
        "model_tflops_per_step": flops / 1e12,
        "model_tflops_per_s": flops / sec / 1e12,
        "mfu": flops / sec / (peak_tflops * 1e12) if peak_tflops else None,
        "mean_length": statistics.mean(s["length"] for s in steps),
        "steps": steps,
    }
    return out


# --------------------------------------------------------------------------------------------------
# nashmp
# --------------------------------------------------------------------------------------------------


def run_nashmp(a: argparse.Namespace, algorithm: str, lora: bool) -> dict[str, Any]:
    import torch

    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.oracles import CallableOracle

    info = device_info()
    model, tok = build_model(a.arch, a.seed)
    n = matmul_params(model)
    meter = Meter(info["cuda"])

    class TimedTrainer(NashMPTrainer):
        def sample(self, views: Any, ids: Any, mask: Any) -> Any:
            with meter.sampling():
                out, out_mask, texts = super().sample(views, ids, mask)
            meter.sampled_tokens += int(out_mask.sum())
            lengths.append(float(out_mask.sum(-1).float().mean()))
            return out, out_mask, texts

    lengths: list[float] = []
    cfg = NashMPConfig(
        model_name_or_path=a.arch, algorithm=algorithm, use_peft=lora, per_device_train_batch_size=a.batch,
        num_generations=a.num_generations, max_new_tokens=a.max_new_tokens, temperature=1.0,
        mixed_precision="bf16" if a.bf16 else "no", max_steps=a.warmup + a.steps, learning_rate=1e-5,
        lr_scheduler_type="constant", output_dir=str(Path(a.workdir) / f"nashmp-{algorithm}-{int(lora)}"),
        overwrite_output_dir=True, progress_bar=False, num_threads=a.threads, seed=a.seed,
        use_cpu=not info["cuda"],
    )  # fmt: skip
    oracle = CallableOracle(lambda x, y1, y2: [0.5] * len(y1))
    trainer = TimedTrainer(cfg, model=model, tokenizer=tok, oracle=oracle, prompts=PROMPTS)
    counter = TokenCounter(model.config.vocab_size)
    steps = []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            meter.reset_peak()
        counter.reset()
        meter.sample_s, meter.sampled_tokens = 0.0, 0
        lengths.clear()
        meter.sync()
        t0 = time.perf_counter()
        trainer.training_step()
        meter.sync()
        row = meter.row(time.perf_counter() - t0, counter, n, lora, lengths)
        if i >= a.warmup:
            steps.append(row)
    counter.handle.remove()
    trainable = sum(p.numel() for p in trainer.params)
    del trainer
    if info["cuda"]:  # in-process runs: the next configuration's peak starts from an empty cache
        torch.cuda.empty_cache()
    return {"trainable_params": trainable, "matmul_params": n, "completions_per_step": a.batch * a.num_generations,
            "peak_memory_gb": meter.peak_gb(), **summarise(steps, a.peak_tflops)}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# TRL 1.0.0
# --------------------------------------------------------------------------------------------------


def import_trl(wheel: str | None) -> Any:
    """TRL 1.0.x from the environment or a carried wheel, patched for transformers 5.x."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if wheel:
        sys.path.insert(0, str(Path(wheel).resolve()))
    import trl

    if not trl.__version__.startswith("1.0."):
        raise RuntimeError(f"expected trl 1.0.x, imported {trl.__version__} from {trl.__file__}")
    from _trl_speed import patch_geometric_mixture

    patch_geometric_mixture()
    return trl


def run_trl(a: argparse.Namespace, lora: bool) -> dict[str, Any]:
    trl = import_trl(a.trl_wheel)
    import pyarrow as pa
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.judges import BasePairwiseJudge
    from trl.experimental.nash_md import NashMDConfig, NashMDTrainer

    info = device_info()
    model, tok = build_model(a.arch, a.seed)
    n = matmul_params(model)
    meter = Meter(info["cuda"])
    lengths: list[float] = []

    class ConstantJudge(BasePairwiseJudge):
        def judge(self, prompts: Any, completions: Any, shuffle_order: bool = True, return_scores: bool = False) -> Any:
            return [0.5] * len(prompts) if return_scores else [0] * len(prompts)

    class TimedNashMD(NashMDTrainer):  # type: ignore[misc]
        def _generate_completions(self, model: Any, prompts: Any) -> Any:
            with meter.sampling():
                out = super()._generate_completions(model, prompts)
            ctx = prompts["input_ids"].shape[1]
            for seqs in out:
                gen = (seqs[:, ctx:] != tok.pad_token_id).sum(-1)
                meter.sampled_tokens += int(gen.sum())
                lengths.append(float(gen.float().mean()))
            return out

    counter = TokenCounter(model.config.vocab_size)
    steps: list[dict[str, float]] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == a.warmup:
                meter.reset_peak()
            counter.reset()
            meter.sample_s, meter.sampled_tokens = 0.0, 0
            lengths.clear()
            meter.sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.sync()
            row = meter.row(time.perf_counter() - self.t0, counter, n, lora, lengths)
            if state.global_step > a.warmup:
                steps.append(row)

    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")  # fmt: skip
    cfg = NashMDConfig(
        output_dir=str(Path(a.workdir) / f"trl-{int(lora)}"), per_device_train_batch_size=a.batch,
        max_steps=a.warmup + a.steps, learning_rate=1e-5, lr_scheduler_type="constant", max_grad_norm=1.0,
        max_new_tokens=a.max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, beta=0.1, mixture_coef=0.5,
        use_cpu=not info["cuda"], bf16=a.bf16 and info["cuda"], report_to="none", save_strategy="no",
        logging_steps=1, dataloader_num_workers=0, disable_tqdm=True, seed=a.seed,
    )  # fmt: skip
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]  # fmt: skip
    ds = Dataset(pa.table({"prompt": texts}), fingerprint="llm_gpu_prompts")
    trainer = TimedNashMD(model=model, ref_model=None, judge=ConstantJudge(), args=cfg, train_dataset=ds,
                          processing_class=tok, peft_config=peft_config)  # fmt: skip
    trainer.add_callback(Clock())
    trainer.train()
    counter.handle.remove()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    del trainer
    if info["cuda"]:  # in-process runs: the next configuration's peak starts from an empty cache
        torch.cuda.empty_cache()
    return {"impl": f"trl {trl.__version__} NashMDTrainer", "trainable_params": trainable, "matmul_params": n,
            "completions_per_step": 2 * a.batch, "peak_memory_gb": meter.peak_gb(),
            **summarise(steps, a.peak_tflops)}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def run_config(a: argparse.Namespace, name: str) -> dict[str, Any]:
    """One configuration ``<arch>/<trainer>:<algorithm>/<lora|full>``; a failure is recorded, not raised."""
    arch, trainer, tuning = name.split("/")
    a = argparse.Namespace(**{**vars(a), "arch": arch})
    lora = tuning == "lora"
    t0 = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(a.threads)
        kind, algorithm = trainer.split(":")
        if kind == "nashmp":
            rec = run_nashmp(a, algorithm, lora)
        else:
            with warnings.catch_warnings():  # TRL 1.0.0 uses transformers 5.x's deprecated aliases: its warnings
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                rec = run_trl(a, lora)
        rec["status"] = "ok"
    except Exception as exc:  # recorded, so one broken configuration does not lose the others' numbers
        rec = {"status": f"failed: {type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-3000:]}
    return {"config": name, "arch": arch, "trainer": trainer, "lora": lora, "wall_s": time.perf_counter() - t0,
            **device_info(), **rec}  # fmt: skip


def configs(a: argparse.Namespace) -> list[str]:
    return [f"{arch}/{t}/{tuning}" for arch in a.archs.split(",") for t in a.trainers.split(",")
            for tuning in a.tuning.split(",")]  # fmt: skip


def report(records: list[dict[str, Any]], a: argparse.Namespace) -> str:
    def f(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    dev = records[0]["device"] if records else "?"
    lines = [f"# LLM trainer on {dev}: nashmp vs TRL 1.0.0 Nash-MD (random-weight models, bf16={a.bf16})", "",
             f"{a.batch} prompts per step, {a.max_new_tokens} new tokens, nashmp k = {a.num_generations} "
             f"completions per prompt (TRL: 1 policy + 1 mixture); median of {a.steps} steps after {a.warmup}.", "",
             "| arch | trainer | tuning | s/step | sampling s | gen tok/s | completions/s | peak GB | model TFLOP/s | MFU |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['arch']} | {r['trainer']} | {'lora' if r['lora'] else 'full'} | {r['status']} |||||||")
            continue
        cps = r["completions_per_step"] / r["seconds_per_step"]
        lines.append(
            f"| {r['arch']} | {r['trainer']} | {'lora' if r['lora'] else 'full'} | {r['seconds_per_step']:.3f} | "
            f"{r['sample_seconds_per_step']:.3f} | {f(r['generation_tokens_per_s'], '.0f')} | {cps:.1f} | "
            f"{r['peak_memory_gb']:.2f} | {r['model_tflops_per_s']:.3f} | {f(r['mfu'], '.1%')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="smollm2-135m,llama-1b", help=f"comma list of {sorted(ARCHS)}")
    ap.add_argument("--trainers", default=",".join(TRAINERS), help=f"comma list of {TRAINERS}")
    ap.add_argument("--tuning", default="lora,full", help="comma list of lora, full")
    ap.add_argument("--batch", type=int, default=8, help="prompts per optimiser step")
    ap.add_argument("--num-generations", type=int, default=4, help="nashmp completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="measured steps per configuration")
    ap.add_argument("--warmup", type=int, default=1, help="discarded steps per configuration")
    ap.add_argument("--bf16", type=int, default=1, help="1: bf16 mixed precision (GPU only for TRL)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="accelerator peak for MFU (default by name)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trl-wheel", default=None, help="import TRL 1.0.0 from this wheel instead of the environment")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke size: the tiny arch, 2 prompts, 4 tokens, 1 step")
    ap.add_argument("--in-process", action="store_true", help="run every configuration in this process")
    ap.add_argument("--workdir", default="/tmp/nashmp-llm-gpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_gpu"), help="output path stem")
    ap.add_argument("--_config", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.tiny:
        a.archs, a.batch, a.num_generations, a.max_new_tokens, a.steps, a.warmup = "tiny", 2, 2, 4, 1, 1
    unknown = set(a.archs.split(",")) - set(ARCHS) or set(a.trainers.split(",")) - set(TRAINERS)
    if unknown or set(a.tuning.split(",")) - {"lora", "full"}:
        raise SystemExit(f"unknown --archs/--trainers/--tuning value(s) {sorted(unknown) or a.tuning}")
    if a.peak_tflops is None:
        a.peak_tflops = default_peak_tflops(device_info()["device"])
    if a._config:  # a worker: one configuration, its record on the last stdout line
        print(json.dumps(run_config(a, a._config)))
        return []
    records = []
    for name in configs(a):
        if a.in_process:
            rec = run_config(a, name)
        else:
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--_config", name]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            last = done.stdout.strip().splitlines()[-1:] or ["{}"]
            try:
                rec = json.loads(last[0])
            except json.JSONDecodeError:
                rec = {"config": name, "status": f"worker crashed (rc {done.returncode}): {done.stderr[-400:]}"}
            rec.setdefault("arch", name.split("/")[0])
            rec.setdefault("trainer", name.split("/")[1])
            rec.setdefault("lora", name.endswith("/lora"))
        print(f"{name}: {rec['status'][:200]} {rec.get('seconds_per_step', '')}", flush=True)
        records.append(rec)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in vars(a).items() if not k.startswith("_")}
    out.with_suffix(".json").write_text(json.dumps({"args": meta, "records": records}, indent=1))
    out.with_suffix(".md").write_text(report(records, a))
    print(report(records, a))
    return records


if __name__ == "__main__":
    main()
