"""Shared pieces of ``benchmarks/llm_vs_trl.py``: paths, configuration names, the prompt split and the
per-process environment (offline Hugging Face, torch threads, peak RSS)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

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
