"""The offline model's one-time conversion is safe when several processes run it at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from nashmp.llm.models import publish_folder  # noqa: E402


def test_concurrent_conversions_publish_one_complete_folder(tmp_path: Path) -> None:
    # Two benchmark runs (or the ranks of an `accelerate launch`) converted the GGUF at the same time into
    # one shared `.partial` folder: one run's rename or clean-up removed the folder the other was writing
    # into ("I/O error: No such file or directory"). Every writer now has its own temporary folder.
    target = tmp_path / "cache" / "model"
    writers = 6
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(folder: Path, who: int) -> None:
        barrier.wait()  # every writer is inside its write at once
        (folder / "model.safetensors").write_text(f"weights of {who}")
        time.sleep(0.05)
        (folder / "config.json").write_text(f"config of {who}")

    def convert(who: int) -> None:
        try:
            publish_folder(target, lambda folder: write(folder, who))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    winner = (target / "model.safetensors").read_text().split()[-1]
    assert (target / "config.json").read_text() == f"config of {winner}"  # one writer's complete folder
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no temporary folder is left
    assert target.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private mode


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def fail(folder: Path) -> None:
        (folder / "model.safetensors").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_folder(target, fail)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a partial folder: the next run converts again
