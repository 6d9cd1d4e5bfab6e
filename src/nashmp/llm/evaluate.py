r"""Head-to-head evaluation of trained policies: a judged win-rate matrix and the KL to the reference.

For policies :math:`\pi_1,\dots,\pi_k`, prompts :math:`x_1,\dots,x_n` and a judge :math:`\mathcal P`
(any :class:`~nashmp.oracles.PreferenceOracle` over text, e.g. the debiased
:class:`~nashmp.llm.judges.LMJudge`):

1. **Generation.** Every policy answers every prompt ``samples_per_prompt`` (= s) times,
   :math:`y_i^{(k)}(x)\sim\pi_i(\cdot\mid x)` at temperature T (T = 0: greedy, the arg-max token at each
   step). Prompts are chat-templated and left-padded as in training (:func:`encode_prompts`).
   Draws are **independent across policies**: batch b of sample k of policy i is drawn from the torch
   stream seeded by ``(seed, i, k, b)`` (reproducible, and independent of the batch's neighbours in other
   policies). Common random numbers would be tempting (two copies of a model would then answer
   identically) but they change the estimand: the win rate is defined for *independent* answers
   :math:`y_i\sim\pi_i`, :math:`y_j\sim\pi_j`, and for a judge that is non-linear in the answers (any
   judge) :math:`\mathbb E_{
m coupled}[\mathcal P(y_i\succ y_j)]
e\mathbb E_{\pi_i\otimes\pi_j}[\mathcal P(y_i\succ y_j)]`.
   With T = 0 the answers are deterministic, so two copies of one model tie exactly (½).
2. **Win rates.** For every pair i < j the judge is asked once (one ``judge.probability`` call per pair of
   policies, all n·s rows batched) for :math:`p_{ij}(x, k) = \mathcal P(y_i^{(k)}\succ y_j^{(k)}\mid x)`.
   Identical completions are scored ½ without a query (every oracle's contract gives ½ to a tie). The
   per-prompt value is :math:`\bar p_{ij}(x) = \frac1s\sum_k p_{ij}(x,k)` and the win rate is its mean over
   prompts,

   .. math:: W_{ij} = \frac1n\sum_{m=1}^n \bar p_{ij}(x_m), \qquad W_{ji} = 1 - W_{ij}, \qquad W_{ii} = \tfrac12,

   so :math:`W + W^\top = 1` by construction (the oracle contract :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1`;
   a judge that violates it is not symmetrised here — use a debiased judge).
3. **Confidence intervals.** Normal approximation with the standard error over prompts (prompts are the
   independent unit; the s samples of one prompt are averaged first, i.e. clustered by prompt):
   :math:`W_{ij}\pm z_{0.975}\,\hat\sigma_{ij}/\sqrt n`, :math:`\hat\sigma_{ij}` the sample standard
   deviation (ddof = 1) of :math:`\bar p_{ij}(x_m)`, clipped to [0, 1]; with n = 1 the interval is [0, 1].
   It covers the *expected* win rate over the prompt distribution and the policies' sampling, for this
   judge.
4. **KL to the reference.** The sequence KL is estimated on each policy's own samples (the trainer's
   ``kl_ref`` estimator),

   .. math:: \widehat{\mathrm{KL}}(\pi_i\|\pi_{\rm ref}) = \frac1n\sum_m \frac1s\sum_k \sum_t
      \big[\log\pi_{i,T}(y_t\mid x_m, y_{<t}) - \log\pi_{{\rm ref},T}(y_t\mid x_m, y_{<t})\big],
      \quad y = y_i^{(k)}(x_m),

   with the tempered log-probabilities (the same T as the samples, EOS included), with the same
   normal-approximation interval over prompts (unclipped: a finite-sample estimate can be negative).
   It is unbiased for the KL between the *tempered* policies. It is ``nan`` for greedy decoding (no
   samples), without a reference, or when a policy's vocabulary differs from the reference's.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .._numerics import FloatArray
from ..errors import InvalidParameterError
from ..oracles import PreferenceOracle
from .models import OFFLINE_ALIASES, ModelNotFoundError, cache_dir, prepare_tokenizer, resolve_model_path
from .sampling import ModelView, completion_log_probs, encode_prompts, eval_mode, model_device, sample_completions

__all__ = [
    "Z_95",
    "REFERENCE_NAMES",
    "PolicySource",
    "WinRateResult",
    "resolve_policy",
    "load_policy",
    "encode_prompts",
    "generate",
    "mean_confidence_interval",
    "win_rate_matrix",
    "win_rate_matrices",
    "write_eval_report",
]

#: The two-sided 95 % normal quantile :math:`z_{0.975}`.
Z_95 = 1.959963984540054

#: Policy names that mean "the base model" (π_ref) in :func:`resolve_policy`.
REFERENCE_NAMES = ("ref",)


# --------------------------------------------------------------------------------------------------
# loading policies
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySource:
    """What :func:`load_policy` will load, resolved and validated without touching any weights.

    ``kind`` is ``"base"`` (an offline alias or a full model folder: loaded as is) or ``"adapter"`` (a
    PEFT folder: ``base`` plus the adapters in ``path``). Equal sources load equal models.
    """

    kind: Literal["base", "adapter"]
    path: str
    base: str | None = None


def _offline_folder() -> Path:
    return (cache_dir() / "smollm2-135m-instruct").resolve()


def _canonical_base(name_or_path: str) -> str:
    """``resolve_model_path`` plus one name for the offline model (its alias or its converted folder)."""
    if name_or_path in OFFLINE_ALIASES:
        resolve_model_path(name_or_path)
        return "smollm2"
    path = Path(name_or_path).expanduser()
    if path.is_dir() and path.resolve() == _offline_folder():
        return "smollm2"
    if not path.exists() and path.name == "smollm2-135m-instruct":  # an adapter saved with another cache dir
        resolve_model_path("smollm2")
        return "smollm2"
    return resolve_model_path(name_or_path)


def resolve_policy(spec: str, *, base: str = "smollm2") -> PolicySource:
    """Validate a policy spec *before* any weights are loaded (one-line :class:`ModelNotFoundError` otherwise).

    * ``"ref"`` → the base model ``base`` (write ``./ref`` for a folder called ``ref``);
    * an offline alias (``"smollm2"``) or a full model folder (``config.json``, e.g. ``save_model`` of a
      full fine-tune) → that model;
    * a folder with ``adapter_config.json`` (``save_model`` of a LoRA run) → its
      ``base_model_name_or_path`` plus the adapters.
    """
    if not isinstance(spec, str) or not spec:
        raise ModelNotFoundError(f"a policy must be a non-empty string, got {spec!r}.")
    if spec in REFERENCE_NAMES:
        return PolicySource("base", _canonical_base(base))
    if spec in OFFLINE_ALIASES:
        return PolicySource("base", _canonical_base(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            try:
                adapter = json.loads((path / "adapter_config.json").read_text())
            except ValueError as exc:
                raise ModelNotFoundError(f"policy {spec!r}: adapter_config.json is not valid JSON ({exc}).") from None
            recorded = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
            if not recorded:
                raise ModelNotFoundError(
                    f"policy {spec!r}: adapter_config.json does not name its base model (base_model_name_or_path)."
                )
            try:
                base_path = _canonical_base(str(recorded))
            except ModelNotFoundError as exc:
                raise ModelNotFoundError(f"policy {spec!r}: its base model is unavailable: {exc}") from None
            return PolicySource("adapter", str(path), base_path)
        if (path / "config.json").is_file():
            return PolicySource("base", _canonical_base(str(path)))
        hint = f" (did you mean {path / 'final'}?)" if (path / "final").is_dir() else ""
        raise ModelNotFoundError(
            f"policy folder {spec!r} has neither adapter_config.json (LoRA adapters) nor config.json (a full "
            f"model){hint}."
        )
    if path.exists():
        raise ModelNotFoundError(f"policy {spec!r} is a file; give a model folder (e.g. runs/NAME/final).")
    if spec.count("/") == 1 and not path.suffix and not spec.startswith((".", "~")):
        return PolicySource("base", resolve_model_path(spec))  # a hub id in the local cache
    raise ModelNotFoundError(
        f"policy {spec!r} not found: give 'ref', an offline alias ({OFFLINE_ALIASES[0]}) or a folder written by "
        "NashMPTrainer.save_model (e.g. runs/NAME/final)."
    )


def load_policy(
    spec: str | PolicySource, *, base: str = "smollm2", dtype: str = "float32", merge: bool = True
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a policy spec (see :func:`resolve_policy`), in eval mode, without gradients.

    LoRA folders are loaded as the base model (through :func:`~nashmp.llm.models.load_model_and_tokenizer`)
    plus ``peft.PeftModel.from_pretrained``, merged into the weights (``merge_and_unload``) unless
    ``merge=False``; the tokenizer is the one saved next to the adapters when present. Every call
    loads fresh weights (merging modifies the base in place, so bases are never shared).
    """
    from .models import load_model_and_tokenizer

    source = spec if isinstance(spec, PolicySource) else resolve_policy(spec, base=base)
    if source.kind == "base":
        model, tokenizer = load_model_and_tokenizer(source.path, dtype=dtype)
    else:
        from peft import PeftModel
        from transformers import AutoTokenizer

        assert source.base is not None
        model, tokenizer = load_model_and_tokenizer(source.base, dtype=dtype)
        with warnings.catch_warnings():  # peft reads a deprecated transformers alias (harmless)
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, source.path)
        if merge:
            model = model.merge_and_unload()
        if (Path(source.path) / "tokenizer_config.json").is_file():
            tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(source.path))
    model.eval().requires_grad_(False)
    return model, tokenizer


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------


def _stream_seed(*keys: int) -> int:
    """A torch seed from integer keys (``numpy.random.SeedSequence`` mixing: distinct keys, unrelated streams)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


@dataclass
class _Generations:
    texts: list[list[str]]  # [sample][prompt]
    lengths: FloatArray  # (s, n) tokens, EOS included
    log_ratio: FloatArray  # (s, n) Σ_t log π − log π_ref (nan without a reference)


def _same_vocab(a: Any, b: Any) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    samples_per_prompt: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    max_prompt_length: int = 128,
    reference: tuple[Any, Any] | None = None,
    on_batch: Any = None,
) -> _Generations:
    """``samples_per_prompt`` completions of every prompt, with their lengths and, given
    ``reference=(model, tokenizer)`` and T > 0, the sequence log-ratios to the reference.

    Batch b of sample k is drawn from torch's CPU stream seeded by ``(seed, k, b)`` inside
    ``torch.random.fork_rng`` (the global RNG is left untouched), so equal models and seeds give equal
    completions. A policy's tokenizer is set to left padding with a pad token (:func:`prepare_tokenizer`).
    """
    n = len(prompts)
    prepare_tokenizer(tokenizer)
    texts: list[list[str]] = [["" for _ in range(n)] for _ in range(samples_per_prompt)]
    lengths = np.zeros((samples_per_prompt, n))
    log_ratio = np.full((samples_per_prompt, n), np.nan)
    ref_model = None
    if reference is not None and temperature > 0 and _same_vocab(tokenizer, reference[1]):
        ref_model = reference[0]
    device = model_device(model)
    view = ModelView(model)
    with eval_mode(model):
        for k in range(samples_per_prompt):
            for b, start in enumerate(range(0, n, batch_size)):
                rows = list(prompts[start : start + batch_size])
                ids, mask = encode_prompts(tokenizer, rows, max_length=max_prompt_length)
                ids, mask = ids.to(device), mask.to(device)
                eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(_stream_seed(seed, k, b))
                    out, out_mask, _ = sample_completions(  # temperature 0: greedy
                        [(view, 1.0)],
                        ids,
                        mask,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        eos_token_id=eos,
                        pad_token_id=pad,
                    )
                decoded = tokenizer.batch_decode(out.masked_fill(out_mask == 0, pad), skip_special_tokens=True)
                texts[k][start : start + len(rows)] = decoded
                lengths[k, start : start + len(rows)] = out_mask.sum(-1).cpu().numpy()
                if ref_model is not None:
                    log_ratio[k, start : start + len(rows)] = _log_ratio(
                        model, ref_model, ids, mask, out, out_mask, temperature
                    )
                if on_batch is not None:
                    on_batch()
    return _Generations(texts, lengths, log_ratio)


@torch.no_grad()
def _log_ratio(
    model: Any, ref_model: Any, ids: Tensor, mask: Tensor, out: Tensor, out_mask: Tensor, temperature: float
) -> FloatArray:
    """Σ_t log π_T(y_t) − log π_ref,T(y_t) per row (exactly 0 when the policy *is* the reference)."""
    if ref_model is model:
        return np.zeros(out.shape[0])
    logp = completion_log_probs(ModelView(model), ids, mask, out, out_mask, temperature=temperature).sum(-1)
    ref_device = model_device(ref_model)
    with eval_mode(ref_model):
        ref = completion_log_probs(
            ModelView(ref_model),
            ids.to(ref_device),
            mask.to(ref_device),
            out.to(ref_device),
            out_mask.to(ref_device),
            temperature=temperature,
        ).sum(-1)
    return (logp.double().cpu() - ref.double().cpu()).numpy()


# --------------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------------


def mean_confidence_interval(
    values: Any, *, z: float = Z_95, bounds: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    r"""``(mean, low, high)``: the normal-approximation interval :math:`\bar v \pm z\,\hat\sigma/\sqrt n` of 1-D values.

    :math:`\hat\sigma` is the sample standard deviation (ddof = 1). With fewer than two values the interval
    is unbounded (then clipped to ``bounds``).

    >>> mean_confidence_interval([0.0, 1.0, 0.0, 1.0], bounds=(0.0, 1.0))
    (0.5, 0.0, 1.0)
    >>> [round(v, 4) for v in mean_confidence_interval([0.4, 0.6] * 50)]
    [0.5, 0.4803, 0.5197]
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    half = z * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else math.inf
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high


@dataclass
class WinRateResult:
    r"""A judged tournament: :math:`W_{ij}` = mean over prompts of P(policy i's answer ≻ policy j's answer).

    Rows are the policy, columns the opponent. ``per_prompt[i, j]`` holds the n per-prompt values
    :math:`\bar p_{ij}(x_m)` behind ``win_rate[i, j]``; the intervals are 95 % normal approximations over
    prompts (see the module docstring). ``kl_ref`` and its interval are ``nan`` when not estimable.
    """

    names: list[str]
    prompts: list[str]
    win_rate: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    per_prompt: FloatArray
    kl_ref: FloatArray
    kl_ci_low: FloatArray
    kl_ci_high: FloatArray
    mean_length: FloatArray
    completions: dict[str, list[list[str]]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of prompts (the sample size of every interval)."""
        return len(self.prompts)

    @property
    def average_win_rate(self) -> FloatArray:
        """Mean win rate of each policy against the *other* policies (½ with a single policy)."""
        k = len(self.names)
        if k == 1:
            return np.full(1, 0.5)
        return (self.win_rate.sum(axis=1) - 0.5) / (k - 1)

    def to_markdown(self) -> str:
        """The matrix as a markdown table (``W [low, high]`` per cell) plus average win rate, KL and length."""
        k = len(self.names)
        head = "| policy ↓ vs → | " + " | ".join(self.names) + " | avg win rate | KL(π‖π_ref) | mean length |"
        lines = [head, "|---|" + "---:|" * (k + 3)]
        for i, name in enumerate(self.names):
            cells = [f"{self.win_rate[i, j]:.3f} [{self.ci_low[i, j]:.2f}, {self.ci_high[i, j]:.2f}]" for j in range(k)]
            kl = "n/a" if math.isnan(self.kl_ref[i]) else f"{self.kl_ref[i]:.3g} ± {self._kl_half(i):.2g}"
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {self.average_win_rate[i]:.3f} | {kl} | "
                f"{self.mean_length[i]:.1f} |"
            )
        s = self.settings
        note = (
            f"Win rate of the row policy against the column policy, mean over {self.n} prompts with a 95 % "
            f"normal-approximation interval; judge {s.get('judge', '?')}, T = {s.get('temperature', '?')}, "
            f"{s.get('samples_per_prompt', 1)} sample(s) per prompt, max {s.get('max_new_tokens', '?')} new tokens, "
            f"seed {s.get('seed', '?')}. KL(π‖π_ref): sequence KL to {s.get('reference') or 'no reference'} "
            "on the policy's samples (± the 95 % half-width); length in tokens."
        )
        return "\n".join(lines) + "\n\n" + note + "\n"

    def _kl_half(self, i: int) -> float:
        return float(self.kl_ci_high[i] - self.kl_ref[i])


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


def win_rate_matrix(
    policies: Mapping[str, tuple[Any, Any]], prompts: Sequence[str], judge: PreferenceOracle, **options: Any
) -> WinRateResult:
    """The win-rate matrix under one judge: :func:`win_rate_matrices` with ``{"judge": judge}``."""
    return win_rate_matrices(policies, prompts, {"judge": judge}, **options)["judge"]


def win_rate_matrices(
    policies: Mapping[str, tuple[Any, Any]],
    prompts: Sequence[str],
    judges: Mapping[str, PreferenceOracle],
    *,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    samples_per_prompt: int = 1,
    seed: int = 0,
    reference: str | tuple[Any, Any] | None = None,
    batch_size: int = 16,
    max_prompt_length: int = 128,
    progress: bool = False,
) -> dict[str, WinRateResult]:
    r"""Generate once, judge with each of ``judges``: per judge, the win-rate matrix W with 95 % intervals and
    each policy's KL to π_ref (the same completions, hence the same KL, under every judge).

    Args:
        policies: ``{name: (model, tokenizer)}`` in display order (a model may appear under several names).
        prompts: the evaluation prompts (n ≥ 1).
        judges: ``{name: preference oracle}``; each is asked once per pair of policies (i < j), on every
            prompt and sample whose two completions differ.
        max_new_tokens: completion budget per answer.
        temperature: sampling temperature T ≥ 0; 0 is greedy decoding (then ``samples_per_prompt`` must be 1
            and ``kl_ref`` is nan: there are no samples to estimate it on).
        samples_per_prompt: s completions per policy and prompt, compared sample k against sample k.
        seed: generation seed; policy i samples from the streams ``(seed, i, sample, batch)``.
        reference: the name of π_ref among ``policies``, or a ``(model, tokenizer)`` pair; default the policy
            named ``"ref"`` if any (else no KL).
        batch_size: prompts per generation batch.
        max_prompt_length: prompts are left-truncated to this many tokens.
        progress: show a tqdm bar over generation batches and judged pairs.

    Estimators: see the module docstring (per-prompt means, normal intervals over prompts, W_ji = 1 − W_ij).
    """
    names = list(policies)
    if not names:
        raise InvalidParameterError("win_rate_matrix needs at least one policy.")
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise InvalidParameterError("win_rate_matrix needs at least one prompt.")
    if not judges:
        raise InvalidParameterError("win_rate_matrices needs at least one judge.")
    for judge in judges.values():
        if not isinstance(judge, PreferenceOracle):
            raise InvalidParameterError(f"judge must be a PreferenceOracle, got {type(judge).__name__}.")
    _check_int("max_new_tokens", max_new_tokens, 1)
    s = _check_int("samples_per_prompt", samples_per_prompt, 1)
    _check_int("seed", seed, 0)
    _check_int("batch_size", batch_size, 1)
    _check_int("max_prompt_length", max_prompt_length, 1)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature >= 0:
        raise InvalidParameterError(f"temperature must be ≥ 0 (0 = greedy), got {temperature!r}.")
    if not math.isfinite(temperature):
        raise InvalidParameterError(f"temperature must be finite, got {temperature!r}.")
    if temperature == 0 and s > 1:
        raise InvalidParameterError(
            "greedy decoding (temperature 0) gives one answer per prompt; use samples_per_prompt=1."
        )
    ref_name: str | None
    if reference is None:
        ref_name = "ref" if "ref" in policies else None
        ref_pair = policies[ref_name] if ref_name else None
    elif isinstance(reference, str):
        if reference not in policies:
            raise InvalidParameterError(f"reference {reference!r} is not one of the policies {names}.")
        ref_name, ref_pair = reference, policies[reference]
    else:
        ref_name, ref_pair = "the given reference", tuple(reference)

    from tqdm.auto import tqdm

    k, n = len(names), len(prompts)
    batches = -(-n // batch_size)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    bar = tqdm(total=k * s * batches + len(pairs) * len(judges), desc="eval", unit="step", disable=not progress)
    gens: dict[str, _Generations] = {}
    try:
        for index, name in enumerate(names):
            bar.set_description(f"generate {name}")
            model, tokenizer = policies[name]
            gens[name] = generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=float(temperature),
                samples_per_prompt=s,
                seed=_stream_seed(seed, index),
                batch_size=batch_size,
                max_prompt_length=max_prompt_length,
                reference=ref_pair,
                on_batch=lambda: bar.update(1),
            )
        per_judge: dict[str, np.ndarray] = {}
        for judge_name, judge in judges.items():
            per_prompt = per_judge[judge_name] = np.full((k, k, n), 0.5)
            for i, j in pairs:
                bar.set_description(f"{judge_name}: {names[i]} vs {names[j]}")
                a = [t for sample in gens[names[i]].texts for t in sample]
                b = [t for sample in gens[names[j]].texts for t in sample]
                p = np.full(len(a), 0.5)
                differ = [r for r in range(len(a)) if a[r] != b[r]]
                if differ:
                    contexts = [prompts[r % n] for r in differ]
                    p[differ] = judge.probability(contexts, [a[r] for r in differ], [b[r] for r in differ])
                per_prompt[i, j] = p.reshape(s, n).mean(axis=0)
                per_prompt[j, i] = 1.0 - per_prompt[i, j]
                bar.update(1)
    finally:
        bar.close()

    kl = np.full(k, np.nan)
    kl_low, kl_high = np.full(k, np.nan), np.full(k, np.nan)
    for i, name in enumerate(names):
        ratio = gens[name].log_ratio
        if not np.isnan(ratio).any():
            kl[i], kl_low[i], kl_high[i] = mean_confidence_interval(ratio.mean(axis=0))
    results = {}
    for judge_name, judge in judges.items():
        per_prompt = per_judge[judge_name]
        win = np.full((k, k), 0.5)
        low = np.full((k, k), 0.5)
        high = np.full((k, k), 0.5)
        for i, j in pairs:
            win[i, j], low[i, j], high[i, j] = mean_confidence_interval(per_prompt[i, j], bounds=(0.0, 1.0))
            win[j, i], low[j, i], high[j, i] = 1.0 - win[i, j], 1.0 - high[i, j], 1.0 - low[i, j]
        settings = {
            "judge": type(judge).__name__,
            "max_new_tokens": max_new_tokens,
            "temperature": float(temperature),
            "samples_per_prompt": s,
            "seed": seed,
            "reference": ref_name,
            "judge_queries": int(judge.queries),
        }
        results[judge_name] = WinRateResult(
            names=names,
            prompts=prompts,
            win_rate=win,
            ci_low=low,
            ci_high=high,
            per_prompt=per_prompt,
            kl_ref=kl,
            kl_ci_low=kl_low,
            kl_ci_high=kl_high,
            mean_length=np.array([gens[name].lengths.mean() for name in names]),
            completions={name: gens[name].texts for name in names},
            settings=settings,
        )

    return results


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def write_eval_report(result: WinRateResult, out_dir: str | Path, *, title: str = "") -> dict[str, Path]:
    """Write ``win_rates.csv``, ``kl_ref.csv``, ``win_rates.png``, ``eval.md``, ``completions.jsonl``, ``eval.json``.

    ``win_rates.csv`` has one row per ordered pair (row, column, win_rate, ci_low, ci_high, n);
    ``kl_ref.csv`` one row per policy (policy, kl_ref, ci_low, ci_high, mean_length, avg_win_rate, n);
    ``completions.jsonl`` every prompt's completions (policy, sample, prompt, completion); ``eval.json`` the
    settings. Returns the paths.
    """
    from ..plotting import plot_win_rates

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "win_rates": out / "win_rates.csv",
        "kl_ref": out / "kl_ref.csv",
        "plot": out / "win_rates.png",
        "markdown": out / "eval.md",
        "completions": out / "completions.jsonl",
        "settings": out / "eval.json",
    }
    names, n = result.names, result.n
    with paths["win_rates"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "column", "win_rate", "ci_low", "ci_high", "n"])
        for i, row in enumerate(names):
            for j, col in enumerate(names):
                w.writerow(
                    [
                        row,
                        col,
                        repr(float(result.win_rate[i, j])),
                        repr(float(result.ci_low[i, j])),
                        repr(float(result.ci_high[i, j])),
                        n,
                    ]
                )
    with paths["kl_ref"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["policy", "kl_ref", "ci_low", "ci_high", "mean_length", "avg_win_rate", "n"])
        for i, name in enumerate(names):
            w.writerow(
                [
                    name,
                    repr(float(result.kl_ref[i])),
                    repr(float(result.kl_ci_low[i])),
                    repr(float(result.kl_ci_high[i])),
                    repr(float(result.mean_length[i])),
                    repr(float(result.average_win_rate[i])),
                    n,
                ]
            )
    s = result.settings
    desc = title or f"win rate (row vs column), {n} prompts, judge {s.get('judge', '?')}, T={s.get('temperature', '?')}"
    plot_win_rates(result.win_rate, names, paths["plot"], ci_low=result.ci_low, ci_high=result.ci_high, title=desc)
    paths["markdown"].write_text(f"# nashmp eval\n\n{result.to_markdown()}")
    with paths["completions"].open("w") as fh:
        for name, samples in result.completions.items():
            for k, texts in enumerate(samples):
                for prompt, text in zip(result.prompts, texts, strict=True):
                    record = {"policy": name, "sample": k, "prompt": prompt, "completion": text}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths["settings"].write_text(json.dumps(result.settings, indent=1, default=str))
    return paths
