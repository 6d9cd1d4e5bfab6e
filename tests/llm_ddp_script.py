"""Run by ``test_two_process_accelerate_launch`` under ``accelerate launch --num_processes 2 --cpu``.

Each rank writes ``ranks/rank{i}.txt``: checksum of the trained parameters, checksum before training,
and the trainer's query count.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def main(out: Path) -> None:
    import numpy as np
    import torch

    from nashmp.llm.config import NashMPConfig
    from nashmp.llm.models import tiny_model_and_tokenizer
    from nashmp.llm.trainer import NashMPTrainer
    from nashmp.oracles import CallableOracle

    torch.set_num_threads(1)

    def score(text: str) -> float:
        return sum(ord(c) for c in text) / (10 * max(len(text), 1)) + len(text) / 5

    def longer(x, a, b):  # type: ignore[no-untyped-def]
        d = np.array([score(s) for s in a]) - np.array([score(s) for s in b])
        return 0.5 * (1 + np.tanh(d / 2))

    model, tok = tiny_model_and_tokenizer(seed=0)
    cfg = NashMPConfig(
        algorithm="nash-mp",
        use_peft=False,
        max_steps=2,
        max_new_tokens=6,
        per_device_train_batch_size=2,
        num_generations=2,
        learning_rate=1e-2,
        output_dir=str(out / "run"),
        progress_bar=False,
    )
    prompts = ["Say hi.", "Name a colour.", "What is 2+2?", "Tell me a joke.", "Describe rain.", "Why?"]
    trainer = NashMPTrainer(cfg, model=model, tokenizer=tok, oracle=CallableOracle(longer), prompts=prompts)
    ids, mask = trainer.encode_prompts(["Say hi."] * 4)  # the same prompt on both ranks
    _, _, texts = trainer._sample_from("self", ids, mask)
    drawn = hashlib.sha256("|".join(texts).encode()).hexdigest()[:12]
    before = float(sum(p.detach().double().sum() for p in trainer.params))
    trainer.train()
    after = float(sum(p.detach().double().sum() for p in trainer.params))
    rank = trainer.accelerator.process_index
    (out / "ranks").mkdir(exist_ok=True)
    (out / "ranks" / f"rank{rank}.txt").write_text(
        f"{after:.10e} {before:.10e} {after:.10e} {trainer.queries} {trainer.accelerator.num_processes} {drawn}\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
