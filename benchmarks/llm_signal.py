r"""How much preference signal a batch carries, and where one optimiser step puts it (SmolLM2-135M, CPU).

Two diagnostics behind docs/llm-benchmarks.md §8 C, one command::

    .venv/bin/python benchmarks/llm_signal.py            # both, results in benchmarks/results/llm_signal.{md,json}

* **Best-of-n ceiling.** For each of the first ``--prompts`` held-out prompts, 2n completions of π_ref at the
  training settings (T = 0.7, 48 new tokens); the winner of the first n by self-play score (mean preference
  against the other n − 1) is judged against the last n. ``P(Bo-n ≻ π_ref)`` is what a policy that spends
  KL(Bo-n‖π_ref) ≤ log n − (n − 1)/n nats perfectly would win: a yardstick for the trainer's win rates.
* **Where one step goes.** One batch of the trainer's default step (4 prompts × k = 4), its self-play
  advantages, then ``--steps`` Adam steps on that batch's policy-gradient loss (no KL terms, no warm-up) at
  ``--lr``: after each, the change of each sampled sequence's log-probability, its correlation with the
  advantages and its mean over winners and losers. A large, well-correlated change of the batch's own
  sequences with no held-out gain is an update that fits those sequences rather than the preference.
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


def best_of_n(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from nashmp.llm.judges import make_oracle
    from nashmp.llm.models import load_model_and_tokenizer
    from nashmp.llm.prompts import default_prompts
    from nashmp.llm.sampling import encode_prompts, sample_completions
    from nashmp.online.estimators import pair_indices, pair_matrix

    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer("smollm2")
    model.eval()
    oracle = make_oracle(args.oracle)
    prompts = default_prompts("test")[: args.prompts]
    n, rows = args.n, 2 * args.n
    texts: list[str] = []
    for start in range(0, len(prompts), 4):
        ids, mask = encode_prompts(tok, prompts[start : start + 4])
        ids, mask = ids.repeat_interleave(rows, 0), mask.repeat_interleave(rows, 0)
        out, out_mask, _ = sample_completions([(model, 1.0)], ids, mask, max_new_tokens=args.max_new_tokens,
                                              temperature=0.7, eos_token_id=tok.eos_token_id,
                                              pad_token_id=tok.pad_token_id)  # fmt: skip
        texts += tok.batch_decode(out.masked_fill(out_mask == 0, tok.pad_token_id), skip_special_tokens=True)
    wins: dict[int, list[float]] = {m: [] for m in range(1, n + 1)}
    for r, x in enumerate(prompts):
        ys = texts[r * rows : (r + 1) * rows]
        i, j = pair_indices(rows)
        p = oracle.probability([x] * len(i), [ys[a] for a in i.tolist()], [ys[c] for c in j.tolist()])
        m = pair_matrix(torch.as_tensor(p)[None], rows)[0].numpy()  # P(y_a ≻ y_c), ½ on the diagonal
        for size in wins:  # the best of the first `size` samples, judged against the last n
            score = m[:size, :size].mean(1)
            wins[size].append(float(m[int(np.argmax(score)), n:].mean()))
    return {str(size): {"win_rate": float(np.mean(w)), "se": float(np.std(w) / np.sqrt(len(w))),
                        "kl_bound": float(np.log(size) - (size - 1) / size)}
            for size, w in wins.items()}  # fmt: skip


def one_step(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.online.estimators import selfplay_advantages, token_pg_loss

    cfg = NashMPConfig(output_dir="/tmp/nashmp-llm-signal", overwrite_output_dir=True, progress_bar=False,
                       learning_rate=args.lr, warmup_ratio=0.0, max_new_tokens=args.max_new_tokens,
                       oracle=args.oracle)  # fmt: skip
    trainer = NashMPTrainer(cfg)
    k, prompts = cfg.num_generations, trainer._batch_prompts(0)
    ids, mask = trainer.encode_prompts(prompts)
    ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    y, y_mask, texts = trainer._sample_from("self", ids, mask)
    p, _, _ = trainer.selfplay_preferences(prompts, texts)  # the trainer's own queries and advantages
    advantage = selfplay_advantages(p, k).reshape(-1)

    def seq_logp() -> np.ndarray:
        with torch.no_grad():
            return trainer._token_logp(trainer.model, ids, mask, y, y_mask).sum(-1).numpy()

    before, a = seq_logp(), advantage.numpy()
    rows = []
    for step in range(args.steps):
        trainer.model.eval()
        loss = token_pg_loss(trainer._token_logp(trainer.model, ids, mask, y, y_mask), y_mask, advantage, [])
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        d = seq_logp() - before
        rows.append({"step": step + 1, "corr": float(np.corrcoef(d, a)[0, 1]), "mean_abs": float(np.abs(d).mean()),
                     "winners": float(d[a > 0].mean()), "losers": float(d[a < 0].mean())})  # fmt: skip
    return {"lr": args.lr, "advantage_std": float(a.std()), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oracle", default="committee")
    ap.add_argument("--prompts", type=int, default=24, help="best-of-n: held-out prompts")
    ap.add_argument("--n", type=int, default=4, help="best-of-n: the largest n")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3, help="one-step: Adam learning rate")
    ap.add_argument("--steps", type=int, default=3, help="one-step: Adam steps on the same batch")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    start = time.time()
    result = {"best_of_n": best_of_n(args), "one_step": one_step(args), "oracle": args.oracle,
              "max_new_tokens": args.max_new_tokens, "loadavg": os.getloadavg(), "wall_s": 0.0}  # fmt: skip
    result["wall_s"] = time.time() - start
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "llm_signal.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Preference signal of π_ref's samples ({args.oracle}, {args.max_new_tokens} new tokens)", "",
             "| best of n | P(Bo-n ≻ π_ref) | ± s.e. | KL(Bo-n‖π_ref) ≤ |", "|---:|---:|---:|---:|"]  # fmt: skip
    for size, r in result["best_of_n"].items():  # type: ignore[union-attr]
        lines.append(f"| {size} | {r['win_rate']:.3f} | {r['se']:.3f} | {r['kl_bound']:.3f} |")
    one = result["one_step"]
    lines += ["", f"One batch (4 prompts × 4), Adam lr {one['lr']:g} on its PG loss "  # type: ignore[index]
              f"(advantage std {one['advantage_std']:.3f}):", "",  # type: ignore[index]
              "| Adam steps | corr(Δ log π(y), A) | mean abs Δ (nats) | winners Δ | losers Δ |",
              "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in one["rows"]:  # type: ignore[index]
        lines.append(
            f"| {r['step']} | {r['corr']:.3f} | {r['mean_abs']:.2f} | {r['winners']:+.2f} | {r['losers']:+.2f} |"
        )
    lines.append(f"\nwall {result['wall_s'] / 60:.1f} min, load average {result['loadavg'][0]:.2f}")
    (OUT / "llm_signal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
