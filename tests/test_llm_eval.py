"""LLM evaluation: win-rate matrix, intervals, KL to the reference, policy loading, the ``nashmp eval`` CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from nashmp.cli.main import main  # noqa: E402
from nashmp.errors import InvalidParameterError  # noqa: E402
from nashmp.llm.evaluate import (  # noqa: E402
    Z_95,
    PolicySource,
    generate,
    load_policy,
    mean_confidence_interval,
    resolve_policy,
    win_rate_matrix,
    write_eval_report,
)
from nashmp.llm.judges import LMJudge  # noqa: E402
from nashmp.llm.models import ModelNotFoundError, byte_tokenizer, tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.sampling import CACHE_ATTR  # noqa: E402
from nashmp.oracles import CallableOracle  # noqa: E402

PROMPTS = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke."]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class ConstantLM(torch.nn.Module):
    """A stand-in causal LM that always emits ``token`` (almost surely: its logit leads by 100)."""

    def __init__(self, token: int, vocab: int) -> None:
        super().__init__()
        self.vocab, self.token = vocab, token
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: Any, logits_to_keep: int = 0, **_: Any) -> Any:
        length = logits_to_keep or input_ids.shape[1]
        logits = torch.zeros(input_ids.shape[0], length, self.vocab)
        logits[..., self.token] = 100.0
        return SimpleNamespace(logits=logits, **{CACHE_ATTR: None})


def short_and_long(max_new_tokens: int) -> dict[str, tuple[Any, Any]]:
    """``short`` answers "" (EOS at once), ``long`` answers ``max_new_tokens`` letters "x"."""
    tok = byte_tokenizer()
    vocab, x = len(tok), tok.convert_tokens_to_ids("x")
    return {"short": (ConstantLM(tok.eos_token_id, vocab), tok), "long": (ConstantLM(x, vocab), tok)}


def longer_wins(prompts: list[str], every: int = 2) -> CallableOracle:
    """P(a ≻ b | x) = 1 if a is longer (½ on ties), reversed on the prompts whose index is −1 mod ``every``."""
    index = {p: i for i, p in enumerate(prompts)}

    def fn(x, a, b):  # type: ignore[no-untyped-def]
        longer = np.sign(np.array([len(s) for s in a]) - np.array([len(s) for s in b]))
        sign = np.array([-1 if index[p] % every == every - 1 else 1 for p in x])
        return 0.5 + 0.5 * sign * longer

    return CallableOracle(fn)


# --------------------------------------------------------------------------- estimators


def test_confidence_interval_formula_contains_the_mean_and_shrinks() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0])
    mean, low, high = mean_confidence_interval(values)
    half = Z_95 * values.std(ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.75, 0.75 - half, 0.75 + half))
    assert mean_confidence_interval(values, bounds=(0.0, 1.0))[2] == 1.0
    widths = [np.subtract(*mean_confidence_interval([0.0, 1.0] * m)[2:0:-1]) for m in (2, 8, 32)]
    assert widths[0] > widths[1] > widths[2] > 0
    assert mean_confidence_interval([0.3])[1:] == (-np.inf, np.inf)


# --------------------------------------------------------------------------- win rates


def test_matrix_is_antisymmetric_with_half_diagonal_for_a_debiased_judge() -> None:
    models = {f"m{s}": tiny_model_and_tokenizer(seed=s) for s in range(3)}
    judge_model, judge_tok = tiny_model_and_tokenizer(seed=7)
    judge = LMJudge(judge_model, judge_tok)
    result = win_rate_matrix(models, PROMPTS, judge, max_new_tokens=5, temperature=1.0, seed=3)
    W = result.win_rate
    np.testing.assert_allclose(W + W.T, 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(W), 0.5)
    np.testing.assert_allclose(result.ci_low + result.ci_high.T, 1.0, atol=1e-12)
    assert np.all(result.ci_low <= W) and np.all(result.ci_high >= W)
    # the judge itself is debiased: asking the other order gives the complement, prompt by prompt
    a, b = result.completions["m0"][0], result.completions["m1"][0]
    np.testing.assert_allclose(judge.probability(PROMPTS, b, a), result.per_prompt[1, 0], atol=1e-12)
    assert judge.queries == 3 * len(PROMPTS) + len(PROMPTS)  # one call per pair of policies (+ the check)


def test_a_policy_against_itself_is_exactly_one_half_when_completions_coincide() -> None:
    model, tok = tiny_model_and_tokenizer(seed=0)
    judge = LMJudge(*tiny_model_and_tokenizer(seed=7))
    policies = {"a": (model, tok), "a-copy": (copy.deepcopy(model), tok), "b": short_and_long(6)["long"]}
    result = win_rate_matrix(policies, PROMPTS, judge, max_new_tokens=6, temperature=0.0)
    assert result.completions["a"] == result.completions["a-copy"]
    np.testing.assert_array_equal(result.win_rate[0], result.win_rate[1])  # identical rows
    assert result.win_rate[0, 1] == 0.5 and result.ci_low[0, 1] == result.ci_high[0, 1] == 0.5
    assert judge.queries == 2 * len(PROMPTS)  # ties are never sent to the judge
    assert np.isnan(result.kl_ref).all()  # greedy: no samples, no KL (and no policy named ref)


def test_equal_models_and_seeds_give_equal_samples_and_policies_draw_independently() -> None:
    model, tok = tiny_model_and_tokenizer(seed=0)
    kwargs: dict[str, Any] = {"max_new_tokens": 6, "temperature": 1.0, "samples_per_prompt": 2}
    first = generate(model, tok, PROMPTS, seed=5, **kwargs)
    again = generate(copy.deepcopy(model), tok, PROMPTS, seed=5, **kwargs)
    assert first.texts == again.texts and first.texts[0] != first.texts[1]
    state = torch.random.get_rng_state()
    result = win_rate_matrix(
        {"a": (model, tok), "b": (model, tok)}, PROMPTS, CallableOracle(lambda x, a, b: [0.5] * len(a)), **kwargs
    )
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert result.completions["a"] != result.completions["b"]  # independent draws (not common random numbers)


def test_hand_computed_win_rate_and_interval_on_a_controlled_case() -> None:
    policies = short_and_long(max_new_tokens=4)
    judge = longer_wins(PROMPTS, every=4)
    result = win_rate_matrix(policies, PROMPTS, judge, max_new_tokens=4, temperature=0.7, samples_per_prompt=2)
    assert result.completions["long"][0] == ["xxxx"] * 4 and result.completions["short"][1] == [""] * 4
    # long beats short on prompts 0, 1 and 2 and loses on prompt 3: per-prompt values 1, 1, 1, 0
    np.testing.assert_array_equal(result.per_prompt[1, 0], [1.0, 1.0, 1.0, 0.0])
    half = Z_95 * np.std([1, 1, 1, 0], ddof=1) / 2  # 1.96 · 0.5 / 2 = 0.49
    assert result.win_rate[1, 0] == 0.75 and result.win_rate[0, 1] == 0.25
    assert (result.ci_low[1, 0], result.ci_high[1, 0]) == pytest.approx((0.75 - half, 1.0))  # clipped at 1
    assert (result.ci_low[0, 1], result.ci_high[0, 1]) == pytest.approx((0.0, 0.25 + half))
    np.testing.assert_array_equal(result.average_win_rate, [0.25, 0.75])
    np.testing.assert_array_equal(result.mean_length, [1.0, 4.0])  # EOS counts as a token
    assert judge.queries == 2 * 4  # one call: 4 prompts × 2 samples


def test_interval_contains_the_mean_and_shrinks_with_more_prompts() -> None:
    widths = []
    for n in (4, 16, 64):
        prompts = [f"prompt {i}" for i in range(n)]
        judge = longer_wins(prompts)
        result = win_rate_matrix(short_and_long(3), prompts, judge, max_new_tokens=3, temperature=0.0)
        assert result.n == n and result.win_rate[1, 0] == 0.5
        assert result.ci_low[1, 0] < 0.5 < result.ci_high[1, 0]
        widths.append(result.ci_high[1, 0] - result.ci_low[1, 0])
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] / widths[2] == pytest.approx(2.0, rel=0.05)  # ∝ 1/√n


def test_kl_of_the_reference_against_itself_is_zero() -> None:
    """Issue 13, item 12: π_ref's own KL is 0 by a shortcut (``ref_model is model``), so the property is checked
    on a *distinct copy*: each sample's log-ratio is 0 to float error, while another model's KL is positive."""
    ref, tok = tiny_model_and_tokenizer(seed=0)
    other, _ = tiny_model_and_tokenizer(seed=1, hidden_size=64)
    twin = copy.deepcopy(ref)
    kwargs: dict[str, Any] = {"max_new_tokens": 8, "temperature": 1.0, "samples_per_prompt": 2, "seed": 5}
    same = generate(twin, tok, PROMPTS, reference=(ref, tok), **kwargs)
    assert same.log_ratio.shape == (2, len(PROMPTS)) and np.abs(same.log_ratio).max() < 1e-5
    apart = generate(other, tok, PROMPTS, reference=(ref, tok), **kwargs)
    assert np.isfinite(apart.log_ratio).all() and apart.log_ratio.mean() > 0.1
    policies = {"ref": (ref, tok), "copy": (twin, tok), "other": (other, tok)}
    judge = CallableOracle(lambda x, a, b: [0.5] * len(a))
    result = win_rate_matrix(policies, PROMPTS, judge, **kwargs)
    assert result.settings["reference"] == "ref"
    assert result.kl_ref[1] == pytest.approx(0.0, abs=1e-6)  # estimated (a different object), not the shortcut
    assert result.kl_ref[2] > 0.1 and result.kl_ci_low[2] <= result.kl_ref[2] <= result.kl_ci_high[2]
    # an explicit reference: everything is measured against `other`; ref and its copy are then equally far
    result = win_rate_matrix(policies, PROMPTS, judge, reference="other", **kwargs)
    assert min(result.kl_ref[:2]) > 0.01 and result.kl_ref[2] == 0.0


def test_bad_arguments() -> None:
    pair = tiny_model_and_tokenizer(seed=0)
    judge = CallableOracle(lambda x, a, b: [0.5] * len(a))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"policies": {}}, "at least one policy"),
        ({"prompts": []}, "at least one prompt"),
        ({"judge": object()}, "PreferenceOracle"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": 0.0, "samples_per_prompt": 2}, "greedy"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"reference": "nope"}, "reference 'nope'"),
    ]
    for overrides, message in cases:
        kwargs: dict[str, Any] = {"policies": {"a": pair}, "prompts": PROMPTS, "judge": judge, **overrides}
        with pytest.raises(InvalidParameterError, match=message):
            win_rate_matrix(kwargs.pop("policies"), kwargs.pop("prompts"), kwargs.pop("judge"), **kwargs)


def test_report_files(tmp_path: Path) -> None:
    result = win_rate_matrix(short_and_long(3), PROMPTS, longer_wins(PROMPTS), max_new_tokens=3, temperature=0.0)
    paths = write_eval_report(result, tmp_path / "out")
    with paths["win_rates"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["row", "column", "win_rate", "ci_low", "ci_high", "n"] and len(rows) == 4
    assert {(r["row"], r["column"]): float(r["win_rate"]) for r in rows}[("long", "short")] == 0.5
    with paths["kl_ref"].open() as fh:
        assert next(csv.reader(fh))[:4] == ["policy", "kl_ref", "ci_low", "ci_high"]
    assert paths["plot"].stat().st_size > 1000
    assert "| long |" in paths["markdown"].read_text()
    assert len(paths["completions"].read_text().splitlines()) == 2 * len(PROMPTS)
    assert json.loads(paths["settings"].read_text())["temperature"] == 0.0


# --------------------------------------------------------------------------- loading policies


def _save_base(tmp_path: Path) -> tuple[Path, Any, Any]:
    model, tok = tiny_model_and_tokenizer(seed=0)
    base = tmp_path / "base"
    model.save_pretrained(str(base))
    tok.save_pretrained(str(base))
    return base, model, tok


def _logits(model: Any, tok: Any) -> Any:
    ids = tok(["hello there"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_load_policy_round_trips_lora_adapters_and_full_models(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base, model, tok = _save_base(tmp_path)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), lora).eval()
    peft_model.save_pretrained(str(tmp_path / "run" / "final"))
    tok.save_pretrained(str(tmp_path / "run" / "final"))
    expected = _logits(peft_model, tok)
    assert not torch.allclose(expected, _logits(model, tok))  # the adapters do something

    source = resolve_policy(str(tmp_path / "run" / "final"))
    assert source == PolicySource("adapter", str(tmp_path / "run" / "final"), str(base))
    merged, merged_tok = load_policy(source)
    assert not hasattr(merged, "peft_config") and not merged.training
    torch.testing.assert_close(_logits(merged, merged_tok), expected, atol=1e-5, rtol=1e-5)
    unmerged, _ = load_policy(str(tmp_path / "run" / "final"), merge=False)
    torch.testing.assert_close(_logits(unmerged, tok), expected, atol=1e-6, rtol=0)

    full, full_tok = load_policy(str(base))  # a full model folder
    torch.testing.assert_close(_logits(full, full_tok), _logits(model, tok), atol=0, rtol=0)
    assert resolve_policy("ref", base=str(base)) == PolicySource("base", str(base))


def test_resolve_policy_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "noname").mkdir()
    (tmp_path / "noname" / "adapter_config.json").write_text("{}")
    cases = {
        str(tmp_path / "missing" / "final"): "not found",
        str(tmp_path / "empty"): "neither adapter_config.json",
        str(tmp_path / "run"): "did you mean",
        str(tmp_path / "noname"): "base_model_name_or_path",
    }
    for spec, message in cases.items():
        with pytest.raises(ModelNotFoundError, match=message):
            resolve_policy(spec)


# --------------------------------------------------------------------------- CLI


def _fail_if_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import nashmp.llm.evaluate as evaluate

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded before the inputs were validated")

    monkeypatch.setattr(evaluate, "load_policy", boom)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "ref", "no/such/run/final"], "not found"),
        (["--policies", "ref", "ref", "--judge", "oracle-of-delphi"], "unknown judge 'oracle-of-delphi'"),
        (["--policies", "ref", "ref", "--num-prompts", "0"], "--num-prompts must be ≥ 1"),
        (["--policies", "ref", "ref", "--temperature", "-0.5"], "--temperature must be ≥ 0"),
        (["--policies", "ref", "ref", "--names", "a"], "--names has 1 names for 2 policies"),
        (["--policies", "ref", "ref", "--judge", "http:http://127.0.0.1:9"], "needs --judge-model"),
        (["--policies", "ref", "ref", "--judge", "committee:taste"], "unknown committee criterion"),
        (["--policies", "ref", "ref", "--prompts", "missing.jsonl"], "does not exist"),
        (["--policies", "ref", "ref", "--reference", "nobody"], "--reference 'nobody'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    extra: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_if_loaded(monkeypatch)
    base, _, _ = _save_base(tmp_path)
    capsys.readouterr()  # drop transformers' "Writing model shards" bar
    code = main(["eval", "--base", str(base), "--out", str(tmp_path / "out"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_cli_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--out", "x"])
    assert exc.value.code == 2 and "--policies" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0 and "different judge from the training oracle" in " ".join(
        capsys.readouterr().out.split()
    )


def test_cli_end_to_end_on_tiny_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base, _, tok = _save_base(tmp_path)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), lora).save_pretrained(str(tmp_path / "x/final"))
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS))
    out = tmp_path / "eval"
    code = main(
        ["eval", "--policies", "ref", str(tmp_path / "x/final"), "--judge", "lm-judge", "--judge-model", str(base)]
        + ["--prompts", str(tmp_path / "prompts.txt"), "--num-prompts", "3", "--max-new-tokens", "4"]
        + ["--out", str(out), "--no-progress", "--batch-size", "2"]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "| ref |" in printed and "| x/final |" in printed
    settings = json.loads((out / "eval.json").read_text())
    assert settings["base"] == str(base) and settings["reference"] == "ref"
    assert settings["judge"] == f"lm-judge ({base})"
    with (out / "kl_ref.csv").open() as fh:
        kl = {r["policy"]: float(r["kl_ref"]) for r in csv.DictReader(fh)}
    assert kl["ref"] == 0.0 and np.isfinite(kl["x/final"])
    for name in ("win_rates.csv", "win_rates.png", "eval.md", "completions.jsonl"):
        assert (out / name).is_file()


def test_several_judges_share_one_generation() -> None:
    """win_rate_matrices generates once and judges with each: equal to one win_rate_matrix per judge."""
    from nashmp.llm.evaluate import win_rate_matrices
    from nashmp.oracles import CallableOracle

    models = {f"m{s}": tiny_model_and_tokenizer(seed=s) for s in range(2)}
    longer = CallableOracle(lambda x, a, b: [float(len(u) > len(v)) for u, v in zip(a, b, strict=True)])
    half = CallableOracle(lambda x, a, b: [0.5] * len(a))
    both = win_rate_matrices(models, PROMPTS, {"longer": longer, "half": half}, max_new_tokens=5, seed=2)
    alone = win_rate_matrix(models, PROMPTS, longer, max_new_tokens=5, seed=2)
    assert both["longer"].completions == both["half"].completions == alone.completions
    np.testing.assert_array_equal(both["longer"].win_rate, alone.win_rate)
    np.testing.assert_array_equal(both["half"].win_rate, 0.5)


def test_evaluate_is_split_along_its_seams_and_keeps_its_import_paths() -> None:
    """Issue 13, item 13: modules a reader can hold (< 400 lines), the public names still importable from evaluate."""
    import importlib
    import inspect

    import nashmp.llm.evaluate as evaluate

    homes = {"load_policy": "eval_policies", "resolve_policy": "eval_policies", "PolicySource": "eval_policies",
             "generate": "eval_generation", "write_eval_report": "eval_report"}  # fmt: skip
    for name, home in homes.items():
        module = importlib.import_module(f"nashmp.llm.{home}")
        assert getattr(evaluate, name) is getattr(module, name) and name in evaluate.__all__
    for module_name in ("evaluate", *set(homes.values())):
        source = inspect.getsource(importlib.import_module(f"nashmp.llm.{module_name}"))
        assert source.count("\n") < 400, module_name
