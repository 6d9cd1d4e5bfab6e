"""The run folder of :class:`~nashmp.llm.NashMPTrainer`: ``log.csv`` and ``completions.jsonl``, atomic
``checkpoint-N/`` folders, resume (with the settings a resumed run must keep) and the final model."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torch import Tensor

from ..errors import CheckpointError, InvalidParameterError
from .config import NashMPConfig

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "LEGACY_NAMES", "METRICS", "RESUME_LOCKED", "TRACKER_TEXT", "RunFolder", "current_names", "latest_checkpoint",
    "read_log", "resolve_resume",
]  # fmt: skip

V = TypeVar("V")

#: The metrics every algorithm logs: one ``log.csv`` column each, the same names in every tracker. Namespaced as
#: across the project (CleanRL/TRL style): ``charts/`` progress counters and rates, ``losses/`` the loss and its
#: optimisation diagnostics, ``train/`` other statistics of the step's samples, ``eval/`` the held-out
#: evaluation; the x-axis ``step`` is not namespaced (it is the trackers' ``step=``). docs/llm.md lists
#: exactly these (tested), with TRL's name where TRL logs the same quantity.
METRICS = {
    "step": "optimiser steps taken",
    "charts/queries": "preference queries so far, summed over processes (one per compared pair)",
    "charts/completions": "completions that entered the gradient so far, summed over processes",
    "charts/learning_rate": "the step's learning rate (lr_scheduler_type, warm-up)",
    "charts/seconds": "wall-clock seconds of the step",
    "charts/sample_seconds": "of which sampling completions",
    "losses/loss": "the algorithm's loss on this step's batch",
    "losses/grad_norm": "gradient norm before clipping",
    "train/preference": "mean P(y ≻ y') over the compared pairs (½ by construction under self-play)",
    "train/advantage_std": "standard deviation of the sequence advantages (the preference signal's spread)",
    "train/kl_ref": "sequence KL(π_θ‖π_ref) estimated on the policy's samples (mean of Σ_t log π_θ − log π_ref)",
    "train/kl_anchor": "sequence KL(π_θ‖π̄) to the prox centre, same estimator (0 for algorithms without one)",
    "train/length": "mean completion length in tokens",
    "train/eos_fraction": "fraction of completions that ended with EOS within max_new_tokens",
    "eval/win_rate": "held-out win rate of π_θ against π_ref under the training oracle (eval_steps)",
    "eval/win_rate_judge": "the same under eval_judge (empty without one)",
}
#: Sent to the trackers only (text, not a CSV column), every ``log_completions_steps`` steps.
TRACKER_TEXT = {"samples/completion": "one sampled answer, the answer it was compared with and P(answer ≻ other)"}
#: The bare names nashmp logged before the namespaces (issue 13): resume migrates an old ``log.csv`` and the
#: checkpoint's history, and readers of cached run logs (training.png, benchmarks/) go through :func:`current_names`.
LEGACY_NAMES = {
    "queries": "charts/queries", "completions": "charts/completions", "learning_rate": "charts/learning_rate",
    "seconds": "charts/seconds", "sample_seconds": "charts/sample_seconds", "loss": "losses/loss",
    "grad_norm": "losses/grad_norm", "preference": "train/preference", "advantage_std": "train/advantage_std",
    "kl_ref": "train/kl_ref", "kl_anchor": "train/kl_anchor", "length": "train/length",
    "eos_fraction": "train/eos_fraction", "eval_win_rate": "eval/win_rate", "eval_win_rate_judge": "eval/win_rate_judge",
}  # fmt: skip


def current_names(row: Mapping[str, V]) -> dict[str, V]:
    """``row`` with its pre-namespace keys (:data:`LEGACY_NAMES`) renamed; current keys pass unchanged."""
    return {LEGACY_NAMES.get(k, k): v for k, v in row.items()}


def read_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a run's ``log.csv`` under the current names, whichever nashmp version wrote it."""
    with Path(path).open(newline="") as fh:
        return [current_names(r) for r in csv.DictReader(fh)]


def _check_log_header(path: Path) -> None:
    """Refuse to resume into a ``log.csv`` with columns nashmp never wrote (another tool's file): migrating it
    would silently drop them."""
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    unknown = [c for c in header if c not in METRICS and c not in LEGACY_NAMES]
    if unknown:
        raise CheckpointError(
            f"{path} has columns nashmp does not write ({', '.join(unknown)}); move that file away to resume the run."
        )


def _gather_objects(obj: Any) -> list[Any]:
    from accelerate.utils import gather_object

    return list(gather_object([obj]))


def _step_of(line: str) -> float:
    """The step of a ``completions.jsonl`` record; a line cut by a kill mid-append counts as after any step."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` folder with the largest N in ``output_dir``, or None.

    Complete means it holds ``trainer_state.json``, written last (and folders appear by an atomic rename),
    so a run killed while saving never leaves a ``latest`` that cannot be loaded; names that are not
    ``checkpoint-<integer>`` (``checkpoint-best``, temporary folders) are ignored.
    """
    found = []
    for p in Path(output_dir).glob("checkpoint-*"):
        suffix = p.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (p / "trainer_state.json").is_file():
            found.append((int(suffix), p))
    return max(found)[1] if found else None


#: fields a resumed run must share with the checkpoint (anything else — logging, trackers, threads,
#: evaluation, and max_steps unless the schedule depends on it — may change)
RESUME_LOCKED = (
    "model_name_or_path", "dataset", "prompt_column", "dataset_split", "max_prompt_length", "max_new_tokens",
    "temperature", "dtype", "algorithm", "opponent", "beta", "eta", "ema", "half_every", "prox_every",
    "inner_steps", "mixture_coef", "oracle", "per_device_train_batch_size", "num_generations", "use_peft",
    "lora_r", "lora_alpha", "lora_target_modules", "seed", "kl_estimator", "lora_dropout",
    "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "system_prompt",
)  # fmt: skip
#: schedules whose rate depends on ``max_steps`` beyond the warm-up (a resumed run must keep max_steps)
DECAYING_SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial")


def resolve_resume(cfg: NashMPConfig) -> Path | None:
    """The checkpoint a run resumes from (None: a fresh run), after refusing a used folder or changed settings."""
    out = Path(cfg.output_dir)
    if cfg.resume_from_checkpoint is None:
        used = (out / "log.csv").exists() or (out / "completions.jsonl").exists() or any(out.glob("checkpoint-*"))
        if used and not cfg.overwrite_output_dir:
            raise InvalidParameterError(
                f"{out} already holds a run (log.csv or checkpoint-N); resume it with "
                "resume_from_checkpoint=latest, pick another output_dir, or set overwrite_output_dir=true."
            )
        if used:  # a fresh run: the old log and checkpoints would mix with the new ones
            import shutil

            (out / "log.csv").unlink(missing_ok=True)
            (out / "completions.jsonl").unlink(missing_ok=True)
            for old in out.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
        return None
    if cfg.resume_from_checkpoint == "latest":
        found = latest_checkpoint(out)
        if found is None:
            raise InvalidParameterError(f"resume_from_checkpoint=latest but {out} has no complete checkpoint-N.")
        path = found
    else:
        path = Path(cfg.resume_from_checkpoint)
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        raise InvalidParameterError(f"{path} is not a complete nashmp checkpoint (no trainer_state.json).")
    pickled = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
    if pickled:  # accelerate would unpickle it with weights_only=False: code in a crafted file would run
        raise CheckpointError(
            f"{path} holds {', '.join(pickled)}, a pickle nashmp does not load (it could run code); if you wrote "
            "this checkpoint yourself, delete the file and resume: the learning-rate schedule is replayed."
        )
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        saved = state["config"]
    except (ValueError, KeyError, TypeError):
        raise InvalidParameterError(f"{state_file} is corrupt; resume from another checkpoint.") from None
    now = cfg.to_dict()
    locked = RESUME_LOCKED + (("max_steps",) if cfg.lr_scheduler_type in DECAYING_SCHEDULES else ())
    changed = [f"{k}: {saved[k]!r} → {now[k]!r}" for k in locked if k in saved and saved[k] != now[k]]
    try:  # the warm-up the run started with must stay (warmup_steps, or warmup_ratio of the saved max_steps)
        warmup = int(saved.get("warmup_steps") or math.floor(saved.get("warmup_ratio", 0) * saved["max_steps"]))
    except (KeyError, TypeError, ValueError):
        warmup = cfg.num_warmup_steps
    if warmup != cfg.num_warmup_steps:
        changed.append(f"warm-up steps: {warmup} → {cfg.num_warmup_steps} (set warmup_steps={warmup})")
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    saved_processes = state.get("num_processes", processes)
    if saved_processes != processes:  # another global batch, prompt order and per-process RNG streams
        changed.append(f"processes: {saved_processes} → {processes}")
    if changed:
        raise InvalidParameterError(
            f"cannot resume {path} with other settings ({'; '.join(changed)}); use the saved values or a new "
            "output_dir."
        )
    if (out / "log.csv").is_file():
        _check_log_header(out / "log.csv")
    return path


def _save_rng(path: Path) -> None:
    """This process's torch RNG streams (CPU, and every CUDA device) as safetensors."""
    import torch
    from safetensors.torch import save_file

    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(states, str(path))


def _load_rng(path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    states = load_file(str(path))
    if "cpu" not in states:
        raise CheckpointError(f"{path} holds no CPU generator state; it is not a nashmp RNG file.")
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():  # the devices both runs see (a checkpoint may come from a larger machine)
        for i in range(torch.cuda.device_count()):
            if f"cuda{i}" in states:
                torch.cuda.set_rng_state(states[f"cuda{i}"], i)


class RunFolder:
    """What :class:`~nashmp.llm.NashMPTrainer` writes into ``output_dir`` (a mixin: the trainer holds the state)."""

    accelerator: Accelerator
    config: NashMPConfig
    output_dir: Path
    step: int
    queries: int
    completions: int
    history: list[dict[str, float]]
    snapshots: dict[str, list[Tensor]]
    sharded: bool
    lr_scheduler: Any
    tokenizer: Any
    _samples: list[tuple[str, str, str, float]]

    @property
    def raw_model(self) -> Any:  # provided by the trainer
        raise NotImplementedError

    def _restore_lr_scheduler(self, saved: Any) -> None:
        """The schedule's state from ``trainer_state.json``; a checkpoint written before it was saved here (its
        scheduler was in accelerate's pickle, which is no longer read) replays the schedule to ``step``: a
        transformers schedule is a function of the step count alone, so both are exact."""
        if isinstance(saved, dict):
            expected = set(self.lr_scheduler.state_dict())
            if not expected <= set(saved):
                raise CheckpointError(f"trainer_state.json's lr_scheduler lacks {sorted(expected - set(saved))}.")
            self.lr_scheduler.load_state_dict(saved)
            return
        import warnings

        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": a replay, not training
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(self.step):
                self.lr_scheduler.step()

    @property
    def own_training_state(self) -> bool:  # provided by the trainer (trainer_weights): FSDP2 or DeepSpeed
        raise NotImplementedError

    @property
    def launch(self) -> str:
        raise NotImplementedError

    def save_snapshots(self, folder: Path) -> None:  # provided by the trainer (trainer_weights)
        raise NotImplementedError

    def load_snapshots(self, folder: Path) -> None:
        raise NotImplementedError

    def model_state_for_saving(self) -> dict[str, Tensor] | None:
        raise NotImplementedError

    def save_sharded_training_state(self, folder: Path) -> None:
        raise NotImplementedError

    def load_sharded_training_state(self, folder: Path) -> None:
        raise NotImplementedError

    def _counters(self) -> dict[str, float]:
        """The x-axis and the progress counters every logged row starts with."""
        return {"step": float(self.step), "charts/queries": float(self.queries),
                "charts/completions": float(self.completions)}  # fmt: skip

    def _log(self, row: dict[str, float]) -> None:
        acc = self.accelerator
        if self.config.trackers:
            acc.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        if not acc.is_main_process:
            return
        path = self.output_dir / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(METRICS))
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in METRICS})

    def _log_completions(self) -> None:
        """This step's sampled answers, one per prompt with the answer it was compared with and P(answer ≻ other),
        appended to ``completions.jsonl`` and sent to the trackers as text."""
        acc = self.accelerator
        records = [{"step": self.step, "prompt": x, "completion": a, "other": b, "preference": p}
                   for x, a, b, p in self._samples]  # fmt: skip
        gathered = records if acc.num_processes == 1 else sum(_gather_objects(records), [])
        if self.config.trackers and gathered:
            first = gathered[0]
            text = f"**prompt** {first['prompt']}\n\n**completion** {first['completion']}\n\n**other** {first['other']}"
            acc.log(
                {"samples/completion": text + f"\n\nP(completion ≻ other) = {first['preference']:.3f}"}, step=self.step
            )
        if acc.is_main_process:
            with (self.output_dir / "completions.jsonl").open("a", encoding="utf-8") as fh:
                for record in gathered:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-{step}``: model, optimiser and RNG (accelerate), snapshots, state."""
        acc = self.accelerator
        path = self.output_dir / f"checkpoint-{self.step}"
        # written into a temporary folder and renamed once complete: a kill mid-save leaves no checkpoint-N
        tmp = self.output_dir / f".tmp-checkpoint-{self.step}"
        if acc.is_main_process and tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        if self.own_training_state:  # each rank its state, safetensors (accelerate's FSDP or DeepSpeed path
            # would gather the model or write pickles)
            if acc.is_main_process:
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            self.save_sharded_training_state(tmp)
        else:
            acc.save_state(str(tmp))
        self.save_snapshots(tmp)
        _save_rng(tmp / f"rng.rank{acc.process_index}.safetensors")
        acc.wait_for_everyone()  # every process's RNG (and snapshot-shard) file is in tmp before it is renamed
        if acc.is_main_process:
            state = {
                "step": self.step,
                "queries": self.queries,
                "completions": self.completions,
                "num_processes": acc.num_processes,
                "sharded": self.sharded,
                "launch": self.launch,
                # fp16's loss scale (accelerate saves it only in its own checkpoint, skipped under FSDP2)
                "grad_scaler": acc.scaler.state_dict() if self.sharded and acc.scaler is not None else None,
                "lr_scheduler": self.lr_scheduler.state_dict(),  # floats and ints (LambdaLR): JSON, never pickle
                "history": self.history,
                "config": self.config.to_dict(),
            }
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
            if path.exists():
                import shutil

                shutil.rmtree(path)
            tmp.replace(path)
        acc.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a :meth:`save_checkpoint` folder; training then continues exactly where it stopped."""
        path = Path(path)
        state = json.loads((path / "trainer_state.json").read_text())
        # other files (and, under FSDP2, a broadcast); checkpoints from before "launch" was saved: DDP or FSDP2
        written = state.get("launch", "fsdp2" if state.get("sharded") else "replicated")
        if written != self.launch:
            raise CheckpointError(
                f"{path} was written under another launch ({written}; this run: {self.launch}); resume it with "
                "the launch configuration that wrote it."
            )
        if self.own_training_state:
            self.load_sharded_training_state(path)
            if state.get("grad_scaler") and self.accelerator.scaler is not None:
                self.accelerator.scaler.load_state_dict(state["grad_scaler"])
        else:
            self.accelerator.load_state(str(path))
        self.load_snapshots(path)
        # accelerate's own RNG file is a pickle it reads with weights_only=True, and it skips that file
        # silently when it cannot read it; this one is safetensors and restores the sampling streams exactly
        rng = path / f"rng.rank{self.accelerator.process_index}.safetensors"
        if rng.is_file():
            _load_rng(rng)
        self.step, self.queries = int(state["step"]), int(state["queries"])
        self._restore_lr_scheduler(state.get("lr_scheduler"))
        self.history = [current_names(row) for row in state["history"]]
        self.completions = int(state.get("completions", 0))
        log = self.output_dir / "log.csv"
        if self.accelerator.is_main_process and log.exists():  # drop rows logged after the checkpoint
            # an older nashmp's log is migrated to the current names (resolve_resume refused anything else)
            rows = [r for r in read_log(log) if float(r["step"]) <= self.step]
            with log.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(METRICS))
                writer.writeheader()
                writer.writerows(rows)
        samples = self.output_dir / "completions.jsonl"
        if self.accelerator.is_main_process and samples.exists():  # the same for the sample log
            kept = [line for line in samples.read_text(encoding="utf-8").splitlines() if _step_of(line) <= self.step]
            samples.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def save_model(self, path: str | Path) -> Path:
        """The policy as safetensors (adapters only with LoRA) plus the tokenizer: loadable by ``nashmp eval``."""
        path = Path(path)
        acc = self.accelerator
        acc.wait_for_everyone()
        state = self.model_state_for_saving()  # gathered on every rank under FSDP2 (a collective)
        if acc.is_main_process:
            extra = {} if state is None else {"state_dict": state}
            self.raw_model.save_pretrained(str(path), safe_serialization=True, **extra)
            self.tokenizer.save_pretrained(str(path))
            (path / "nashmp_config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        acc.wait_for_everyone()
        return path
