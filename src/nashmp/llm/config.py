"""``NashMPConfig``: every hyper-parameter of an LLM run, validated before any model is loaded."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._fields import coerce_fields
from ..errors import InvalidParameterError
from ..games.game import check_positive, check_positive_int
from ..online.recipes import ALIASES, RECIPES, Recipe
from ..online.recipes import OPPONENTS as _OPPONENTS

__all__ = ["NashMPConfig", "LLM_ALGORITHMS", "LR_SCHEDULERS", "OPPONENTS"]

#: algorithm → what one optimiser step does (the recipes of :mod:`nashmp.online`, shared with the approx layer)
LLM_ALGORITHMS = {name: recipe.summary for name, recipe in RECIPES.items()}
OPPONENTS = tuple(_OPPONENTS)
#: transformers schedules that need no argument beyond the warm-up and the number of steps
LR_SCHEDULERS = ("constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "inverse_sqrt")  # fmt: skip
#: ``report_to`` values: accelerate's trackers, plus ``none``/``csv`` (the CSV log is always written)
TRACKERS = ("none", "csv", "all", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive",
            "swanlab", "trackio")  # fmt: skip


@dataclass
class NashMPConfig:
    """Configuration of :class:`~nashmp.llm.NashMPTrainer` (every field is a ``nashmp train --field`` flag).

    Defaults fit the offline SmolLM2-135M-Instruct with LoRA on a 2-core CPU (docs/llm.md, "Defaults").
    """

    # ---------------------------------------------------------------- model and data
    model_name_or_path: str = "smollm2"
    """Local HF model folder, a hub id already in the local cache, or ``smollm2`` (offline default)."""
    dataset: str = "default"
    """``default`` (nashmp's prompt set), a .jsonl/.json/.txt file, or a ``datasets`` name/folder."""
    prompt_column: str = "prompt"
    """Column (or JSON key) holding the prompt text."""
    dataset_split: str = "train"
    """Split to train on (the default set has ``train``/``test``/``all``; evaluation uses ``test``)."""
    system_prompt: str | None = None
    """A system turn prepended (through the chat template) to every prompt that has none; None: the
    template's own default."""
    max_prompt_length: int = 128
    """Prompts are left-truncated to this many tokens (after the chat template)."""
    max_new_tokens: int = 48
    """Completion budget per sample, in tokens (EOS included)."""
    temperature: float = 0.7
    """Sampling temperature; log-probabilities of π_θ, π_ref and the anchors use the same T, so the
    trained and regularised objects are the tempered policies (no importance correction needed)."""
    dtype: str = "float32"
    """Weights' dtype: ``float32``, ``bfloat16`` or ``float16``. For mixed precision keep ``float32`` (master
    weights, AdamW state, the EMA anchor and snapshots then stay fp32) and set ``mixed_precision``."""
    attn_implementation: str | None = None
    """transformers attention kernel (``eager``, ``sdpa``, ``flash_attention_2``, ...); None: transformers' choice."""
    trust_remote_code: bool = False
    """Allow a model folder's own Python code to run when it is loaded (off: only transformers' own classes)."""

    # ---------------------------------------------------------------- algorithm
    algorithm: str = "nash-mp"
    """The online recipe of :mod:`nashmp.online` that one optimiser step runs."""
    opponent: str = "self"
    """nash-mp's opponent: ``self`` (a second sample of π_θ), ``ema`` (the anchor) or ``half`` (a frozen
    snapshot of π_θ refreshed every ``half_every`` steps)."""
    beta: float = 0.1
    """β, weight of KL(π‖π_ref)."""
    eta: float | None = 1.0
    """Nash-MP step η: the prox (anchor) KL has weight β/η. 1.0 (weight β) from the sweep in
    docs/llm-benchmarks.md §8 D: with η = 2β (weight ½) Nash-MP barely left π_ref in 20 steps. None → 2β
    (the exact algorithm's default)."""
    ema: float = 0.05
    """κ: anchor θ̄ ← (1−κ) θ̄ + κ θ after every step (nash-mp)."""
    half_every: int = 10
    """nash-mp with ``opponent=half``: steps between refreshes of the frozen half copy."""
    prox_every: int = 20
    """K of ``nash-prox``: the proximal centre is reset to θ every K steps (a proximal-point outer loop)."""
    inner_steps: int = 4
    """M, optimiser steps per proximal sub-problem of ``nash-mp-faithful`` (one outer iteration = 2M steps)."""
    kl_estimator: str = "sampled"
    """How the PG loss credits the KL terms per token: ``sampled`` (the sampled log-ratios as rewards-to-go)
    or ``analytic`` (exact next-token KLs over the vocabulary: pathwise at the token, rewards-to-go after it;
    less variance, one (B·k, T, V) tensor per scored model). Both unbiased (tests/test_online.py)."""
    mixture_coef: float = 0.5
    """c of Nash-MD's geometric mixture π_θ^{1−c} π_ref^c (TRL's default 0.5)."""
    oracle: str = "committee"
    """Training preference oracle: ``committee`` (offline criteria), ``lm-judge`` (the base model as a
    debiased pairwise judge), ``http:<base_url>`` (an OpenAI-compatible server) or ``starts-with:<text>``
    (answers opening with the text win: a preference learnable in minutes, for demos)."""

    # ---------------------------------------------------------------- optimisation
    learning_rate: float = 1e-3
    """AdamW peak step size (reached after the warm-up, then shaped by ``lr_scheduler_type``). 1e-3 from the
    LoRA sweep in docs/llm.md "Defaults" (3e-4 barely moved SmolLM2; 3e-3 moved it 6 nats of KL in 10 steps
    without a better win rate)."""
    lr_scheduler_type: str = "constant_with_warmup"
    """transformers learning-rate schedule (``constant_with_warmup``, ``linear``, ``cosine``, ``constant``, ...)."""
    warmup_steps: int = 0
    """Linear warm-up steps from 0 to ``learning_rate`` (0: use ``warmup_ratio``)."""
    warmup_ratio: float = 0.1
    """Warm-up as a fraction of ``max_steps`` when ``warmup_steps`` is 0. Adam's first steps are sign steps
    of size ``learning_rate`` on every LoRA weight whatever the gradient's signal, so without a warm-up the
    first two steps of a noisy policy gradient spend ~0.6 nats of KL on noise (docs/llm-benchmarks.md §8)."""
    per_device_train_batch_size: int = 4
    """Prompts per process and step."""
    num_generations: int = 4
    """k, completions per prompt, all in the gradient. Self-play recipes compare all k(k−1)/2 pairs of a
    prompt (k ≥ 2); recipes with another opponent draw k opponent completions and compare k pairs."""
    max_steps: int = 50
    """Optimiser steps of the run."""
    gradient_accumulation_steps: int = 1
    """Micro-batches of ``per_device_train_batch_size`` prompts per optimiser step (gradients averaged); queries,
    completions and metrics are counted per optimiser step."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (transformers' gradient checkpointing, non-reentrant): less
    memory, about one more forward pass. The policy is then scored on whole sequences (a cached prompt
    would be dropped by the checkpointed layers)."""
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16``: accelerate's autocast around sampling and scoring, weights stay in ``dtype``
    (bf16 on a CPU without native bf16 is much slower than fp32). ``no`` requests nothing, so the setting of
    ``accelerate launch`` (flag or config file, e.g. configs/accelerate/ddp_bf16.yaml) applies."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    use_peft: bool = True
    """Train LoRA adapters (π_ref = adapters disabled); false: full fine-tuning with a frozen π_ref copy."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scale numerator (the delta is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """peft's LoRA dropout. Sampling *and* scoring run in eval mode (so the scored policy is the one that
    sampled, as the estimators require), hence this has no effect on the gradient; kept for peft configs."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters (comma-separated on the command line; ``all-linear`` as in peft)."""

    # ---------------------------------------------------------------- bookkeeping
    output_dir: str = "runs/nashmp"
    """Folder of ``log.csv``, ``training.png``, ``checkpoint-N/`` and ``final/``."""
    seed: int = 0
    """Seed of the prompt order and of process 0's sampling stream (process i uses its own stream)."""
    save_steps: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    logging_steps: int = 1
    """Write a ``log.csv`` row (and tracker entry) every N steps."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """accelerate trackers (``tensorboard``, ``wandb``, ``mlflow``, ...); a CSV log is always written."""
    resume_from_checkpoint: str | None = None
    """A ``checkpoint-N`` folder, or ``latest`` for the newest complete one in ``output_dir``; the saved
    config must agree on the algorithm, model, β, LoRA shape, batch and the other settings that define the run."""
    overwrite_output_dir: bool = False
    """Start a fresh run in an ``output_dir`` that already holds one (its log.csv and checkpoints are deleted);
    without it such a folder is refused, so that two runs never mix."""
    use_cpu: bool = False
    """Train on CPU even when a GPU is available (CPU is automatic when there is none)."""
    num_threads: int = 0
    """torch intra-op threads (0: torch's default)."""
    progress_bar: bool = True
    """Show a tqdm bar on the main process."""
    merge_lora_for_sampling: bool = True
    """Fold the LoRA delta into the base weights while sampling from one set of weights (exactly undone
    afterwards): a plain matmul per layer instead of base + two low-rank products."""
    eval_steps: int = 0
    """Every N steps (and before the first), the held-out win rate of π_θ against π_ref (0: never)."""
    eval_num_prompts: int = 16
    """How many held-out prompts that evaluation uses (the first ones of ``eval_dataset`` / the test split)."""
    log_completions_steps: int = 0
    """Every N steps, append one sampled answer per prompt (with the answer it was compared with and the
    oracle's preference) to ``completions.jsonl`` and send the first to the trackers as text (0: never)."""
    eval_samples_per_prompt: int = 2
    """Completions of π_θ and of π_ref per held-out prompt in that evaluation (each π_θ sample is judged
    against one π_ref sample): the standard error of a win rate near ½ is about 0.5/√(prompts · samples)."""
    eval_dataset: str | None = None
    """Held-out prompts for ``eval_steps`` (a file or ``datasets`` name; its ``test`` split if it has one);
    default: the ``test`` split of ``dataset`` (required for prompt files, which have no splits)."""
    eval_judge: str = "none"
    """A second judge for the periodic evaluation, different from the training oracle (e.g. ``embedding``)."""

    def __post_init__(self) -> None:
        if self.algorithm in ALIASES:
            import warnings

            warnings.warn(
                f"algorithm {self.algorithm!r} is now {ALIASES[self.algorithm]!r}", FutureWarning, stacklevel=2
            )
            self.algorithm = ALIASES[self.algorithm]
        if self.algorithm not in LLM_ALGORITHMS:
            raise InvalidParameterError(f"unknown algorithm {self.algorithm!r}; choose one of {list(LLM_ALGORITHMS)}.")
        if self.kl_estimator not in ("sampled", "analytic"):
            raise InvalidParameterError(f"kl_estimator must be sampled or analytic, got {self.kl_estimator!r}.")
        if self.opponent not in OPPONENTS:
            raise InvalidParameterError(f"opponent must be one of {list(OPPONENTS)}, got {self.opponent!r}.")
        check_positive("beta", self.beta)
        if self.eta is not None:
            check_positive("eta", self.eta)
        check_positive("temperature", self.temperature)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            raise InvalidParameterError(
                f"unknown lr_scheduler_type {self.lr_scheduler_type!r}; choose from {list(LR_SCHEDULERS)}."
            )
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise InvalidParameterError(f"warmup_steps must be an integer ≥ 0, got {self.warmup_steps!r}.")
        if not 0 <= self.warmup_ratio < 1:
            raise InvalidParameterError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio!r}.")
        for name in (
            "max_prompt_length",
            "max_new_tokens",
            "half_every",
            "prox_every",
            "inner_steps",
            "num_generations",
            "eval_num_prompts",
            "eval_samples_per_prompt",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_steps",
            "logging_steps",
            "lora_r",
            "lora_alpha",
        ):
            check_positive_int(name, getattr(self, name))
        if self.recipe.opponent_at(self, 0) == "self" and self.num_generations < 2:
            raise InvalidParameterError(
                f"{self.algorithm} plays against its own samples: num_generations must be ≥ 2, got {self.num_generations}."
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidParameterError(f"seed must be an integer ≥ 0, got {self.seed!r}.")
        if not isinstance(self.eval_steps, int) or self.eval_steps < 0:
            raise InvalidParameterError(f"eval_steps must be an integer ≥ 0, got {self.eval_steps!r}.")
        if not isinstance(self.log_completions_steps, int) or self.log_completions_steps < 0:
            raise InvalidParameterError(
                f"log_completions_steps must be an integer ≥ 0, got {self.log_completions_steps!r}."
            )
        if not isinstance(self.save_steps, int) or self.save_steps < 0:
            raise InvalidParameterError(f"save_steps must be an integer ≥ 0, got {self.save_steps!r}.")
        if not 0 < self.ema <= 1:
            raise InvalidParameterError(f"ema must lie in (0, 1], got {self.ema!r}.")
        if not 0 <= self.mixture_coef <= 1:
            raise InvalidParameterError(f"mixture_coef must lie in [0, 1], got {self.mixture_coef!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise InvalidParameterError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}.")
        if self.weight_decay < 0:
            raise InvalidParameterError(f"weight_decay must be ≥ 0, got {self.weight_decay!r}.")
        if self.num_threads < 0:
            raise InvalidParameterError(f"num_threads must be ≥ 0, got {self.num_threads!r}.")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise InvalidParameterError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.mixed_precision != "no" and self.dtype != "float32":
            raise InvalidParameterError(
                f"mixed_precision={self.mixed_precision} keeps fp32 master weights: set dtype=float32 (got {self.dtype})."
            )
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise InvalidParameterError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}.")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        unknown = sorted(set(self.report_to) - set(TRACKERS))
        if unknown:
            raise InvalidParameterError(f"unknown report_to {unknown}; choose from {list(TRACKERS)}.")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        if self.use_peft and not self.lora_target_modules:
            raise InvalidParameterError(
                "lora_target_modules is empty; name the modules that get adapters (or all-linear)."
            )
        from .judges import parse_oracle_spec

        # the one parser of oracle specs (train and eval); a bare lm-judge trains against the policy's own base,
        # every other model-backed judge must name its model
        named: list[tuple[str, str, tuple[str, ...]]] = [("oracle", self.oracle, ("reward-model",))]
        if self.eval_judge != "none":
            named.append(("eval_judge", self.eval_judge, ("lm-judge", "reward-model")))
        for field_name, spec, needs_model in named:
            parsed = parse_oracle_spec(spec)
            if parsed.kind in needs_model and not parsed.model:
                raise InvalidParameterError(
                    f"{field_name} {parsed.kind} needs its model: {parsed.kind}:<folder or cached hub id>."
                )

    @property
    def recipe(self) -> Recipe:
        """The algorithm's :class:`~nashmp.online.Recipe`."""
        return RECIPES[self.algorithm]

    @property
    def num_warmup_steps(self) -> int:
        """Warm-up steps of the schedule: ``warmup_steps``, else ``floor(warmup_ratio · max_steps)``."""
        return self.warmup_steps or math.floor(self.warmup_ratio * self.max_steps)  # runs under 10 steps: none

    @property
    def anchor_weight(self) -> float:
        """β/η, the weight of KL(π_θ‖anchor)."""
        return self.beta / (self.eta if self.eta is not None else 2 * self.beta)

    @property
    def trackers(self) -> list[str]:
        return [t for t in self.report_to if t not in ("none", "csv")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> NashMPConfig:
        """Read a YAML mapping of field → value; ``overrides`` win. Unknown keys are an error."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise InvalidParameterError(f"config file {p} does not exist.")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise InvalidParameterError(f"config file {p} is not UTF-8 text.") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever PyYAML says
            raise InvalidParameterError(f"config file {p} is not valid YAML{at}: {problem}.") from None
        if not isinstance(data, dict):
            raise InvalidParameterError(f"config file {p} must hold a mapping of field: value.")
        data.update(overrides)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NashMPConfig:
        """A config from a mapping (YAML, flags): each value coerced to its field's type, unknown keys an error."""
        return cls(**coerce_fields(cls, data))
