r"""How many prompts one step needs before its policy gradient points somewhere: gradient signal-to-noise.

At step 0 of the trainer (π_θ = π_ref = the anchor, so every KL term and its gradient vanish), the gradient
of one prompt's self-play loss, :math:`g_x = -\nabla_\theta \tfrac1k\sum_i A_i\log\pi_\theta(y_i|x)` over its k
completions (leave-one-out advantages, the trainer's own ``token_pg_loss``), is an unbiased estimate of the
step the preference asks for, :math:`\mu = \mathbb E_x g_x`. Over N prompts (trainer order, the LoRA
parameters it trains):

* :math:`\operatorname{tr}\Sigma = \tfrac1{N-1}\sum_x\lVert g_x-\bar g\rVert^2`, the noise of one prompt;
* :math:`\lVert\mu\rVert^2 \approx \lVert\bar g\rVert^2 - \operatorname{tr}\Sigma/N` (unbiased), the signal;
* **prompts per step for signal = noise**: :math:`n^* = \operatorname{tr}\Sigma/\lVert\mu\rVert^2`. A step of
  B prompts has :math:`\mathbb E\lVert\hat g-\mu\rVert^2/\lVert\mu\rVert^2 = n^*/B`: with B ≪ n* the step is
  almost all noise, whatever the learning rate;
* the cosine between the mean gradients of the even and the odd prompts (two independent halves): near 0 when
  N/2 prompts do not yet agree on a direction, near 1 when they do;
* per coordinate (what Adam's per-weight step sees): the median over weights of
  :math:`\sigma_i^2/\bar g_i^2`, prompts needed before a weight's mean gradient exceeds its noise.

Run for the committee at the training settings and, as a contrast, for the learnable ``starts-with:The``
preference of docs/llm-benchmarks.md §8 D (8 new tokens), which the trainer learns in 480 queries::

    .venv/bin/python benchmarks/llm_grad_snr.py      # results in benchmarks/results/llm_grad_snr.{md,json}
    .venv/bin/python benchmarks/llm_grad_snr.py --settings committee-96 --prompts 64   # adds (replaces) one row
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import command_line

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SETTINGS = {  # name → NashMPConfig fields: the training oracle and its completion length
    "committee": {"oracle": "committee", "max_new_tokens": 48},
    "starts-with": {"oracle": "starts-with:The", "max_new_tokens": 8},
    "committee-96": {"oracle": "committee", "max_new_tokens": 96},  # answers can end (§8 B, 96 new tokens)
}


class GradientMoments:
    """Running sums of per-prompt gradients; :meth:`summary` gives the statistics of the module docstring."""

    def __init__(self, size: int) -> None:
        import torch

        self.n, self.total_sq = 0, 0.0
        self.sum = torch.zeros(size, dtype=torch.float64)
        self.sum_sq = torch.zeros_like(self.sum)  # per weight
        self.halves = [torch.zeros_like(self.sum), torch.zeros_like(self.sum)]  # even and odd prompts

    def add(self, g: Any) -> None:
        g = g.double()
        self.sum += g
        self.sum_sq += g * g
        self.halves[self.n % 2] += g
        self.total_sq += float(g @ g)
        self.n += 1

    def summary(self) -> dict[str, float]:
        n, mean = self.n, self.sum / self.n
        mean_sq = float(mean @ mean)
        trace = (self.total_sq - n * mean_sq) / (n - 1)  # tr Σ, one prompt's noise
        signal = mean_sq - trace / n  # unbiased estimate of ‖μ‖²
        var = (self.sum_sq - n * mean * mean) / (n - 1)
        live = var > 0  # weights with any gradient (LoRA's A matrices have none while B = 0)
        per_weight = (var[live] / (mean[live] ** 2).clamp_min(1e-300)).numpy()
        a, b = self.halves
        return {
            "prompts": n,
            "weights": int(mean.numel()),
            "weights_with_gradient": int(live.sum()),
            "noise_trace": trace,
            "signal_sq": signal,
            "mean_grad_sq": mean_sq,
            "prompts_for_snr1": trace / signal if signal > 0 else float("inf"),
            "split_half_cosine": float(a @ b / (a.norm() * b.norm())),
            "per_weight_prompts_for_snr1_median": float(np.median(per_weight)),
            # |mean| > 2 s.e. at n prompts: about 0.05 where there is no signal at all
            "per_weight_share_significant": float((per_weight < n / 4).mean()),
        }


def gradient_snr(name: str, prompts: int, seed: int) -> dict[str, object]:
    import torch

    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.online.estimators import selfplay_advantages, token_pg_loss

    t0 = time.time()
    cfg = NashMPConfig(output_dir=f"/tmp/nashmp-llm-grad-snr-{name}", overwrite_output_dir=True, progress_bar=False,
                       seed=seed, **SETTINGS[name])  # type: ignore[arg-type]  # fmt: skip
    trainer = NashMPTrainer(cfg)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    k, per = cfg.num_generations, cfg.per_device_train_batch_size
    moments, adv_std = GradientMoments(sum(p.numel() for p in params)), []
    for step in range(-(-prompts // per)):
        batch = trainer._batch_prompts(step)
        ids, mask = trainer.encode_prompts(batch)
        ids, mask = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        y, y_mask, texts = trainer._sample_from("self", ids, mask)
        p, _, _ = trainer.selfplay_preferences(batch, texts)
        advantage = selfplay_advantages(p, k).reshape(-1)
        adv_std.append(float(advantage.std()))
        trainer.model.eval()  # scored as sampled (no dropout)
        logp = trainer._token_logp(trainer.model, ids, mask, y, y_mask)
        for j in range(len(batch)):
            rows = slice(j * k, (j + 1) * k)
            loss = token_pg_loss(logp[rows], y_mask[rows], advantage[rows])
            grads = torch.autograd.grad(loss, params, retain_graph=j < len(batch) - 1)
            moments.add(torch.cat([x.reshape(-1) for x in grads]))
        print(f"  [{name}] {moments.n} prompts, {time.time() - t0:.0f} s", flush=True)
    return {
        "setting": name,
        **SETTINGS[name],
        "completions_per_prompt": k,
        **moments.summary(),
        "advantage_std": float(np.mean(adv_std)),
        "wall_s": time.time() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {list(SETTINGS)}")
    ap.add_argument("--prompts", type=int, default=128, help="training prompts (a multiple of the batch, 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true", help="rebuild the markdown from the JSON file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    path = OUT / "llm_grad_snr.json"
    previous = json.loads(path.read_text()) if path.exists() else {"rows": [], "commands": []}
    rows = {r["setting"]: r for r in previous["rows"]}  # a run replaces the rows of the settings it measured
    for name in [] if args.report_only else args.settings.split(","):
        rows[name] = {**gradient_snr(name, args.prompts, args.seed), "loadavg": os.getloadavg()}
    rows = {name: rows[name] for name in SETTINGS if name in rows}
    commands = previous.get("commands", []) + ([] if args.report_only else [command_line()])
    result = {"rows": list(rows.values()), "commands": commands}
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    lines = ["# Gradient signal-to-noise of one prompt's self-play step at π_ref (SmolLM2-135M, LoRA defaults)", "",
             "| oracle | new tokens | prompts | advantage std | signal ‖μ‖² | noise tr Σ (one prompt) | prompts per step "
             "for SNR 1 | split-half cosine | per weight: median prompts for SNR 1 | weights with |mean| > 2 s.e. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(
            f"| {r['oracle']} | {r['max_new_tokens']} | {r['prompts']} | {r['advantage_std']:.3f} | "
            f"{r['signal_sq']:.3g} | {r['noise_trace']:.3g} | {r['prompts_for_snr1']:.3g} | "
            f"{r['split_half_cosine']:.3f} | {r['per_weight_prompts_for_snr1_median']:.3g} | "
            f"{r['per_weight_share_significant']:.3f} |"
        )
    lines.append("\nk = 4 completions per prompt. Load average and wall per row: " + "; ".join(
        f"{r['setting']} {r['loadavg'][0]:.2f}, {r['wall_s'] / 60:.1f} min" for r in result["rows"]) + ".")  # fmt: skip
    lines.append("Commands: " + "; ".join(f"`{c}`" for c in result["commands"]) + ".")
    (OUT / "llm_grad_snr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
