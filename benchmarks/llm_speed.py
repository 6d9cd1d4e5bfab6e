r"""LLM trainer speed, side by side in one run: this trainer vs the b6b7c61 trainer vs plain ``generate``.

One command (repository root)::

    .venv/bin/python benchmarks/llm_speed.py                     # ≈ 15 min on one loaded core
    .venv/bin/python benchmarks/llm_speed.py --rounds 1 --steps 2  # quicker

Every configuration runs in its **own subprocess** with 1 torch thread (peak RSS = that process's
``ru_maxrss``), on SmolLM2-135M-Instruct (nashmp's offline float32 folder), LoRA r = 16 on q/k/v/o (the
default), nash-mp with self-play, the same ``--batch`` prompts per step, ``--max-new-tokens``, temperature
0.7, and a constant oracle (P = ½: oracle cost is not what is measured). Rounds interleave the
configurations so that load changes hit all of them; ratios are taken within a round.

* ``b6b7c61``: the trainer at commit b6b7c61 (checked out with ``git worktree`` into ``--workdir``): one
  policy sample and one opponent sample per prompt, two generation calls, one completion per prompt in
  the gradient.
* ``new``: this trainer, ``num_generations = k`` completions per prompt in one generation call (LoRA
  merged while sampling), all B·k in the gradient.
* ``generate`` vs ``sampler``: plain ``model.generate`` of the LoRA-merged model (``do_sample``,
  ``top_k=0``, ``min_new_tokens = max_new_tokens``) against nashmp's sampler on the same B·k rows at the
  same fixed length (EOS never matches), alternating, in one process: tokens per second.

Metric: **training throughput** = completions that enter the gradient per second of a whole optimiser
step (sampling, oracle, scoring, backward, update), at the same prompts per step.
Outputs: ``benchmarks/results/llm_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OLD = "b6b7c61"


def _trainer_worker(args: argparse.Namespace) -> dict[str, object]:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import nashmp
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.oracles import CallableOracle

    fields = dict(max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch,
                  max_new_tokens=args.max_new_tokens, output_dir=str(Path(args.workdir) / f"run-{args.worker}"),
                  progress_bar=False, num_threads=1, opponent="self", seed=args.seed)  # fmt: skip
    if args.worker == "new":
        fields["num_generations"] = args.k
    trainer = NashMPTrainer(NashMPConfig(**fields), oracle=CallableOracle(lambda x, a, b: [0.5] * len(a)))
    rows = [trainer.training_step() for _ in range(args.warmup + args.steps)][args.warmup :]
    # the OLD worker runs the trainer of b6b7c61, which logged these three under their pre-namespace names
    old = {"seconds": "charts/seconds", "sample_seconds": "charts/sample_seconds", "length": "train/length"}
    rows = [{old.get(k, k): v for k, v in r.items()} for r in rows]
    seconds = np.array([r["charts/seconds"] for r in rows])
    per_step = args.batch * (args.k if args.worker == "new" else 1)
    return {
        "worker": args.worker,
        "code": str(Path(nashmp.__file__).parent),
        "seconds_per_step": float(seconds.mean()),
        "seconds_std": float(seconds.std(ddof=1)) if len(seconds) > 1 else 0.0,
        "sample_seconds": float(np.mean([r.get("charts/sample_seconds", float("nan")) for r in rows])),
        "completions_in_gradient_per_step": per_step,
        "throughput": per_step / float(seconds.mean()),
        "mean_length": float(np.mean([r["train/length"] for r in rows])),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _generate_worker(args: argparse.Namespace) -> dict[str, object]:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.prompts import default_prompts
    from nashmp.llm.sampling import sample_completions
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.oracles import CallableOracle

    cfg = NashMPConfig(max_steps=1, output_dir=str(Path(args.workdir) / "run-gen"), progress_bar=False, num_threads=1)
    trainer = NashMPTrainer(cfg, oracle=CallableOracle(lambda x, a, b: [0.5] * len(a)))
    with torch.no_grad():  # non-zero adapters, so the merge is real work
        for p in trainer.params:
            p.add_(0.01 * torch.randn_like(p))
    rows = args.batch * args.k
    ids, mask = trainer.encode_prompts([p for p in default_prompts("train")[: args.batch] for _ in range(args.k)])
    tok, T = trainer.tokenizer, args.max_new_tokens
    times: dict[str, list[float]] = {"generate": [], "sampler": []}
    for _ in range(args.gen_rounds):
        with trainer._weights_of("self") as view:
            model = trainer.raw_model
            start = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=0,
                                 top_p=1.0, max_new_tokens=T, min_new_tokens=T, pad_token_id=tok.pad_token_id)  # fmt: skip
            times["generate"].append(time.perf_counter() - start)
            assert out.shape[1] - ids.shape[1] == T
            start = time.perf_counter()
            y, _, _ = sample_completions([(view, 1.0)], ids, mask, max_new_tokens=T, temperature=0.7,
                                         eos_token_id=-1, pad_token_id=tok.pad_token_id)  # fmt: skip
            times["sampler"].append(time.perf_counter() - start)
            assert y.shape[1] == T
    tps = {k: rows * T / float(np.median(v)) for k, v in times.items()}
    return {"worker": "generate", "rows": rows, "tokens": T, "tokens_per_s": tps, "seconds": times,
            "sampler_vs_generate": tps["sampler"] / tps["generate"]}  # fmt: skip


def _run_worker(name: str, args: argparse.Namespace) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if name == OLD:
        tree = Path(args.workdir) / f"nashmp-{OLD}"
        if not tree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), OLD], check=True)
        env["PYTHONPATH"] = str(tree / "src")
    cmd = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4, help="prompts per optimiser step (both trainers)")
    ap.add_argument("--k", type=int, default=4, help="completions per prompt of the new trainer")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--steps", type=int, default=3, help="measured optimiser steps per configuration")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gen-rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/nashmp-llm-speed")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker = _generate_worker if args.worker == "generate" else _trainer_worker
        print(json.dumps(worker(args)))
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    rounds = []
    for r in range(args.rounds):
        got = {name: _run_worker(name, args) for name in (OLD, "new", "generate")}
        got["ratio_throughput"] = got["new"]["throughput"] / got[OLD]["throughput"]  # type: ignore[operator]
        rounds.append(got)
        print(f"round {r}: new/{OLD} throughput ×{got['ratio_throughput']:.2f}, "
              f"sampler/generate ×{got['generate']['sampler_vs_generate']:.2f}", flush=True)  # fmt: skip
    result = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "loadavg_start": load,
              "loadavg_end": os.getloadavg(), "rounds": rounds}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm_speed.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "llm_speed.md").write_text(report(result))
    print(report(result))


def report(result: dict) -> str:  # type: ignore[type-arg]
    a = result["args"]
    lines = [
        f"# LLM trainer speed (SmolLM2-135M, LoRA r=16, {a['batch']} prompts/step, {a['max_new_tokens']} new tokens, "
        f"1 thread; load average {result['loadavg_start'][0]:.2f} → {result['loadavg_end'][0]:.2f})",
        "",
        "| round | trainer | completions in gradient / step | s / step | of which sampling | completions / s "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rounds"]):
        for name in (OLD, "new"):
            w = r[name]
            lines.append(f"| {i} | {name} | {w['completions_in_gradient_per_step']} | {w['seconds_per_step']:.2f} ± "
                         f"{w['seconds_std']:.2f} | {w['sample_seconds']:.2f} | {w['throughput']:.3f} | "
                         f"{w['peak_rss_mb']:.0f} |")  # fmt: skip
        lines.append(f"| {i} | **new / {OLD}** | | | | **×{r['ratio_throughput']:.2f}** | |")
    lines += ["", "| round | rows × tokens | plain generate tok/s | nashmp sampler tok/s | sampler / generate |",
              "|---|---|---|---|---|"]  # fmt: skip
    for i, r in enumerate(result["rounds"]):
        g = r["generate"]
        lines.append(f"| {i} | {g['rows']} × {g['tokens']} | {g['tokens_per_s']['generate']:.1f} | "
                     f"{g['tokens_per_s']['sampler']:.1f} | ×{g['sampler_vs_generate']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
