r"""The offline default training oracle: a committee of cheap text criteria whose soft majority vote is intransitive.

Every juror of :class:`CommitteeOracle` scores a completion by a *shared quality score* (penalties for text
that is no answer at all: empty, gibberish, loops, off-topic, rude, rambling) plus *its own taste* (prompt
coverage, answer length, warmth). Clearly bad answers lose every juror's vote; among decent answers the
tastes disagree, so the majority can go round in a circle (a Condorcet cycle), which is the regime where
Nash learning differs from reward maximisation. Everything is pure Python (regular expressions, word lists
and the VADER lexicon): the oracle is called on every training step.

>>> oracle = CommitteeOracle()
>>> p = oracle.probability(["Why do cats purr?"] * 2, ["Cats purr when they feel relaxed and safe.", "No."],
...                        ["No.", "Cats purr when they feel relaxed and safe."])
>>> bool(p[0] > 0.9), round(float(p[0] + p[1]), 12)
(True, 1.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from .._numerics import FloatArray
from ..errors import InvalidOracleOutputError, InvalidParameterError
from ..games.game import check_positive
from ..oracles import PreferenceOracle

__all__ = [
    "COMMITTEE_CRITERIA",
    "DEFAULT_COMMITTEE_CRITERIA",
    "CommitteeOracle",
    "quality_penalties",
    "relevance_score",
    "word_count",
]

# --------------------------------------------------------------------------------------------------
# word lists and tokens
# --------------------------------------------------------------------------------------------------

# Words that say nothing about the topic of a prompt: function words, instruction verbs ("explain",
# "suggest") and format words ("sentence", "example"), so that relevance counts only topic words.
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves give tell explain
    describe write please one two three get make use also like actually really quite simple simply short brief
    briefly quick quickly sentence sentences line lines word words example examples summarize summary suggest
    recommend list way ways thing things something someone idea ideas tip tips difference main good best many much
    kind sort let may might must shall i'm it's don't"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Closed-class English words: almost every real sentence of four or more words contains some (about 40 % of
# running English text), keyboard mash and word salad contain none.
_FUNCTION_TEXT = """a an the and or but nor so if then than because while though although until unless since as of to in on at
    by for with from into onto about over under after before between through during up down out off is are was were
    be been being am do does did done have has had will would can could should may might must shall it its this that
    these those i you he she we they me him her us them my your his our their not no yes there here what when where
    which who whom whose why how all any each some such very too also just it's i'm you're they're we're that's
    there's don't doesn't didn't can't won't isn't aren't you'll i'll we'll you've i've let's"""
_FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())

# Vowel-less tokens that are words all the same (an all-capitals token such as "DNA" is accepted separately).
_VOWELLESS_WORDS = frozenset(["mr", "mrs", "ms", "dr", "st", "vs", "pm", "tv", "cd", "dvd", "bbq", "nth"])

# Insults, dismissals and refusals: a helpful answer contains none of these phrases.
_UNHELPFUL = re.compile(
    r"\b(?:stupid|idiot\w*|dumb|moron\w*|shut up|loser|nobody cares|who cares|whatever|figure it out|google it"
    r"|ask someone else|not my problem|stop whining|stop bothering|boring question|waste of (?:my )?time"
    r"|do it yourself|leave me alone|i (?:don't|do not) know|no idea|i refuse|i'm not going to"
    r"|(?:can't|cannot|can not|won't|will not|unable to) (?:help|answer|assist|do that|tell)"
    r"|as an ai|i(?: am|'m) (?:just )?an ai)\b"
)

# Fillers and hedges of an answer that talks without saying anything.
_FILLER = re.compile(
    r"\b(?:um+|uh+|er+m?|you know|i mean|i guess|kind of|sort of|basically|honestly|who (?:really )?knows"
    r"|it (?:all )?depends|at the end of the day)\b|\b(?:like|well|so|yeah),"
)

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_VOWEL = re.compile(r"[aeiouy]")
_CONSONANT_RUN = re.compile(r"[b-df-hj-np-tv-xz]{5}")
_LETTER_RUN = re.compile(r"([a-z])\1\1")
_CLOSING = "\"'”’)]*_ "
_FINAL_PUNCTUATION = ".!?…:;"


def _tokens(text: str) -> list[str]:
    """Word tokens with their original case (apostrophes normalised to ``'``)."""
    return [w.replace("’", "'") for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    """A crude English stem (``"oceans"`` → ``"ocean"``, ``"falling"`` → ``"fall"``), only used to match words."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("ly", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not (suffix == "s" and w.endswith("ss")):
            return w[: -len(suffix)] + keep
    return w


def _topic_stems(tokens: Sequence[str]) -> set[str]:
    return {_stem(w) for w in tokens if w.lower() not in _STOPWORDS and len(w) >= 2 and not w.isdigit()}


def _related(u: str, v: str) -> bool:
    """Equal stems, a shared 6-letter prefix ("vegetarian" / "vegetables"), or a stem of at least 5 letters
    that begins or ends the other ("sleep" / "asleep", "light" / "sunlight")."""
    if u == v:
        return True
    short, long = (u, v) if len(u) <= len(v) else (v, u)
    if len(short) >= 6 and long[:6] == short[:6]:
        return True
    return len(short) >= 5 and (long.startswith(short) or long.endswith(short))


def _coverage(prompt_tokens: Sequence[str], completion_tokens: Sequence[str]) -> float | None:
    """Fraction of the prompt's topic words the completion uses; ``None`` when the prompt has none."""
    wanted = _topic_stems(prompt_tokens)
    if not wanted:
        return None
    have = _topic_stems(completion_tokens)
    return sum(any(_related(w, v) for v in have) for w in wanted) / len(wanted)


def relevance_score(prompt: str, completion: str) -> float:
    r"""Fraction of the prompt's topic words the completion uses: :math:`|W(x)\cap W(y)|/|W(x)|` (0 if W(x) = ∅).

    ``W`` holds crude stems of the non-stopwords (function words, instruction verbs such as "explain" and
    format words such as "sentence" are not topic words); two stems match when equal, when they share
    their first six letters, or when one of at least five letters begins or ends the other.

    >>> relevance_score("Why is the sky blue?", "The sky looks blue because of scattering.")
    1.0
    >>> relevance_score("Suggest a vegetarian lunch.", "Grilled vegetables in a wrap.")
    0.5
    """
    cov = _coverage(_tokens(prompt), _tokens(completion))
    return 0.0 if cov is None else cov


def word_count(text: str) -> int:
    """Word tokens (letters, digits, inner apostrophes)."""
    return len(_tokens(text))


def _is_nonword(token: str) -> bool:
    """A token no English text contains: vowel-less, five consonants or one letter thrice in a row, over 20 letters."""
    if not token.isalpha():
        return False  # numbers and mixed tokens ("WD40", "3pm") are fine
    if token.isupper() and len(token) <= 5:
        return False  # acronyms: "DNA", "TV"
    w = token.lower()
    if len(w) >= 2 and not _VOWEL.search(w) and w not in _VOWELLESS_WORDS:
        return True
    # "ngth" is the one common English cluster that reaches five consonants ("strengths", "lengths").
    return bool(_CONSONANT_RUN.search(w.replace("ngth", "ng")) or _LETTER_RUN.search(w) or len(w) > 20)


def _repetition(words: Sequence[str]) -> float:
    """max(1 − distinct bigrams / bigrams, share of words equal to the previous one); ≈ 0 for prose."""
    if len(words) < 3:
        return 0.0
    bigrams = list(zip(words, words[1:], strict=False))
    stutter = sum(a == b for a, b in bigrams) / len(words)
    return max(1.0 - len(set(bigrams)) / len(bigrams), stutter)


def _unfinished(text: str) -> bool:
    """Whether the text stops mid-sentence: empty, or a letter, digit or comma last (closing quotes ignored)."""
    end = text.strip().rstrip(_CLOSING)
    return not end or (end[-1] not in _FINAL_PUNCTUATION and (end[-1].isalnum() or end[-1] in ",-–—(/&"))


# Where the length penalties start (words): a 48-token completion is about 35 words.
_MIN_WORDS, _MAX_WORDS = 8, 60


def _penalties(prompt_tokens: Sequence[str], completion: str, tokens: Sequence[str]) -> dict[str, float]:
    words = [t.lower() for t in tokens]
    n = len(words)
    lower = completion.lower().replace("’", "'")
    coverage = _coverage(prompt_tokens, tokens)
    function_share = sum(w in _FUNCTION_WORDS for w in words) / n if n else 0.0
    nonword_share = sum(_is_nonword(t) for t in tokens) / n if n else 0.0
    filler_share = len(_FILLER.findall(lower)) / n if n else 0.0
    first = next((c for c in completion if c.isalpha()), "")
    return {
        "short": 2.0 * max(0.0, 1.0 - n / _MIN_WORDS),
        "long": 1.5 * max(0.0, n / _MAX_WORDS - 1.0),
        "gibberish": 1.5 * max(0.0, 1.0 - function_share / 0.15) + 3.0 * nonword_share,
        "repetition": 4.0 * max(0.0, _repetition(words) - 0.1),
        "unfinished": 0.3 * _unfinished(completion),
        "lowercase_start": 0.2 * first.islower(),
        "off_topic": 0.0 if coverage is None else 1.5 * max(0.0, 1.0 - coverage / 0.25),
        "unhelpful": 1.0 * min(2, len(_UNHELPFUL.findall(lower))),
        "filler": 1.5 * min(1.0, 20.0 * max(0.0, filler_share - 0.03)),
    }


def quality_penalties(prompt: str, completion: str) -> dict[str, float]:
    r"""The defect penalties :math:`D_j(x, y) \ge 0` of the committee's shared quality score (see :class:`CommitteeOracle`).

    >>> {k: round(v, 2) for k, v in quality_penalties("Why do cats purr?", "asdf asdf asdf").items() if v}
    {'short': 1.25, 'gibberish': 1.5, 'repetition': 2.27, 'unfinished': 0.3, 'lowercase_start': 0.2, 'off_topic': 1.5}
    >>> sum(quality_penalties("Why do cats purr?", "Cats purr when they feel safe and relaxed.").values())
    0.0
    """
    return _penalties(_tokens(prompt), completion, _tokens(completion))


# --------------------------------------------------------------------------------------------------
# CommitteeOracle
# --------------------------------------------------------------------------------------------------

#: Criteria known to :class:`CommitteeOracle`, by name.
COMMITTEE_CRITERIA = ("sentiment", "relevance", "length", "conciseness", "quality")
#: The default committee: three tastes that can rank three decent answers cyclically.
DEFAULT_COMMITTEE_CRITERIA = ("sentiment", "relevance", "length")


def _vader() -> Callable[[str], float]:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError("the 'sentiment' criterion needs VADER: pip install vadersentiment") from None
    analyzer = SentimentIntensityAnalyzer()
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


class CommitteeOracle(PreferenceOracle):
    r"""The offline default oracle: a soft majority vote of criteria, good answers first, intransitive by construction.

    **Vote.** Each juror :math:`i` scores a completion, :math:`s_i(x, y)`, and votes softly; the preference
    is the mean vote

    .. math:: \mathcal P(a\succ b\mid x) = \frac1m\sum_{i=1}^m \sigma\big(k\,(s_i(x,a)-s_i(x,b))\big),

    so :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1` (σ(z) + σ(−z) = 1) and identical completions get ½.

    **Juror score = shared quality + own taste.** For a named criterion

    .. math:: s_i(x, y) = -\lambda \sum_j D_j(x, y) + t_i(x, y),

    where the defect penalties :math:`D_j \ge 0` (:func:`quality_penalties`; ``n`` = number of words, ``c`` =
    the share of the prompt's topic words the answer uses, see :func:`relevance_score`) are

    * short: :math:`2\,(1 - n/8)_+` (empty, "No.", answers cut after a few words);
    * long: :math:`1.5\,(n/60 - 1)_+` (rambling; a 48-token completion is about 35 words);
    * gibberish: :math:`1.5\,(1 - f/0.15)_+ + 3\,g`, with ``f`` the share of function words (≈ 0.4 in English
      prose, 0 in keyboard mash) and ``g`` the share of non-words (no vowel, five consonants or one letter
      thrice in a row, over 20 letters);
    * repetition: :math:`4\,(r - 0.1)_+`, with ``r`` the larger of the share of repeated word bigrams and of
      words equal to their predecessor (loops, "ice ice ice");
    * unfinished: 0.3 when the text does not end in ``. ! ? … : ;`` (small, so that a good answer cut at the
      token limit still beats a bad complete one), lowercase start: 0.2;
    * off-topic: :math:`1.5\,(1 - c/0.25)_+` (no topic word of the prompt: answers to another question);
    * unhelpful: 1 per insult, dismissal or refusal phrase ("idiot", "who cares", "I don't know", "as an AI",
      ...), at most 2;
    * filler: :math:`1.5\,\min\big(1, 20\,(h/n - 0.03)_+\big)` for ``h`` fillers and hedges ("um", "you know",
      "it depends"): one hedge in 30 words costs 0.1, a rambling non-answer the full 1.5.

    The tastes :math:`t_i` are

    * ``relevance``: :math:`t = c \in [0, 1]`;
    * ``length``: :math:`t = -\min\big(1, \tfrac12\,|\log_2(n/n^\ast)|\big) \in [-1, 0]`, a preferred length of
      ``target_words`` :math:`n^\ast` (one to three sentences), half a unit off at ½n* and 2n*;
    * ``sentiment``: half the VADER compound score, :math:`t \in [-\tfrac12, \tfrac12]` (warmth; lexicon-based,
      the package ``vadersentiment`` is imported on first use);
    * ``conciseness``: :math:`t = -n/\text{length\_scale}` (shorter is better);
    * ``quality``: :math:`t = 0`, the shared score alone.

    A callable criterion ``(prompt, completion) -> float`` is used as given (no shared quality term).

    **Why it ranks good over bad and still cycles.** The default tastes span at most 1 (relevance and length
    lie in [0, 1] and [−1, 0], sentiment in [−½, ½]), so when the bad answer's penalties exceed the good one's
    by :math:`\lambda\Delta D \ge 1.35` every juror votes :math:`\ge \sigma(0.35\,k) \approx 0.80` for the good
    answer whatever the tastes; with a smaller gap the tastes must mostly agree too. The 36 hand-written
    pairs of ``tests/data/oracle_sanity_pairs.jsonl`` (gibberish, "No.", off-topic, loops, truncation,
    rudeness, empty answers, answers to another question, rambling; good answers cut at the token limit
    included) all score :math:`\mathcal P(\text{good}\succ\text{bad}) \ge 0.8`, a test asserts it. Among
    answers of equal quality only the tastes differ, and relevance, length and warmth can rank three answers
    cyclically, so the majority is intransitive (a Condorcet cycle, also tested) and no reward function
    explains it.

    Limits: the criteria are lexical and English. A good answer that shares no topic word with the prompt
    (not even a stem: "sleep" matches "asleep") is scored off-topic, and an on-topic answer that is wrong is
    not detected.

    Args:
        criteria: names from :data:`COMMITTEE_CRITERIA` or callables; default
            :data:`DEFAULT_COMMITTEE_CRITERIA`.
        sharpness: :math:`k>0`; large values give hard majority votes.
        length_scale: words per unit of the ``conciseness`` taste.
        target_words: :math:`n^\ast`, the preferred answer length of the ``length`` taste.
        quality: :math:`\lambda \ge 0`, the weight of the shared quality score (0: tastes only).
    """

    def __init__(
        self,
        criteria: Sequence[str | Callable[[str, str], float]] = DEFAULT_COMMITTEE_CRITERIA,
        *,
        sharpness: float = 4.0,
        length_scale: float = 20.0,
        target_words: float = 20.0,
        quality: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(criteria, str):
            criteria = (criteria,)
        if len(criteria) == 0:
            raise InvalidParameterError(f"CommitteeOracle needs at least one criterion from {COMMITTEE_CRITERIA}.")
        check_positive("sharpness", sharpness)
        check_positive("length_scale", length_scale)
        check_positive("target_words", target_words)
        if not isinstance(quality, int | float) or not math.isfinite(quality) or quality < 0:
            raise InvalidParameterError(f"quality must be a finite non-negative weight, got {quality!r}.")
        self.sharpness = float(sharpness)
        self.length_scale = float(length_scale)
        self.target_words = float(target_words)
        self.quality = float(quality)
        self.criteria = tuple(criteria)
        for criterion in self.criteria:
            if not callable(criterion) and criterion not in COMMITTEE_CRITERIA:
                raise InvalidParameterError(
                    f"unknown committee criterion {criterion!r}; choose from {', '.join(COMMITTEE_CRITERIA)} "
                    "or pass a callable (prompt, completion) -> float."
                )
        self._sentiment = _vader() if "sentiment" in self.criteria else None
        self._named = any(not callable(c) for c in self.criteria)  # only named criteria share the quality score

    def _juror_scores(self, prompt: str, completion: str) -> list[float]:
        prompt_tokens, tokens = _tokens(prompt), _tokens(completion)
        n = len(tokens)
        shared = -self.quality * sum(_penalties(prompt_tokens, completion, tokens).values()) if self._named else 0.0
        out = []
        for criterion in self.criteria:
            if callable(criterion):
                out.append(float(criterion(prompt, completion)))
                continue
            if criterion == "relevance":
                coverage = _coverage(prompt_tokens, tokens)
                taste = 0.0 if coverage is None else coverage
            elif criterion == "length":  # −min(1, ½|log2(n/n*)|); the empty answer is as far off as can be
                taste = -min(1.0, 0.5 * abs(math.log2(n / self.target_words))) if n else -1.0
            elif criterion == "conciseness":
                taste = -n / self.length_scale
            elif criterion == "sentiment":
                assert self._sentiment is not None
                taste = 0.5 * self._sentiment(completion)
            else:  # "quality": the shared score alone
                taste = 0.0
            out.append(shared + taste)
        return out

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> FloatArray:
        """``(n, m)`` juror scores :math:`s_i(x, y)`; non-finite scores raise InvalidOracleOutputError."""
        rows = [self._juror_scores(str(x), str(y)) for x, y in zip(prompts, completions, strict=True)]
        s = np.array(rows, dtype=np.float64).reshape(len(completions), len(self.criteria))
        if not np.all(np.isfinite(s)):
            raise InvalidOracleOutputError("a CommitteeOracle criterion returned NaN or inf scores.")
        return s

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        n = len(a)
        s = self.scores([*contexts, *contexts], [*a, *b])
        return expit(self.sharpness * (s[:n] - s[n:])).mean(axis=1)
