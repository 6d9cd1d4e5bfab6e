"""``nashmp train``: online NLHF fine-tuning of a causal LM from a YAML config and/or flags.

Every :class:`~nashmp.llm.NashMPConfig` field is a flag (``--beta 0.05``, ``--use-peft false``,
``--report-to tensorboard,csv``); flags override the YAML file. Runs under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

__all__ = ["add_train_arguments", "config_from_args"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`NashMPConfig` field, its help generated from the field's docstring and type."""
    from .._fields import field_docs
    from ..llm.config import LLM_ALGORITHMS, LR_SCHEDULERS, OPPONENTS, NashMPConfig
    from ._common import field_type

    parser.add_argument("--config", help="YAML file of NashMPConfig fields (flags below override it)")
    hints = typing.get_type_hints(NashMPConfig)
    docs = field_docs(NashMPConfig)
    choices: dict[str, Any] = {
        "algorithm": list(LLM_ALGORITHMS),
        "opponent": list(OPPONENTS),
        "lr_scheduler_type": list(LR_SCHEDULERS),
    }
    group = parser.add_argument_group("NashMPConfig fields")
    for f in dataclasses.fields(NashMPConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
        text = docs.get(f.name, "")
        if f.name in choices:
            text += " Choices: " + ", ".join(choices[f.name]) + "."
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=field_type(f.name, hints[f.name]),
            default=argparse.SUPPRESS,  # only flags given explicitly override the YAML file
            metavar=type(default).__name__.upper() if default is not None else "VALUE",
            help=f"{text} [{kind}; default: {default}]".replace("%", "%%"),
        )


def config_from_args(args: argparse.Namespace) -> Any:
    """Validated :class:`NashMPConfig` from ``--config`` plus explicit flags (no model is loaded)."""
    from ..llm.config import NashMPConfig

    names = {f.name for f in dataclasses.fields(NashMPConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return NashMPConfig.from_yaml(args.config, **overrides)
    return NashMPConfig.from_dict(overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from ..llm.trainer import NashMPTrainer

    config = config_from_args(args)
    trainer = NashMPTrainer(config)
    history = trainer.train()
    if trainer.accelerator.is_main_process and history:
        out = Path(config.output_dir)
        last = history[-1]
        win = ""
        if "eval/win_rate" in last:
            n = len(trainer.eval_prompts)
            win = f", held-out win rate vs π_ref on {n} prompts: {last['eval/win_rate']:.3f} (training oracle)"
            if "eval/win_rate_judge" in last:
                win += f", {last['eval/win_rate_judge']:.3f} ({config.eval_judge})"
        print(
            f"{config.algorithm}: {int(last['step'])} steps, {int(last['charts/queries'])} queries, "
            f"KL(π‖π_ref) {last['train/kl_ref']:.3g}{win}; model in {out / 'final'}, log in {out / 'log.csv'}, "
            f"curves in {out / 'training.png'}"
        )
    return 0
