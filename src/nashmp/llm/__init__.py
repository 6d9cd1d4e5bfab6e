"""Online NLHF fine-tuning of causal language models (needs ``pip install nashmp[llm]``).

``NashMPConfig`` + ``NashMPTrainer`` (Nash-MP practical and faithful, Nash-MD, online IPO, EGPO) on
transformers + accelerate (+ peft), text preference oracles (:mod:`nashmp.llm.judges`) and evaluation
(:mod:`nashmp.llm.evaluate`). The losses are the approximate layer's (:mod:`nashmp.approx.losses`).
"""

from .config import LLM_ALGORITHMS, NashMPConfig
from .models import ModelNotFoundError, load_model_and_tokenizer, offline_model_dir, tiny_model_and_tokenizer
from .sampling import ModelView, completion_log_probs, sample_completions
from .trainer import METRICS, NashMPTrainer, latest_checkpoint

__all__ = [
    "NashMPConfig",
    "NashMPTrainer",
    "LLM_ALGORITHMS",
    "METRICS",
    "latest_checkpoint",
    "ModelNotFoundError",
    "load_model_and_tokenizer",
    "offline_model_dir",
    "tiny_model_and_tokenizer",
    "ModelView",
    "sample_completions",
    "completion_log_probs",
]
