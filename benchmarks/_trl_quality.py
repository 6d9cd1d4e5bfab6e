"""Part B of ``benchmarks/llm_vs_trl.py``: training nashmp's algorithms at equal preference queries and the
evaluation of the trained policies by judges other than the training oracle. Each runs in its own
subprocess, started by ``llm_vs_trl.py --_worker train:<algorithm>`` or ``--_worker eval:all``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _trl_common import QUALITY_ALGOS, prompt_split, setup_process

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
