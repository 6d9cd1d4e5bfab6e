"""benchmarks/llm_gpu.py at its CPU smoke size: every configuration runs (nashmp and TRL 1.0.0), and the
FLOP accounting behind its MFU column counts what the model really computes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def llm_gpu():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("llm_gpu", BENCH / "llm_gpu.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))


def test_matmul_params_and_token_counter(llm_gpu):
    import torch

    model, _ = llm_gpu.build_model("tiny", 0)
    arch = llm_gpu.ARCHS["tiny"]
    h, f, layers, v = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"], arch["vocab_size"]
    kv = h // arch["num_attention_heads"] * arch["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * f  # q, o; k, v; gate, up, down
    assert llm_gpu.matmul_params(model) == layers * per_layer + v * h  # the tied LM head counted once

    counter = llm_gpu.TokenCounter(v)
    try:
        ids = torch.randint(0, v, (3, 5))
        with torch.no_grad():
            model(input_ids=ids)
        assert (counter.forward_no_grad, counter.forward_grad) == (15, 0)
        model(input_ids=ids[:2]).logits.sum().backward()
        assert (counter.forward_no_grad, counter.forward_grad) == (15, 10)
        n = llm_gpu.matmul_params(model)
        assert counter.flops(n, lora=False) == 2 * n * 25 + 4 * n * 10
        assert counter.flops(n, lora=True) == 2 * n * 25 + 2 * n * 10
        # a KV-cached decode step processes its new token only
        counter.reset()
        with torch.no_grad():
            from nashmp.llm.sampling import CACHE_ATTR, CACHE_KW

            out = model(input_ids=ids[:1], use_cache=True)
            model(input_ids=ids[:1, :1], use_cache=True, **{CACHE_KW: getattr(out, CACHE_ATTR)})
        assert counter.forward_no_grad == 5 + 1
    finally:
        counter.handle.remove()


def test_summarise_mfu(llm_gpu):
    steps = [{"seconds": 2.0, "sample_seconds": 1.0, "sampled_tokens": 100, "flops": 4e12, "length": 4.0},
             {"seconds": 4.0, "sample_seconds": 1.0, "sampled_tokens": 300, "flops": 4e12, "length": 6.0}]  # fmt: skip
    s = llm_gpu.summarise(steps, peak_tflops=1.0)
    assert s["seconds_per_step"] == 3.0
    assert s["generation_tokens_per_s"] == 200.0
    assert s["model_tflops_per_s"] == pytest.approx(4 / 3)
    assert s["mfu"] == pytest.approx(4 / 3)
    assert llm_gpu.summarise(steps, peak_tflops=None)["mfu"] is None
    assert llm_gpu.default_peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert llm_gpu.default_peak_tflops("cpu") is None


def test_tiny_run_every_configuration(llm_gpu, tmp_path):
    records = llm_gpu.main(["--tiny", "--in-process", "--bf16", "0", "--workdir", str(tmp_path / "w"),
                            "--out", str(tmp_path / "llm_gpu")])  # fmt: skip
    by = {(r["trainer"], r["lora"]): r for r in records}
    assert set(by) == {(t, lora) for t in llm_gpu.TRAINERS for lora in (True, False)}
    for (trainer, lora), r in by.items():
        assert r["status"] == "ok", (trainer, lora, r.get("traceback"))
        assert r["seconds_per_step"] > 0 and r["sample_seconds_per_step"] > 0
        assert r["peak_memory_gb"] > 0 and r["model_tflops_per_step"] > 0
        step = r["steps"][0]
        rows = 2 * 2 if trainer.startswith("nashmp") else 2  # --tiny: 2 prompts, k = 2 (TRL: 1 policy sample)
        assert step["backward_tokens"] > 0  # the policy's scoring pass is backpropagated
        assert step["forward_tokens"] > step["backward_tokens"]  # sampling and π_ref passes are not
        if trainer == "nashmp:nash-mp":  # self-play: one sampling call of B·k rows
            assert step["sampled_tokens"] == pytest.approx(rows * step["length"])
        # LoRA trains fewer parameters than full fine-tuning
    for t in llm_gpu.TRAINERS:
        assert by[(t, True)]["trainable_params"] < by[(t, False)]["trainable_params"]
    saved = json.loads((tmp_path / "llm_gpu.json").read_text())
    assert len(saved["records"]) == len(records)
    table = (tmp_path / "llm_gpu.md").read_text()
    assert table.count("| tiny |") == len(records)
