"""The report of ``benchmarks/llm_vs_trl.py``: tables (Markdown, CSV) and plots built from the saved JSON
(``llm_vs_trl.py --report-only`` runs only this)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from _trl_common import ROOT, SPEED_CONFIGS, mean_std


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
    from nashmp.llm.trainer_io import current_names

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
        hist = [current_names(h) for h in t.get("history", [])]  # cached results predate the namespaces
        sec = [h["charts/seconds"] for h in hist]
        last = hist[-5:]
        kl_train = mean_std([h["train/kl_ref"] for h in last])[0] if last else math.nan
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
    train_columns = ["step", "charts/queries", "losses/loss", "train/preference", "train/kl_ref", "train/kl_anchor",
                     "train/length", "charts/seconds"]  # fmt: skip
    train_rows = [
        [algo] + [current_names(h)[x] for x in train_columns]
        for algo, t in trains.items()
        for h in t.get("history", [])
    ]
    write_csv(f"llm_vs_trl{suffix}_train.csv", ["algorithm", *train_columns], train_rows)
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
        "samples (tempered, 95 % interval); *train KL*: the trainer's `train/kl_ref`, mean of the last 5 steps.\n"
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
