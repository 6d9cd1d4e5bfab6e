r"""Head-to-head evaluation of trained policies: a judged win-rate matrix and the KL to the reference.

The code is split along its seams: :mod:`~nashmp.llm.eval_policies` (resolving and loading policies),
:mod:`~nashmp.llm.eval_generation` (seeded generation and log-ratios), this module (the estimators and the
matrix) and :mod:`~nashmp.llm.eval_report` (the files); every public name is importable from here.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._numerics import FloatArray
from ..errors import InvalidParameterError
from ..oracles import PreferenceOracle

# the module is split along its seams; the public names stay importable from here
from .eval_generation import _Generations, _stream_seed, generate  # noqa: F401
from .eval_policies import REFERENCE_NAMES, PolicySource, load_policy, resolve_policy
from .eval_report import write_eval_report
from .prompts import Prompt, as_prompt, prompt_text
from .sampling import encode_prompts

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
    policies: Mapping[str, tuple[Any, Any]], prompts: Sequence[Prompt], judge: PreferenceOracle, **options: Any
) -> WinRateResult:
    """The win-rate matrix under one judge: :func:`win_rate_matrices` with ``{"judge": judge}``."""
    return win_rate_matrices(policies, prompts, {"judge": judge}, **options)["judge"]


def win_rate_matrices(
    policies: Mapping[str, tuple[Any, Any]],
    prompts: Sequence[Prompt],
    judges: Mapping[str, PreferenceOracle],
    *,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    samples_per_prompt: int = 1,
    seed: int = 0,
    reference: str | tuple[Any, Any] | None = None,
    batch_size: int = 16,
    max_prompt_length: int = 128,
    system_prompt: str | None = None,
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
        system_prompt: a system turn prepended to prompts without one (use the training run's, so that every
            policy answers the prompts it was trained on).
        progress: show a tqdm bar over generation batches and judged pairs.

    Estimators: see the module docstring (per-prompt means, normal intervals over prompts, W_ji = 1 − W_ij).
    """
    names = list(policies)
    if not names:
        raise InvalidParameterError("win_rate_matrix needs at least one policy.")
    prompts = [as_prompt(p, "evaluation prompts") for p in prompts]
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
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidParameterError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}.")
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
                system_prompt=system_prompt,
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
                    contexts = [prompt_text(prompts[r % n]) for r in differ]
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
            "system_prompt": system_prompt,
            "judge_queries": int(judge.queries),
        }
        results[judge_name] = WinRateResult(
            names=names,
            prompts=[prompt_text(x) for x in prompts],  # the report shows what the judges read
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
