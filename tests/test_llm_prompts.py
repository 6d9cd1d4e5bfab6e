"""Prompt formats (TRL's standard and conversational prompt-only datasets) and system prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from nashmp.errors import InvalidParameterError  # noqa: E402
from nashmp.llm.config import NashMPConfig  # noqa: E402
from nashmp.llm.models import tiny_model_and_tokenizer  # noqa: E402
from nashmp.llm.prompts import as_prompt, load_prompts, prompt_messages, prompt_text  # noqa: E402
from nashmp.llm.sampling import encode_prompts  # noqa: E402
from nashmp.llm.trainer import NashMPTrainer  # noqa: E402
from nashmp.oracles import CallableOracle  # noqa: E402

CONVERSATIONS = [
    [{"role": "system", "content": "Answer like a pirate."}, {"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "Say hi."}],
    [
        {"role": "user", "content": "Count to two."},
        {"role": "assistant", "content": "One, two."},
        {"role": "user", "content": "Now to three."},
    ],
]


def test_conversational_jsonl_loads_and_the_oracle_reads_the_last_user_turn(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": c}) + "\n" for c in CONVERSATIONS) + json.dumps({"prompt": "plain"}))
    prompts = load_prompts(path)
    assert [prompt_text(p) for p in prompts] == ["Name a fruit.", "Say hi.", "Now to three.", "plain"]
    assert prompts[0] == tuple(CONVERSATIONS[0]) and prompts[3] == "plain"


def test_the_chat_template_renders_system_and_earlier_turns_once() -> None:
    _, tok = tiny_model_and_tokenizer()
    ids, mask = encode_prompts(tok, [as_prompt(CONVERSATIONS[2])], max_length=512)
    text = tok.decode(ids[0][mask[0] == 1])
    assert text.count("<|im_start|>") == 4  # three turns and the generation prompt, each rendered once
    assert "Count to two." in text and "One, two." in text and text.endswith("<|im_start|>assistant\n")
    ids, mask = encode_prompts(tok, ["Say hi.", as_prompt(CONVERSATIONS[0])], max_length=512, system_prompt="Be kind.")
    first, second = (tok.decode(ids[r][mask[r] == 1]) for r in range(2))
    assert "<|im_start|>system\nBe kind.<|im_end|>" in first
    assert "Answer like a pirate." in second and "Be kind." not in second  # its own system turn wins
    assert prompt_messages("x", "s")[0] == {"role": "system", "content": "s"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"role": "user"}], "must be"),
        ([{"role": "robot", "content": "hi"}], "unknown role"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "end with a user turn"),
        (42, "a prompt is a string"),
    ],
)
def test_malformed_conversations_are_one_line_errors(value: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        as_prompt(value)


def test_trainer_trains_on_conversations_with_a_system_prompt(tmp_path: Path) -> None:
    """The oracle is asked about the last user turn; the policy reads the whole conversation."""
    seen: list[str] = []

    def fn(x: list[str], a: list[str], b: list[str]) -> np.ndarray:
        seen.extend(x)
        return np.full(len(a), 0.5)

    model, tok = tiny_model_and_tokenizer(seed=0)
    cfg = NashMPConfig(max_steps=1, max_new_tokens=4, per_device_train_batch_size=3, num_generations=2,
                       output_dir=str(tmp_path / "run"), progress_bar=False, system_prompt="Be brief.")  # fmt: skip
    trainer = NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=CallableOracle(fn), prompts=CONVERSATIONS)
    encoded = tok.batch_decode(trainer.encode_prompts(trainer._batch_prompts(0))[0])
    assert sum("Be brief." in e for e in encoded) == 2  # the pirate conversation keeps its own system turn
    trainer.train()
    assert sorted(set(seen)) == ["Name a fruit.", "Now to three.", "Say hi."]


def test_the_benchmarks_large_training_set_never_holds_a_held_out_prompt() -> None:
    """benchmarks/data/prompts_train_large.jsonl (the default ``train`` split plus 800 prompts written for the
    prompt-diversity run of docs/llm-benchmarks.md §8 B) is disjoint from the ``test`` split that measures
    generalisation, and free of duplicates, so its held-out win rates are held out."""
    import difflib
    import re

    from nashmp.llm.prompts import default_prompts

    root = Path(__file__).resolve().parents[1]
    large = load_prompts(root / "benchmarks" / "data" / "prompts_train_large.jsonl")
    assert len(large) == 972 and large[:172] == default_prompts("train")

    def words(p: object) -> str:
        return " ".join(re.findall(r"[a-z0-9']+", str(p).lower()))

    assert len({words(p) for p in large}) == len(large)
    test = [words(p) for p in default_prompts("test")]
    closest = max(difflib.SequenceMatcher(None, words(p), t).ratio() for p in large[172:] for t in test)
    assert closest < 0.6, closest
