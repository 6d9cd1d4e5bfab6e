r"""Text preference oracles: P(a ≻ b | prompt) for two completions ``a``, ``b`` of a prompt, and :func:`make_oracle`.

Every class here is a :class:`~nashmp.oracles.PreferenceOracle` whose contexts are prompts (``str``) and
whose responses are completions (``str``); :meth:`~nashmp.oracles.PreferenceOracle.probability` answers
one float in [0, 1] per pair and counts one query per pair. This module is the public entry point; the
oracles live in one module each and are re-exported here:

* :class:`LMJudge` (:mod:`nashmp.llm.lm_judge`) — any Hugging Face causal LM as a pairwise judge
  (LLM-as-judge), from the next-token logits of the answer tokens ``"A"`` / ``"B"``, debiased over both
  presentation orders.
* :class:`RewardModelOracle` (:mod:`nashmp.llm.reward_model`) — Bradley–Terry on a scalar reward,
  :math:`\sigma((r(x,a)-r(x,b))/T)`; :meth:`RewardModelOracle.from_sequence_classifier` wraps a one-logit HF
  sequence classifier.
* :class:`HTTPJudge` (:mod:`nashmp.llm.http_judge`) — an OpenAI-compatible ``/chat/completions`` server
  (vLLM, llama.cpp, Ollama, hosted APIs) as the judge, with concurrency, bounded requests, retries and
  capped back-off; standard library only.
* :class:`CommitteeOracle` (:mod:`nashmp.llm.committee`) — the offline default training oracle: cheap
  criteria vote on top of a shared answer-quality score, so clearly good answers beat clearly bad ones
  and the preference is still intransitive by construction (Condorcet cycles exist), which is the regime
  where Nash learning differs from reward maximisation.
* :class:`EmbeddingJudge` (:mod:`nashmp.llm.embedding_judge`) — MiniLM sentence-embedding relevance, the
  default evaluation judge.
* :func:`make_oracle` — the factory behind the CLI and configs.

Position debiasing (:mod:`nashmp.llm.judge_template`). A judge shown ``(first, second)`` answers
:math:`q_A(x, \text{first}, \text{second})`, the probability that it names the first answer. LLM judges
prefer one position, so :class:`LMJudge` and :class:`HTTPJudge` ask both orders and answer

.. math:: \mathcal P(a \succ b \mid x) = \tfrac12\,[\,q_A(x,a,b) + 1 - q_A(x,b,a)\,],

which satisfies :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1` exactly and gives ½ for identical answers,
whatever the bias. It costs two judge calls per pair; ``queries`` still counts one per pair.

Failures are never scored as ties: a judge that cannot answer raises :class:`~nashmp.errors.JudgeError`
(remote) or :class:`~nashmp.errors.InvalidOracleOutputError` (invalid numbers).

Example (a committee of two criteria; the default one adds VADER sentiment):

>>> oracle = CommitteeOracle(["relevance", "length"])
>>> p = oracle.probability(["Name a fruit."], ["An apple is a sweet fruit that grows on trees."], ["asdf asdf asdf"])
>>> bool(p[0] > 0.9), oracle.queries
(True, 1)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import InvalidParameterError
from ..oracles import PreferenceOracle
from .committee import (
    COMMITTEE_CRITERIA,
    DEFAULT_COMMITTEE_CRITERIA,
    CommitteeOracle,
    quality_penalties,
    relevance_score,
    word_count,
)
from .embedding_judge import EmbeddingJudge
from .http_judge import HTTPJudge, InsecureJudgeURLWarning, parse_judge_answer
from .judge_template import DEFAULT_JUDGE_TEMPLATE, render_judge_prompt
from .lm_judge import LMJudge
from .reward_model import RewardModelOracle

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "ORACLE_SPECS",
    "COMMITTEE_CRITERIA",
    "DEFAULT_COMMITTEE_CRITERIA",
    "LMJudge",
    "RewardModelOracle",
    "HTTPJudge",
    "InsecureJudgeURLWarning",
    "CommitteeOracle",
    "EmbeddingJudge",
    "make_oracle",
    "OracleSpec",
    "parse_oracle_spec",
    "render_judge_prompt",
    "parse_judge_answer",
    "quality_penalties",
    "relevance_score",
    "word_count",
]

#: Spec strings accepted by :func:`make_oracle`.
ORACLE_SPECS = (
    "committee",
    "committee:<criterion,...>",
    "embedding",
    "lm-judge",
    "lm-judge:<model>",
    "reward-model:<model>",
    "http:<base_url>",
    "starts-with:<text>",
)


class OracleSpec(NamedTuple):
    """A parsed oracle spec string: which oracle, and its argument (nothing is built or loaded)."""

    kind: str
    """``committee``, ``embedding``, ``lm-judge``, ``reward-model``, ``http`` or ``starts-with``."""
    criteria: tuple[str, ...] = ()
    """``committee:<criterion,...>``: the criteria named (empty: the default committee)."""
    url: str = ""
    """``http:<base_url>``: the server's base URL (without the ``#model`` fragment)."""
    served: str = ""
    """``http:<base_url>#<model>``: the served model name from the fragment (may be empty)."""
    prefix: str = ""
    """``starts-with:<text>``: the opening text that wins."""
    model: str = ""
    """``lm-judge:<model>`` / ``reward-model:<model>``: a local folder, a hub id in the local cache or an
    offline alias (empty for ``lm-judge``: a frozen copy of the policy's base model)."""


def parse_oracle_spec(spec: object) -> OracleSpec:
    """The one parser of oracle specs (``nashmp train --oracle``, ``--eval-judge`` and ``nashmp eval --judge``).

    >>> parse_oracle_spec("committee:relevance, conciseness")
    OracleSpec(kind='committee', criteria=('relevance', 'conciseness'), url='', served='', prefix='', model='')
    >>> parse_oracle_spec("http://127.0.0.1:8000/v1#judge").served
    'judge'

    Raises:
        InvalidParameterError: not a string, an unknown oracle, or an argument given to one that takes none.
    """
    if not isinstance(spec, str):
        raise InvalidParameterError(f"oracle spec must be a string, got {type(spec).__name__}.")
    name, colon, arg = spec.partition(":")
    if spec.startswith(("http://", "https://")):
        name, arg = "http", spec
    if name == "committee":
        return OracleSpec("committee", criteria=tuple(c.strip() for c in arg.split(",") if c.strip()))
    if name == "embedding":
        if colon:
            raise InvalidParameterError(f"the embedding oracle takes no argument, got {spec!r}.")
        return OracleSpec(name)
    if name in ("lm-judge", "reward-model"):
        if colon and not arg.strip():
            raise InvalidParameterError(f"the {name} oracle needs a model after the colon, got {spec!r}.")
        return OracleSpec(name, model=arg.strip())
    if name == "starts-with":
        if not arg.strip():
            raise InvalidParameterError(f"starts-with needs a text, e.g. starts-with:The; got {spec!r}.")
        return OracleSpec("starts-with", prefix=arg.strip())
    if name == "http" and arg:
        url, _, fragment = arg.partition("#")
        return OracleSpec("http", url=url, served=fragment)
    raise InvalidParameterError(f"unknown oracle {spec!r}; choose one of: {', '.join(ORACLE_SPECS)}.")


def _build(factory: Callable[..., PreferenceOracle], spec: str, *args: Any, **kwargs: Any) -> PreferenceOracle:
    """``factory(*args, **kwargs)``, turning an unknown keyword into an InvalidParameterError that lists the known ones."""
    params = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        known = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise InvalidParameterError(
            f"oracle {spec!r} does not take {', '.join(k + '=' for k in unknown)}; it takes {', '.join(known)}."
        )
    return factory(*args, **kwargs)


def make_oracle(spec: str, **kwargs: Any) -> PreferenceOracle:
    """Build a text oracle from a spec string (CLI and configs).

    * ``"committee"`` or ``"committee:sentiment,relevance"`` → :class:`CommitteeOracle` (kwargs: ``sharpness``,
      ``length_scale``, ``target_words``, ``quality``);
    * ``"lm-judge"`` → :class:`LMJudge` (kwargs ``model=``, ``tokenizer=`` required); ``"lm-judge:<model>"``
      loads that causal LM (a local folder, a hub id in the local cache, ``smollm2``);
    * ``"reward-model"`` → :class:`RewardModelOracle` from ``reward_fn=``, or from a sequence classifier
      ``model=``, ``tokenizer=``; ``"reward-model:<model>"`` loads that sequence classifier (one logit:
      Bradley–Terry σ(r₁ − r₂));
    * ``"starts-with:<text>"`` → :class:`~nashmp.llm.prefix_oracle.PrefixOracle` (answers opening with the
      text win; kwarg ``sharpness``): a preference a small model learns in minutes, for demos;
    * ``"http:<base_url>"`` (or a bare ``http(s)://`` URL) → :class:`HTTPJudge`; the served model name is
      ``model=`` (a string) or the URL fragment: ``"http:http://127.0.0.1:8000/v1#qwen2.5-7b-instruct"``.

    Callers may pass the judge resources uniformly: a keyword set to ``None`` counts as not given, and
    ``model=`` / ``tokenizer=`` are ignored by the specs that do not use them (the committee; the HTTP
    judge ignores ``tokenizer=`` and a non-string ``model=``). Any other unknown keyword is an error.

    >>> type(make_oracle("committee:relevance,conciseness", model=None, tokenizer=None)).__name__
    'CommitteeOracle'
    >>> make_oracle("http:http://127.0.0.1:8000/v1#judge").model
    'judge'
    """
    parsed = parse_oracle_spec(spec)
    assert isinstance(spec, str)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if parsed.kind == "committee":
        kwargs.pop("model", None)
        kwargs.pop("tokenizer", None)
        if parsed.criteria:
            kwargs.setdefault("criteria", parsed.criteria)
        return _build(CommitteeOracle, spec, **kwargs)
    if parsed.kind == "starts-with":
        from .prefix_oracle import PrefixOracle

        kwargs.pop("model", None)
        kwargs.pop("tokenizer", None)
        return _build(PrefixOracle, spec, parsed.prefix, **kwargs)
    if parsed.kind == "embedding":
        kwargs.pop("model", None)
        kwargs.pop("tokenizer", None)
        return _build(EmbeddingJudge.offline, spec, **kwargs)
    if parsed.kind in ("lm-judge", "reward-model"):
        if parsed.kind == "reward-model" and "reward_fn" in kwargs:
            return _build(RewardModelOracle, spec, **kwargs)
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        if parsed.model and "model" not in kwargs:  # the named judge model is loaded here
            from .models import load_model_and_tokenizer, load_sequence_classifier

            load = load_model_and_tokenizer if parsed.kind == "lm-judge" else load_sequence_classifier
            judge, judge_tokenizer = load(parsed.model, trust_remote_code=trust_remote_code)
            kwargs["model"] = judge.eval().requires_grad_(False)
            kwargs["tokenizer"] = judge_tokenizer
        missing = [k for k in ("model", "tokenizer") if k not in kwargs]
        if missing:
            raise InvalidParameterError(
                f"oracle {parsed.kind!r} needs {' and '.join(k + '=' for k in missing)} keyword arguments."
            )
        model, tokenizer = kwargs.pop("model"), kwargs.pop("tokenizer")
        factory = LMJudge if parsed.kind == "lm-judge" else RewardModelOracle.from_sequence_classifier
        return _build(factory, spec, model, tokenizer, **kwargs)
    # http
    kwargs.pop("tokenizer", None)
    served = kwargs.pop("model", None)
    served = served if isinstance(served, str) and served else parsed.served
    if not served:
        raise InvalidParameterError(
            f"oracle {spec!r} needs the judge model name the server serves: model='name' or {spec}#name."
        )
    return _build(HTTPJudge, spec, parsed.url, served, **kwargs)
