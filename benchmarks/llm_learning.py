r"""Learning at equal preference queries: Nash-MP, Nash Prox, Nash-MD and online IPO on SmolLM2-135M.

One command (repository root); every finished run is cached under ``benchmarks/results/llm_learning/``
(commit it as it lands) and skipped when the command is run again — if the run-defining settings it
recorded match today's defaults; a run trained under other defaults is reported and left out — so the
table can grow over sessions::

    .venv/bin/python benchmarks/llm_learning.py --workers 2                  # train what is missing, evaluate
    .venv/bin/python benchmarks/llm_learning.py --algos nash-mp --queries 600 # one algorithm, smaller budget
    .venv/bin/python benchmarks/llm_learning.py --sweep lr=5e-4,2e-3         # a defaults sweep (nash-mp)
    # the same four algorithms on a preference learnable within a CPU budget (answers opening with "The")
    .venv/bin/python benchmarks/llm_learning.py --suite starts-with --queries 480 \
        --set oracle=starts-with:The,max_new_tokens=8

Protocol. ``NashMPConfig`` defaults (LoRA r = 16 on q/k/v/o, ``num_generations`` = 4, ...) except the
algorithm, trained against the default training oracle (``committee``) on the ``train`` split of the
default prompt set, 1 torch thread per process. **Equal preference queries**: each algorithm takes
``ceil(queries / queries_per_step)`` steps (self-play recipes compare k(k−1)/2 pairs per prompt, Nash-MD k).
During training the held-out win rate against π_ref is logged every ``--eval-steps`` steps on 16 ``test``
prompts (training oracle and MiniLM embedding judge). Final evaluation
(:func:`nashmp.llm.evaluate.win_rate_matrix`): every policy and π_ref on the 43 ``test`` prompts, 2 samples
per prompt at T = 0.7, judged by the training oracle and by the MiniLM ``EmbeddingJudge`` (a judge different
from the training oracle), 95 % intervals over prompts, and each policy's KL(π‖π_ref) on its samples.

Outputs: ``benchmarks/results/llm_learning/{<run>.csv,<run>.json}`` (per run), ``llm_learning[_<suite>].{md,json}``
and ``docs/img/llm/llm_learning_curves[_<suite>].png``. The final evaluation judges with the runs' own
training oracle (``--set oracle=...``) and the MiniLM judge, at the runs' ``max_new_tokens``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "llm_learning"
IMG = ROOT / "docs" / "img" / "llm"


def run_defining(config: dict[str, object]) -> dict[str, object]:
    """The settings that define a run (a cached run is reused only if they match the current defaults)."""
    from nashmp.llm.trainer_io import RESUME_LOCKED

    return {k: config[k] for k in (*RESUME_LOCKED, "max_steps", "warmup_steps", "warmup_ratio") if k in config}


def steps_for(algo: str, overrides: dict[str, object], queries: int) -> int:
    """Optimiser steps that spend ``queries`` preference queries (self-play: k(k−1)/2 per prompt, else k)."""
    from nashmp.llm.config import NashMPConfig

    probe = NashMPConfig(algorithm=algo, **overrides)  # type: ignore[arg-type]
    k = probe.num_generations
    per_prompt = k * (k - 1) // 2 if probe.recipe.opponent_at(probe, 0) == "self" else k
    return math.ceil(queries / (per_prompt * probe.per_device_train_batch_size * probe.gradient_accumulation_steps))


def run_name(algo: str, queries: int, overrides: dict[str, str]) -> str:
    """``<algo>_q<queries>[_<field>=<value>...]``; a file path (``dataset=...``) is named by its stem.

    >>> run_name("nash-mp", 3000, {"dataset": "benchmarks/data/prompts_train_large.jsonl", "eval_dataset": "default"})
    'nash-mp_q3000_dataset=prompts_train_large_eval_dataset=default'
    """
    extra = "".join(f"_{k}={Path(v).stem if '/' in v else v}" for k, v in sorted(overrides.items()))
    return f"{algo}_q{queries}{extra}"


def train_worker(args: argparse.Namespace) -> None:
    """One training run (in its own process); writes the per-run CSV and JSON when it finishes."""
    import torch

    torch.set_num_threads(1)
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.llm.trainer_io import latest_checkpoint

    overrides = json.loads(args.overrides)
    steps = steps_for(args.algo, overrides, args.queries)
    work = Path(args.workdir) / args.name
    # a run killed before its first checkpoint starts again from scratch (its partial log is dropped)
    resume = latest_checkpoint(work) is not None
    for old in work.glob("checkpoint-*/custom_checkpoint_*.pkl"):  # this harness's own runs, written by an
        old.unlink()  # older nashmp: the trainer refuses the pickle and replays the schedule without it
    cfg = NashMPConfig(algorithm=args.algo, max_steps=steps, output_dir=str(work), num_threads=1,
                       eval_steps=args.eval_steps, eval_judge="embedding", progress_bar=False,
                       save_steps=max(1, steps // 4), **overrides,
                       resume_from_checkpoint="latest" if resume else None, overwrite_output_dir=not resume)  # fmt: skip
    start = time.time()
    trainer = NashMPTrainer(cfg)
    trainer.train()
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "log.csv", OUT / f"{args.name}.csv")
    last = trainer.history[-1]
    summary = {"name": args.name, "algorithm": args.algo, "overrides": overrides, "steps": steps,
               "queries": int(last["charts/queries"]), "completions": int(last["charts/completions"]),
               "wall_s": time.time() - start, "loadavg": os.getloadavg(), "final": str(work / "final"),
               # a resumed run's wall_s covers this process only; the steps' own seconds cover the whole run
               "step_s": sum(float(r.get("charts/seconds") or 0.0) for r in trainer.history),
               "config": run_defining(cfg.to_dict())}  # fmt: skip
    (OUT / f"{args.name}.json").write_text(json.dumps(summary, indent=1))


def parse_set(text: str) -> dict[str, str]:
    """``field=value,...`` (a value may hold commas only inside a ``committee:`` criteria list: use ``;``)."""
    return {k: v.replace(";", ",") for k, v in (kv.split("=", 1) for kv in text.split(",") if kv)}


def typed_overrides(overrides: dict[str, str]) -> dict[str, object]:
    from nashmp._fields import coerce_fields
    from nashmp.llm.config import NashMPConfig

    return coerce_fields(NashMPConfig, overrides)


def run_oracle(args: argparse.Namespace) -> str:
    return str(parse_set(args.set).get("oracle", "committee"))


def evaluate(names: list[str], args: argparse.Namespace) -> dict[str, object]:
    import torch

    torch.set_num_threads(1)
    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.evaluate import load_policy, win_rate_matrices
    from nashmp.llm.judges import make_oracle
    from nashmp.llm.prompts import default_prompts

    prompts = default_prompts("test")
    policies = {"ref": load_policy("ref")}
    for n in names:
        policies[n] = load_policy(json.loads((OUT / f"{n}.json").read_text())["final"])
    run = NashMPConfig(**typed_overrides(parse_set(args.set)))  # the runs' oracle and completion length
    judges = {name: make_oracle(name) for name in (run.oracle, "embedding")}
    results = win_rate_matrices(
        policies, prompts, judges, samples_per_prompt=args.eval_samples, seed=1, reference="ref",
        max_new_tokens=run.max_new_tokens, system_prompt=run.system_prompt,
    )  # fmt: skip
    if args.train_eval_prompts:  # the same policies on prompts they trained on: learned, or learned to generalise?
        seen = default_prompts("train")[: args.train_eval_prompts]
        train = win_rate_matrices(
            policies, seen, {run.oracle: judges[run.oracle]}, samples_per_prompt=args.eval_samples, seed=1,
            reference="ref", max_new_tokens=run.max_new_tokens, system_prompt=run.system_prompt,
        )  # fmt: skip
        results[f"{run.oracle}, training prompts"] = train[run.oracle]
    result: dict[str, object] = {}
    for judge_name, res in results.items():  # one generation, judged twice
        result[judge_name] = {"markdown": res.to_markdown(), "names": res.names,
                              "win_rate": res.win_rate.tolist(), "ci_low": res.ci_low.tolist(),
                              "ci_high": res.ci_high.tolist(), "kl_ref": [float(x) for x in res.kl_ref]}  # fmt: skip
    return result


def plot(names: list[str], suite: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nashmp.llm.trainer_io import read_log

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    for n in names:
        rows = read_log(OUT / f"{n}.csv")  # the cached runs were logged under the pre-namespace names
        for ax, key in zip(axes, ("eval/win_rate", "eval/win_rate_judge", "train/kl_ref"), strict=True):
            pts = [(float(r["charts/queries"]), float(r[key])) for r in rows if r.get(key)]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-" if key != "train/kl_ref" else "-", ms=3, lw=1.2, label=n)
    titles = ("held-out win rate vs π_ref (training oracle)", "… (MiniLM judge)", "KL(π‖π_ref)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("preference queries")
        ax.grid(True, alpha=0.3)
    for ax in axes[:2]:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=7)
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / ("llm_learning_curves" + (f"_{suite}" if suite else "") + ".png"), dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--algos", default="nash-mp,nash-prox,nash-md,online-ipo")
    ap.add_argument("--queries", type=int, default=1200, help="preference queries per run")
    ap.add_argument("--eval-steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eval-samples", type=int, default=4, help="final evaluation: samples per test prompt")
    ap.add_argument(
        "--train-eval-prompts",
        type=int,
        default=43,
        help="final evaluation also on the first N training prompts, training oracle (0: off)",
    )
    ap.add_argument("--sweep", default="", help="field=v1,v2 (nash-mp runs with each value)")
    ap.add_argument("--set", default="", help="field=value,... applied to every run")
    ap.add_argument("--no-eval", action="store_true", help="train only (no final evaluation)")
    ap.add_argument("--workdir", default="/tmp/nashmp-llm-learning")
    ap.add_argument("--suite", default="", help="name of this table: results go to llm_learning[_<suite>].{md,json}")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--algo", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        train_worker(args)
        return
    common = parse_set(args.set)
    jobs = []
    if args.sweep:
        field, values = args.sweep.split("=", 1)
        jobs = [("nash-mp", {**common, field: v}) for v in values.split(",")]
    else:
        jobs = [(a, dict(common)) for a in args.algos.split(",")]

    def expected_config(algo: str, overrides: dict[str, str]) -> dict[str, object]:
        from nashmp.llm.config import NashMPConfig

        typed = typed_overrides(overrides)
        steps = steps_for(algo, typed, args.queries)
        return run_defining(NashMPConfig(algorithm=algo, max_steps=steps, **typed).to_dict())  # type: ignore[arg-type]

    def launch(job: tuple[str, dict[str, str]]) -> str:
        algo, overrides = job
        name = run_name(algo, args.queries, overrides)
        if (OUT / f"{name}.json").exists():
            saved = json.loads((OUT / f"{name}.json").read_text()).get("config")
            if saved == expected_config(algo, overrides):
                print(f"{name}: cached", flush=True)
                return name
            # trained with other defaults (or before configs were recorded): never mixed into a new table
            print(f"{name}: cached under other defaults; move {OUT / name}.* away to re-run it", flush=True)
            return ""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, __file__, "--worker", "--algo", algo, "--name", name, "--queries", str(args.queries),
               "--eval-steps", str(args.eval_steps), "--workdir", args.workdir,
               "--overrides", json.dumps(typed_overrides(overrides))]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-2000:]}", flush=True)
        else:
            print(f"{name}: done", flush=True)
        return name

    with ThreadPoolExecutor(args.workers) as pool:
        names = [n for n in pool.map(launch, jobs) if n and (OUT / f"{n}.json").exists()]
    if not names:
        return
    plot(names, args.suite)
    if args.no_eval:
        return
    result = evaluate(names, args)
    summaries = {n: json.loads((OUT / f"{n}.json").read_text()) for n in names}
    stem = "llm_learning" + (f"_{args.suite}" if args.suite else "")
    (ROOT / "benchmarks" / "results" / f"{stem}.json").write_text(
        json.dumps({"runs": summaries, "eval": result}, indent=1)
    )
    lines = [f"# Learning at equal preference queries (SmolLM2-135M, LoRA, training oracle {run_oracle(args)})", ""]
    for n, s in summaries.items():
        steps_min = f" ({s['step_s'] / 60:.1f} min in its steps, resumes included)" if "step_s" in s else ""
        lines.append(f"- {n}: {s['steps']} steps, {s['queries']} queries, {s['completions']} completions, "
                     f"{s['wall_s'] / 60:.1f} min{steps_min}")  # fmt: skip
    for judge_name, r in result.items():
        lines += ["", f"## Judge: {judge_name}", "", str(r["markdown"])]  # type: ignore[index]
    (ROOT / "benchmarks" / "results" / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
