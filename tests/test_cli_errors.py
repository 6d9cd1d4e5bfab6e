"""Issue 13: every bad input to every ``nashmp`` subcommand exits 2 with one ``nashmp: error:`` line, no traceback.

The table runs in-process (``main(argv)``), so it is fast; each case fails before any heavy work (no model
is loaded and no environment is stepped). ``test_the_table_covers_every_subcommand`` keeps it complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from nashmp.cli.main import build_parser, main

from .conftest import P3, REF3

GAME = ["--family", "rps", "--n", "6", "--beta", "0.1"]

#: (subcommand, argv after it, a phrase the message must hold); {tmp} is a fresh folder, {P}/{ref} valid files
CASES: list[tuple[str, list[str], str]] = [
    ("", [], "required"),
    ("", ["nosuch"], "invalid choice"),
    ("solve", ["--out", "{tmp}/s"], "--beta"),
    ("solve", [*GAME[:4], "--beta", "abc", "--out", "{tmp}/s"], "invalid float"),
    ("solve", ["--family", "nosuch", "--beta", "0.1", "--out", "{tmp}/s"], "invalid choice"),
    ("solve", ["--family", "random", "--n", "0", "--beta", "0.1", "--out", "{tmp}/s"], "n"),
    ("solve", ["--family", "random", "--n", "200000", "--beta", "0.1", "--out", "{tmp}/s"], "GiB"),
    ("solve", ["--preference", "{tmp}/none.npy", "--ref", "{ref}", "--beta", "0.1", "--out", "{tmp}/s"], "not found"),
    (
        "solve",
        ["--preference", "{P}", "--ref", "{ref}", "--weights", "{ref}", "--beta", "0.1", "--out", "{tmp}/s"],
        "weights",
    ),  # fmt: skip
    ("solve", ["--preference", "{P}", "--ref", "{ref}", "--beta", "0.1", "--tol", "-1", "--out", "{tmp}/s"], "tol"),
    ("solve", ["--preference", "{P}", "--ref", "{ref}", "--beta", "nan", "--out", "{tmp}/s"], "beta"),
    ("run", [*GAME, "--algo", "nosuch", "--queries", "5", "--out", "{tmp}/r"], "invalid choice"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "0", "--out", "{tmp}/r"], "queries"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "5", "--param", "eta=nan", "--out", "{tmp}/r"], "eta"),
    ("run", [*GAME, "--algo", "nash-md", "--queries", "5", "--param", "decay=maybe", "--out", "{tmp}/r"], "decay"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "5", "--param", "nosuch=1", "--out", "{tmp}/r"], "nosuch"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "5", "--param", "omd:eta=1", "--out", "{tmp}/r"], "omd"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "5", "--param", "=1", "--out", "{tmp}/r"], "KEY=VALUE"),
    ("run", [*GAME, "--algo", "nash-mp", "--queries", "5", "--record-every", "0", "--out", "{tmp}/r"], "record"),
    ("compare", [*GAME, "--algos", "", "--queries", "5", "--out", "{tmp}/c"], "names no algorithm"),
    ("compare", [*GAME, "--algos", "nash-mp,nosuch", "--queries", "5", "--out", "{tmp}/c"], "nosuch"),
    ("compare", [*GAME, "--queries", "-1", "--out", "{tmp}/c"], "queries"),
    ("approx", [*GAME, "--recipe", "", "--queries", "64", "--out", "{tmp}/a"], "names no recipe"),
    ("approx", [*GAME, "--recipe", "magic", "--queries", "64", "--out", "{tmp}/a"], "unknown recipe"),
    ("approx", [*GAME, "--queries", "64", "--param", "nosuch=1", "--out", "{tmp}/a"], "nosuch"),
    ("approx", [*GAME, "--queries", "64", "--param", "lr=fast", "--out", "{tmp}/a"], "lr must be a number"),
    ("approx", [*GAME, "--queries", "64", "--seeds", "0", "--out", "{tmp}/a"], "seeds"),
    ("approx", [*GAME, "--recipe", "egpo", "--queries", "3", "--out", "{tmp}/a"], "less than one"),
    ("approx", [*GAME, "--queries", "64", "--evals", "0", "--out", "{tmp}/a"], "evals"),
    ("rl", [], "required"),
    ("rl train", ["--out", "{tmp}/rl"], "--steps"),
    ("rl train", ["--algo", "ppo", "--steps", "4096", "--out", "{tmp}/rl"], "invalid choice"),
    ("rl train", ["--steps", "4096", "--preset", "nosuch", "--out", "{tmp}/rl"], "unknown preset"),
    ("rl train", ["--steps", "4096", "--wrapper", "os:system", "--out", "{tmp}/rl"], "unknown wrapper"),
    ("rl train", ["--steps", "4096", "--env-kwargs", "g", "--out", "{tmp}/rl"], "KEY=VALUE"),
    ("rl train", ["--steps", "4096", "--env-kwargs", "nosuch=1", "--out", "{tmp}/rl"], "nosuch"),
    ("rl train", ["--steps", "4096", "--eval-every", "-1", "--out", "{tmp}/rl"], "eval_every"),
    ("rl train", ["--steps", "4096", "--report-to", "wandb", "--out", "{tmp}/rl"], "invalid choice"),
    ("rl eval", [], "path"),
    ("rl eval", ["{tmp}/no-run.pt"], "no policy or checkpoint"),
    ("rl eval", ["{P}"], "not a readable"),
    ("rl eval", ["{tmp}/no-run.pt", "--episodes", "0"], "episodes"),
    ("rl eval", ["{tmp}/no-run.pt", "--seed", "-2"], "seed"),
    ("rl train", ["--steps", "4096", "--seed", "-1", "--out", "{tmp}/rl"], "seed"),
    ("rl train", ["--steps", "4096", "--eval-episodes", "0", "--out", "{tmp}/rl"], "eval_episodes"),
    ("rl train", ["--steps", "4096", "--param", "torch_threads=0", "--out", "{tmp}/rl"], "torch_threads"),
    ("rl train", ["--steps", "4096", "--param", "normalize=maybe", "--out", "{tmp}/rl"], "normalize"),
    ("rl train", ["--steps", "4096", "--param", "seed=3", "--out", "{tmp}/rl"], "--seed"),
    ("rl train", ["--steps", "4096", "--env", "NoSuchEnv-v0", "--out", "{tmp}/rl"], "NoSuchEnv"),
    ("rl train", ["--steps", "4096", "--resume", "--out", "{tmp}/rl"], "no checkpoint"),
    ("rl train", ["--steps", "4096", "--checkpoint-every", "0", "--out", "{tmp}/rl"], "checkpoint"),
    ("train", ["--beta", "0", "--output-dir", "{tmp}/t"], "beta"),
    ("train", ["--algorithm", "dpo", "--output-dir", "{tmp}/t"], "unknown algorithm"),
    ("train", ["--use-peft", "maybe", "--output-dir", "{tmp}/t"], "use_peft"),
    ("train", ["--max-steps", "1.5", "--output-dir", "{tmp}/t"], "max_steps"),
    ("train", ["--config", "{tmp}/missing.yaml", "--output-dir", "{tmp}/t"], "does not exist"),
    ("train", ["--oracle", "embedding:x", "--output-dir", "{tmp}/t"], "embedding"),
    ("train", ["--dataset", "{tmp}/missing.jsonl", "--output-dir", "{tmp}/t"], "does not exist"),
    ("train", ["--model-name-or-path", "{tmp}/no-model", "--output-dir", "{tmp}/t"], "model"),
    ("train", ["--resume-from-checkpoint", "latest", "--output-dir", "{tmp}/t"], "no complete checkpoint"),
    ("eval", ["--out", "{tmp}/e"], "--policies"),
    ("eval", ["--policies", "{tmp}/no-run", "--out", "{tmp}/e"], "no-run"),
    ("eval", ["--policies", "ref", "--judge", "oracle-of-delphi", "--out", "{tmp}/e"], "unknown judge"),
    ("eval", ["--policies", "ref", "--judge", "embedding:x", "--out", "{tmp}/e"], "embedding"),
    ("eval", ["--policies", "ref", "--num-prompts", "0", "--out", "{tmp}/e"], "num-prompts"),
    ("eval", ["--policies", "ref", "--temperature", "-1", "--out", "{tmp}/e"], "temperature"),
    ("eval", ["--policies", "ref", "ref", "--names", "a", "--out", "{tmp}/e"], "--names"),
    ("eval", ["--policies", "ref", "--prompts", "{tmp}/none.jsonl", "--out", "{tmp}/e"], "does not exist"),
]

_NEEDS = {"approx": ["torch"], "rl train": ["torch", "gymnasium"], "rl eval": ["torch", "gymnasium"],
          "train": ["torch", "transformers", "yaml"], "eval": ["torch", "transformers", "peft"]}  # fmt: skip


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize(("command", "argv", "phrase"), CASES, ids=[f"{c or 'nashmp'}:{i}" for i, (c, *_) in
                                                                     enumerate(CASES)])  # fmt: skip
def test_bad_input_exits_2_with_one_error_line(
    command: str, argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    for module in _NEEDS.get(command, []):
        pytest.importorskip(module)
    if command in ("train", "eval"):
        request.getfixturevalue("no_model_loads")
    np.save(tmp_path / "P.npy", P3)
    np.save(tmp_path / "ref.npy", REF3)
    fill = {"{tmp}": str(tmp_path), "{P}": str(tmp_path / "P.npy"), "{ref}": str(tmp_path / "ref.npy")}
    args = [a for a in argv]
    for key, value in fill.items():
        args = [a.replace(key, value) for a in args]
    full = [*command.split(), *args, *(["--no-progress"] if command in ("run", "compare", "approx") else [])]
    try:
        code = main(full)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (full, err)
    assert err.startswith("nashmp: error:") and err.count("\n") == 1 and err.endswith("\n"), (full, err)
    assert "Traceback" not in err + captured.out
    assert phrase in err, (full, err)


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                names.add(full)
                names |= _subcommands(sub, full)
    return names


def test_the_table_covers_every_subcommand() -> None:
    commands = _subcommands(build_parser())
    assert {"solve", "run", "compare", "approx", "rl", "rl train", "train", "eval"} <= commands
    covered = {c for c, *_ in CASES}
    assert commands <= covered, f"no bad-input case for {sorted(commands - covered)}"
    for command in commands:
        assert sum(c == command for c, *_ in CASES) >= (1 if command == "rl" else 3), command
