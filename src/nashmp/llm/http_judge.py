r"""An OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp, Ollama, hosted APIs) as a pairwise judge.

Standard library only. Every request is bounded: a total deadline (connect, headers and body together, so a
server that drips bytes cannot hold a worker), a cap on the reply size, no redirects (the request carries the
API key), capped exponential back-off that honours ``Retry-After``; the API key is never pickled.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._numerics import FloatArray
from ..errors import InvalidOracleOutputError, InvalidParameterError, JudgeError
from ..games.game import check_positive, check_positive_int
from ..oracles import PreferenceOracle
from .http_transport import _Deadline, _is_loopback, _opener, _retry_after
from .judge_template import _check_template, _debias

__all__ = ["HTTPJudge", "InsecureJudgeURLWarning", "parse_judge_answer"]

# A server reports log-probabilities rounded from float32/bf16: allow that much above 0 (and above a total
# probability of 1) before calling the numbers invalid.
_LOGPROB_SLACK = 1e-6
_MASS_SLACK = 1e-2


class InsecureJudgeURLWarning(UserWarning):
    """An :class:`HTTPJudge` talks plain ``http://`` to a host that is not this machine."""


class _RetryableError(Exception):
    """A judge call that failed in a way worth retrying (timeout, connection, 429/5xx, unparsable answer)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if any


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m if m == -math.inf else m + math.log(sum(math.exp(v - m) for v in values))


def parse_judge_answer(response: dict[str, Any], answer_tokens: tuple[str, str] = ("A", "B")) -> tuple[float, float]:
    r"""``(q_A, q_B)`` from an OpenAI-style chat completion; raises ``ValueError`` if there is no verdict.

    From ``logprobs.content[0].top_logprobs`` when it lists ``"A"`` or ``"B"`` (leading/trailing spaces
    ignored, variants merged with logsumexp): :math:`q = \operatorname{softmax}(\log p_A, \log p_B)`. A
    verdict token missing from the list gets an upper bound of its log-probability,
    :math:`\min(\min_{\text{listed}} \log p,\ \log(1-\sum_{\text{listed}} p))`, which errs towards ½.
    Without usable log-probabilities the answer text decides: ``"A"`` → (1, 0), ``"B"`` → (0, 1).

    The listed numbers must be log-probabilities of one distribution over tokens: each :math:`\log p \le 0`
    and :math:`\sum p \le 1` (up to rounding); otherwise (e.g. a server that reports probabilities or raw
    logits, or both answers at log-probability 0) it raises
    :class:`~nashmp.errors.InvalidOracleOutputError`, a ``ValueError``, instead of scoring a verdict.

    >>> parse_judge_answer({"choices": [{"message": {"content": "B"}}]})
    (0.0, 1.0)
    """
    choice = response["choices"][0]
    content = ((choice.get("logprobs") or {}).get("content")) or []
    if content:
        entries: dict[str, float] = {}
        for item in [content[0], *(content[0].get("top_logprobs") or [])]:
            if isinstance(item, dict) and "token" in item and item.get("logprob") is not None:
                lp = float(item["logprob"])
                if math.isnan(lp):
                    continue
                if lp > _LOGPROB_SLACK:  # also stops math.exp overflowing above ~709
                    raise InvalidOracleOutputError(
                        f"the judge reported log-probability {lp!r} for the token {item['token']!r}; "
                        "log-probabilities are ≤ 0, so the server's logprobs are not log-probabilities."
                    )
                entries[str(item["token"])] = min(lp, 0.0)
        wanted = [tok.strip() for tok in answer_tokens]
        found = {tok: [lp for t, lp in entries.items() if t.strip() == tok] for tok in wanted}
        if any(found.values()):
            listed = list(entries.values())
            mass = sum(math.exp(lp) for lp in listed)
            if mass > 1.0 + _MASS_SLACK:
                raise InvalidOracleOutputError(
                    f"the judge's listed tokens have total probability {mass:.4g} > 1 (e.g. both answers at "
                    "log-probability 0): not a distribution over tokens."
                )
            floor = min(min(listed), math.log(1.0 - mass) if mass < 1.0 else -math.inf)
            la, lb = (_logsumexp(found[tok]) if found[tok] else floor for tok in wanted)
            top = max(la, lb)
            if top > -math.inf:  # both at −inf says nothing; the answer text may still decide
                wa, wb = math.exp(la - top), math.exp(lb - top)
                return wa / (wa + wb), wb / (wa + wb)
    text = str((choice.get("message") or {}).get("content") or "").strip().strip("*()[]\"'.:").strip()
    if text == answer_tokens[0].strip():
        return 1.0, 0.0
    if text == answer_tokens[1].strip():
        return 0.0, 1.0
    raise ValueError(f"no verdict in the judge's answer {text[:80]!r}")


# --------------------------------------------------------------------------------------------------
# HTTPJudge
# --------------------------------------------------------------------------------------------------


class HTTPJudge(PreferenceOracle):
    r"""An OpenAI-compatible chat-completions server as a pairwise judge, debiased over both orders.

    Each ordered pair is one ``POST {base_url}/chat/completions`` with the
    :data:`~nashmp.llm.judge_template.DEFAULT_JUDGE_TEMPLATE` instruction as the user message and
    ``max_tokens=1, temperature=0, logprobs=True, top_logprobs=20``; :func:`parse_judge_answer` turns the reply
    into :math:`(q_A, q_B)` and the pair's answer is :math:`\tfrac12[q_A(x,a,b) + q_B(x,b,a)]`. Identical
    answers are answered ½ without a request (the debiased value for any deterministic judge). Requests run
    ``batch_size`` at a time in threads.

    Each attempt must finish within ``timeout`` seconds in total (connect, headers and body) and its reply
    may not exceed ``max_response_bytes``. Redirects are never followed (the request carries the API key;
    a 3xx raises :class:`~nashmp.errors.JudgeError`), and plain ``http://`` to a host other than this
    machine warns with :class:`InsecureJudgeURLWarning`.

    Retries: timeouts, connection errors, HTTP 429 and 5xx, and replies without a verdict are retried
    ``max_retries`` times after sleeping :math:`\min(\text{backoff}\cdot 2^{\text{attempt}},\ \text{max\_backoff})`
    seconds (attempt = 0, 1, ...), or at least the ``Retry-After`` of a 429/503 reply; a ``Retry-After``
    beyond ``max_backoff`` raises at once. Then :class:`~nashmp.errors.JudgeError` names the URL and the last
    error. Other HTTP errors (401, 404, ...) and over-long replies raise at once; invalid log-probabilities
    raise :class:`~nashmp.errors.InvalidOracleOutputError`. A failure is never scored as a tie.

    The API key is not pickled: an unpickled judge reads ``$OPENAI_API_KEY`` again when the key came from
    there, and has no key when it was passed as ``api_key=`` (copies made with :mod:`copy` keep it).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (the path up to ``/chat/completions``).
        model: the judge model name the server expects.
        api_key: bearer token; default ``$OPENAI_API_KEY``, none sent when unset (local servers).
        template: judge instruction with ``{question}``, ``{answer_a}``, ``{answer_b}``.
        batch_size: concurrent requests.
        timeout: seconds per attempt, in total.
        max_retries: retries after the first attempt.
        backoff: base of the exponential back-off, in seconds.
        max_backoff: the longest sleep between attempts, in seconds.
        max_response_bytes: the largest reply accepted.
        sleep: the sleep function (injectable for tests).
        extra_body: extra JSON fields merged into every request (e.g. ``{"seed": 0}``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        template: str | None = None,
        batch_size: int = 8,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_response_bytes: int = 1_000_000,
        sleep: Callable[[float], Any] = time.sleep,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidParameterError(f"base_url must start with http:// or https://, got {base_url!r}.")
        host = urllib.parse.urlsplit(base_url).hostname
        if not host:
            raise InvalidParameterError(f"base_url {base_url!r} names no host.")
        if not isinstance(model, str) or not model:
            raise InvalidParameterError("HTTPJudge needs model=, the judge model name the server serves.")
        check_positive_int("batch_size", batch_size)
        check_positive("timeout", timeout)
        check_positive_int("max_response_bytes", max_response_bytes)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidParameterError(f"max_retries must be a non-negative integer, got {max_retries!r}.")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidParameterError(f"{name} must be a non-negative number of seconds, got {value!r}.")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self._key_from_env = api_key is None
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if base_url.startswith("http://") and not _is_loopback(host):
            sent = "prompts, answers and the API key" if self._api_key else "prompts and answers"
            warnings.warn(
                f"HTTPJudge sends {sent} unencrypted to {host} over http://; use https:// unless the network "
                "between here and the judge is trusted.",
                InsecureJudgeURLWarning,
                stacklevel=2,
            )
        self.template = _check_template(template)
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_response_bytes = int(max_response_bytes)
        self.sleep = sleep
        self.extra_body = dict(extra_body or {})
        self.requests = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()  # requests are counted from the worker threads

    def __repr__(self) -> str:  # never shows the API key
        return f"HTTPJudge({self.base_url!r}, model={self.model!r})"

    # -- pickling and copies: the key stays in this process ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_api_key"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._api_key = os.environ.get("OPENAI_API_KEY") if self._key_from_env else None

    def __copy__(self) -> HTTPJudge:
        clone = object.__new__(type(self))
        clone.__setstate__(self.__getstate__())
        clone._api_key = self._api_key
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> HTTPJudge:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        clone._api_key = self._api_key
        return clone

    # -- one request ---------------------------------------------------------------------------------
    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.requests += 1
        with _Deadline(self.timeout) as deadline:
            try:
                raw = self._exchange(_opener(deadline), request)
            except (JudgeError, _RetryableError):
                raise
            except Exception as exc:  # after a shutdown, http.client and ssl fail in many ways
                if deadline.expired:
                    raise _RetryableError(f"timed out: no complete reply within {self.timeout:g} s") from None
                if isinstance(exc, OSError | http.client.HTTPException):  # refused/reset, bad status lines
                    raise _RetryableError(f"{type(exc).__name__}: {exc}") from None
                raise
            if deadline.expired:  # a body cut short by the shutdown can still parse
                raise _RetryableError(f"timed out: no complete reply within {self.timeout:g} s")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _RetryableError(f"reply is not JSON ({exc}): {raw[:80]!r}") from None
        if not isinstance(data, dict):
            raise _RetryableError(f"reply is not a JSON object: {raw[:80]!r}")
        return data

    def _exchange(self, opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> bytes:
        """The reply body, at most ``max_response_bytes``; HTTP errors sorted into retryable or final."""
        cap = self.max_response_bytes
        try:
            with opener.open(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > cap:
                    raise self._too_long(f"announces {int(length)} bytes")
                raw = response.read(cap + 1)
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(200).decode(errors="replace")
            except (OSError, http.client.HTTPException):
                detail = ""
            finally:
                exc.close()  # an HTTPError holds the open response
            message = f"HTTP {exc.code} {exc.reason}: {detail}".strip()
            if 300 <= exc.code < 400:
                raise JudgeError(
                    f"judge at {self.url} answered a redirect ({message}) to {exc.headers.get('Location')!r}; "
                    "redirects are not followed because the request carries the API key: set base_url to "
                    "the final address."
                ) from None
            if exc.code == 429 or exc.code >= 500:
                wait = _retry_after(exc.headers.get("Retry-After")) if exc.code in (429, 503) else None
                raise _RetryableError(message, retry_after=wait) from None
            raise JudgeError(f"judge at {self.url} refused the request ({message}); not retried.") from None
        if len(raw) > cap:
            raise self._too_long(f"sent more than {cap} bytes")
        return bytes(raw)

    def _too_long(self, what: str) -> JudgeError:
        return JudgeError(
            f"judge at {self.url} {what}, over max_response_bytes={self.max_response_bytes}; a one-token verdict "
            "is a few kB: check base_url, or raise max_response_bytes."
        )

    def judge(self, question: str, first: str, second: str) -> tuple[float, float]:
        """``(q_A, q_B)`` for one ordered pair, with retries; raises :class:`~nashmp.errors.JudgeError`."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "user", "content": self.template.format(question=question, answer_a=first, answer_b=second)}
            ],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 20,
            **self.extra_body,
        }
        last, wait = "no attempt", 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(wait)
            try:
                response = self._post(body)
                try:
                    return parse_judge_answer(response)
                except InvalidOracleOutputError as exc:  # a server that misreports numbers will not get better
                    raise InvalidOracleOutputError(f"judge at {self.url}: {exc}") from None
                except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                    raise _RetryableError(f"unparsable answer: {exc}") from None
            except _RetryableError as exc:
                last = str(exc)
                wait = min(self.backoff * 2**attempt, self.max_backoff)
                if exc.retry_after is not None:
                    if exc.retry_after > self.max_backoff and attempt < self.max_retries:
                        raise JudgeError(
                            f"judge at {self.url} asks to retry after {exc.retry_after:g} s ({last}), longer "
                            f"than max_backoff={self.max_backoff:g} s; wait, or raise max_backoff."
                        ) from None
                    wait = max(wait, exc.retry_after)
        raise JudgeError(f"judge at {self.url} failed after {self.max_retries} retries; last error: {last}")

    def _probability(self, contexts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> FloatArray:
        n = len(a)
        rows = [i for i in range(n) if a[i] != b[i]]
        jobs = [(str(contexts[i]), str(a[i]), str(b[i])) for i in rows]
        jobs += [(q, y, x) for q, x, y in jobs]
        result = np.full(n, 0.5)
        if not jobs:
            return result
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(jobs))) as pool:
            futures = [pool.submit(self.judge, *job) for job in jobs]
            try:
                q = np.array([f.result() for f in futures], dtype=np.float64)
            except BaseException:
                for f in futures:  # do not send the queued requests of a failed batch
                    f.cancel()
                raise
        result[rows] = _debias(q[: len(rows)], q[len(rows) :])
        return result
