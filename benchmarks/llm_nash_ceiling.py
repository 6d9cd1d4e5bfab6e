r"""What the β-regularised Nash equilibrium itself wins against π_ref under the committee (SmolLM2-135M, CPU).

docs/llm-benchmarks.md §8 C, "The equilibrium's own win rate". The issue's target for the LLM trainer is a
win rate of 0.65 against π_ref; this measures what the trainer's *target*, π*_β, wins, so that a trainer
that converged could be told apart from one that did not learn::

    .venv/bin/python benchmarks/llm_nash_ceiling.py    # results in benchmarks/results/llm_nash_ceiling.{md,json}
    .venv/bin/python benchmarks/llm_nash_ceiling.py --max-new-tokens 96   # ..._tokens96.{md,json}

For each of ``--prompts`` held-out prompts, 2m completions of π_ref at the training settings (T = 0.7,
48 new tokens) and the committee's preference between every pair. The first m samples are the support
of a finite game: π_ref is uniform on them, and the exact layer solves its β-regularised Nash equilibrium
(:func:`nashmp.solve_equilibrium`, certified). Each policy on the support is then judged against the
other m samples, which it never saw (so the estimate is not inflated by selection):
``P(π ≻ π_ref) = Σ_a π(a) · mean_c P(y_a ≻ y'_c)``. Next to π*_β, for the same β:

* the KL-regularised best response to π_ref, :math:`\pi \propto \pi_{ref}\exp(P(y\succ\pi_{ref})/\beta)` —
  what reward maximisation (RLHF / online IPO against π_ref) converges to;
* best-of-m by self-play score (the yardstick of ``llm_signal.py``).

Limits: a policy here only re-weights π_ref's own samples (KL ≤ log m), whereas a trained policy can also
write new answers; at the small KLs the trainer reaches (≤ 1–2 nats) re-weighting is the first-order
picture. The preference is the committee's, an intransitive vote: its equilibrium need not beat π_ref by
much even when a best response does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
BETAS = (0.1, 0.05, 0.02, 0.01)


def sample_matrices(args: argparse.Namespace) -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    """Held-out prompts, π_ref's 2m completions of each, and the committee's (2m, 2m) preference matrices."""
    import torch

    from nashmp.llm.judges import make_oracle
    from nashmp.llm.models import load_model_and_tokenizer
    from nashmp.llm.prompts import default_prompts, prompt_text
    from nashmp.llm.sampling import encode_prompts, sample_completions
    from nashmp.online.estimators import pair_indices, pair_matrix

    torch.manual_seed(args.seed)
    model, tok = load_model_and_tokenizer("smollm2")
    model.eval()
    oracle = make_oracle(args.oracle)
    prompts = [prompt_text(x) for x in default_prompts("test")[: args.prompts]]
    rows = 2 * args.m
    texts: list[list[str]] = []
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(prompts), 2), desc="sampling π_ref"):
        chunk = prompts[start : start + 2]
        ids, mask = encode_prompts(tok, chunk)
        ids, mask = ids.repeat_interleave(rows, 0), mask.repeat_interleave(rows, 0)
        with torch.no_grad():
            out, out_mask, _ = sample_completions([(model, 1.0)], ids, mask, max_new_tokens=args.max_new_tokens,
                                                  temperature=0.7, eos_token_id=tok.eos_token_id,
                                                  pad_token_id=tok.pad_token_id)  # fmt: skip
        decoded = tok.batch_decode(out.masked_fill(out_mask == 0, tok.pad_token_id), skip_special_tokens=True)
        texts += [decoded[r * rows : (r + 1) * rows] for r in range(len(chunk))]
    mats = []
    i, j = pair_indices(rows)
    for x, ys in zip(prompts, texts, strict=True):
        p = oracle.probability([x] * len(i), [ys[a] for a in i.tolist()], [ys[c] for c in j.tolist()])
        mats.append(pair_matrix(torch.as_tensor(p)[None], rows)[0].numpy().astype(np.float64))
    return prompts, texts, mats


def policies(P: np.ndarray, beta: float) -> dict[str, np.ndarray]:
    """π*_β, the regularised best response to π_ref and best-of-m on a finite support (π_ref uniform)."""
    from scipy.special import softmax

    from nashmp import PreferenceGame, solve_equilibrium

    m = P.shape[0]
    ref = np.full(m, 1.0 / m)
    nash = solve_equilibrium(PreferenceGame(P, ref, beta=beta)).policy
    score = P @ ref  # P(y ≻ π_ref) on the support
    best = np.zeros(m)
    best[int(np.argmax(score))] = 1.0
    return {"nash": np.asarray(nash), "best_response": softmax(score / beta), "best_of_m": best}


def kl_to_uniform(pi: np.ndarray) -> float:
    nz = pi > 0
    return float(np.sum(pi[nz] * np.log(pi[nz] * len(pi))))


def evaluate(mats: list[np.ndarray], m: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for beta in BETAS:
        wins: dict[str, list[float]] = {}
        kls: dict[str, list[float]] = {}
        for full in mats:
            support, held_out = full[:m, :m], full[:m, m:]
            for name, pi in policies(support, beta).items():
                wins.setdefault(name, []).append(float(pi @ held_out.mean(1)))
                kls.setdefault(name, []).append(kl_to_uniform(pi))
        out[str(beta)] = {
            name: {"win_rate": float(np.mean(w)), "se": float(np.std(w) / np.sqrt(len(w))),
                   "kl": float(np.mean(kls[name]))}
            for name, w in wins.items()
        }  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oracle", default="committee")
    ap.add_argument("--prompts", type=int, default=24, help="held-out prompts")
    ap.add_argument("--m", type=int, default=8, help="support size (2m samples per prompt)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    prompts, texts, mats = sample_matrices(args)
    table = evaluate(mats, args.m)
    result = {"table": table, "oracle": args.oracle, "m": args.m, "max_new_tokens": args.max_new_tokens,
              "loadavg": os.getloadavg(), "wall_s": time.time() - start,
              "samples": [{"prompt": x, "completions": ys, "P": mat.round(6).tolist()}
                          for x, ys, mat in zip(prompts, texts, mats, strict=True)]}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "llm_nash_ceiling" + ("" if args.max_new_tokens == 48 else f"_tokens{args.max_new_tokens}")
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1))
    names = {"nash": "π*_β (Nash)", "best_response": "best response to π_ref", "best_of_m": f"best of {args.m}"}
    lines = [f"# What π*_β wins against π_ref ({args.oracle}, {args.prompts} held-out prompts, support {args.m}, "
             f"judged against {args.m} unseen samples of π_ref, {args.max_new_tokens} new tokens)", "",
             "| β | policy | P(π ≻ π_ref) | ± s.e. | KL(π‖π_ref) |", "|---:|---|---:|---:|---:|"]  # fmt: skip
    for beta, rows in table.items():
        for name, r in rows.items():
            if name == "best_of_m" and beta != str(BETAS[0]):
                continue  # the same for every β
            label = names[name]
            lines.append(f"| {beta if name != 'best_of_m' else '—'} | {label} | {r['win_rate']:.3f} | "
                         f"{r['se']:.3f} | {r['kl']:.2f} |")  # fmt: skip
    lines.append(f"\nwall {result['wall_s'] / 60:.1f} min, load average {result['loadavg'][0]:.2f}")
    (OUT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
