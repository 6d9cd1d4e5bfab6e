"""The ``nashmp`` CLI: outputs, and one-line errors (exit 2, no traceback) for bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nashmp
from nashmp.cli.main import main

from .conftest import P3, REF3


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    np.save(tmp_path / "P.npy", P3)
    np.save(tmp_path / "ref.npy", REF3)
    return {"P": tmp_path / "P.npy", "ref": tmp_path / "ref.npy", "dir": tmp_path}


def test_solve_writes_certified_equilibrium(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = files["dir"] / "star.npy"
    assert (
        main(["solve", "--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1", "--out", str(out)])
        == 0
    )
    np.testing.assert_allclose(np.load(out), [0.351925, 0.206245, 0.441830], atol=1e-6)
    report = json.loads(capsys.readouterr().out)
    assert report["certificate"] <= 1e-10


def test_run_writes_metrics_csv(files: dict[str, Path]) -> None:
    out = files["dir"] / "run"
    argv = ["run", "--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1"]
    assert main([*argv, "--algo", "nash-mp", "--queries", "10", "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert {"queries", "eval/kl_to_star", "eval/exploitability", "eval/span"} <= set(rows[0])
    assert float(rows[-1]["eval/kl_to_star"]) == pytest.approx(0.01582, rel=1e-3)
    assert (
        main([*argv, "--algo", "omd", "--queries", "3", "--param", "eta=0.5", "--out", str(out), "--no-progress"]) == 0
    )


def test_compare_writes_csv_png_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "--family", "cyclic", "--n", "9", "--games", "2", "--beta", "0.1", "--queries", "60"]
    assert (
        main([*argv, "--algos", "nash-mp,omd,egpo", "--param", "omd:eta=2.0", "--out", str(out), "--no-progress"]) == 0
    )
    assert (out / "compare.png").stat().st_size > 10_000
    text = (out / "summary.md").read_text()
    assert "| nash-mp |" in text and "| omd |" in text
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert {r["algorithm"] for r in rows} == {"nash-mp", "omd", "egpo"}
    assert "nash-mp" in capsys.readouterr().out


def _bad(tmp: Path, name: str, arr: object) -> str:
    np.save(tmp / name, np.asarray(arr))
    return str(tmp / name)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("corrupt", "cannot read"),
        ("asym", "P(y≻y') + P(y'≻y) = 1"),
        ("range", "[0, 1]"),
        ("nan", "NaN"),
        ("square", "square"),
        ("ref_sum", "sum to 1"),
        ("ref_shape", "shape"),
        ("beta", "beta"),
        ("eta", "eta"),
        ("param", "KEY=VALUE"),
        ("both", "either --family"),
        ("family_opt", "multiple of 3"),
    ],
)
def test_cli_errors_are_one_line(
    files: dict[str, Path], case: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = files["dir"]
    P, ref, beta = str(files["P"]), str(files["ref"]), "0.1"
    extra: list[str] = []
    if case == "missing":
        P = str(tmp / "nope.npy")
    elif case == "corrupt":
        (tmp / "bad.npy").write_bytes(b"not a numpy file")
        P = str(tmp / "bad.npy")
    elif case == "asym":
        P = _bad(tmp, "a.npy", [[0.5, 0.9], [0.9, 0.5]])
        ref = _bad(tmp, "r2.npy", [0.5, 0.5])
    elif case == "range":
        P = _bad(tmp, "a.npy", [[0.5, 1.5], [-0.5, 0.5]])
        ref = _bad(tmp, "r2.npy", [0.5, 0.5])
    elif case == "nan":
        P = _bad(tmp, "a.npy", [[0.5, np.nan], [0.5, 0.5]])
        ref = _bad(tmp, "r2.npy", [0.5, 0.5])
    elif case == "square":
        P = _bad(tmp, "a.npy", np.full((2, 3), 0.5))
    elif case == "ref_sum":
        ref = _bad(tmp, "r.npy", [0.5, 0.5, 0.5])
    elif case == "ref_shape":
        ref = _bad(tmp, "r.npy", [0.5, 0.5])
    elif case == "beta":
        beta = "-1"
    elif case == "eta":
        extra = ["--param", "eta=0"]
    elif case == "param":
        extra = ["--param", "eta"]
    elif case == "both":
        extra = ["--family", "random"]
    argv = [
        "run",
        "--preference",
        P,
        "--ref",
        ref,
        "--beta",
        beta,
        "--algo",
        "nash-mp",
        "--queries",
        "4",
        "--out",
        str(tmp / "o"),
        "--no-progress",
        *extra,
    ]
    if case == "family_opt":
        argv = [
            "run",
            "--family",
            "rps",
            "--n",
            "8",
            "--beta",
            "0.1",
            "--algo",
            "nash-mp",
            "--queries",
            "4",
            "--out",
            str(tmp / "o"),
        ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("nashmp: error:")


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    P = tmp_path / "P.npy"
    np.save(P, [[0.5, 0.2], [0.2, 0.5]])
    np.save(tmp_path / "r.npy", [0.5, 0.5])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nashmp.cli.main",
            "solve",
            "--preference",
            str(P),
            "--ref",
            str(tmp_path / "r.npy"),
            "--beta",
            "0.1",
            "--out",
            str(tmp_path / "s.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--algo", "nash-q"],
        ["--algo", "nash-mp", "--beta", "abc"],
        ["--algo", "nash-mp", "--queries", "1.5"],
    ],
)
def test_cli_argument_errors_are_one_line(
    files: dict[str, Path], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1"]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--queries", "4", "--out", "x", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nashmp: error:") and err.count("\n") == 1
    assert "nash-mp" in nashmp.ALGORITHMS


def test_more_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13, item 7: each of these used to end in a traceback (or a MemoryError)."""
    game = ["--family", "rps", "--n", "6", "--beta", "0.1", "--queries", "10"]
    cases = [
        (["solve", "--family", "random", "--n", "200000", "--beta", "0.1", "--out", str(tmp_path / "s")], "GiB"),
        (["compare", *game, "--algos", "", "--out", str(tmp_path / "c")], "names no algorithm"),
        (["approx", *game, "--param", "num_threads=0", "--no-progress", "--out", str(tmp_path / "a")], "num_threads"),
        (
            ["rl", "train", "--steps", "4096", "--param", "torch_threads=0", "--out", str(tmp_path / "r")],
            "torch_threads",
        ),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nashmp: error:") and err.count("\n") == 1 and message in err, (argv, err)


def test_param_values_are_typed_by_the_algorithm_signature(files: dict[str, Path]) -> None:
    """Issue 13, item 8: `--param decay=False` was the truthy string 'False', i.e. decay stayed on."""
    from nashmp.algorithms.registry import make_algorithm

    assert make_algorithm("nash-md", decay="False").params["decay"] is False
    assert make_algorithm("nash-md", eta="0.5").params["eta"] == 0.5
    base = ["run", "--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1", "--algo", "nash-md",
            "--queries", "30", "--no-progress"]  # fmt: skip
    policies = {}
    for value in ("False", "false", "True"):
        out = files["dir"] / f"md-{value}"
        assert main([*base, "--param", f"decay={value}", "--out", str(out)]) == 0
        policies[value] = np.load(out / "policy.npy")
    np.testing.assert_array_equal(policies["False"], policies["false"])
    assert not np.allclose(policies["False"], policies["True"])


def test_param_for_an_algorithm_not_in_the_run_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13, item 8: `--param omd:eta=...` without omd in the run was silently ignored."""
    game = ["--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1", "--queries", "8"]
    cases = [
        ["run", *game, "--algo", "nash-mp", "--param", "omd:eta=0.5", "--out", str(tmp_path / "r")],
        ["compare", *game, "--algos", "nash-mp,egpo", "--param", "omd:eta=0.5", "--out", str(tmp_path / "c")],
        ["rl", "train", "--steps", "4096", "--param", "mdpo-off:lr=0.1", "--out", str(tmp_path / "rl")],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nashmp: error:") and err.count("\n") == 1, err
        assert "does not include" in err and ("omd" in err or "mdpo-off" in err), err
        assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()
    assert main(["compare", *game, "--algos", "nash-mp,omd", "--param", "omd:eta=0.5", "--no-progress",
                 "--out", str(tmp_path / "ok")]) == 0  # fmt: skip


def test_rl_param_values_are_typed_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--param normalize=False` is coerced by MDPOConfig's field type (a bad bool is refused, no env built)."""
    pytest.importorskip("gymnasium")
    from nashmp._fields import coerce_fields
    from nashmp.rl.mdpo import MDPOConfig

    assert coerce_fields(MDPOConfig, {"normalize": "False", "lr": "1e-3"}) == {"normalize": False, "lr": 1e-3}
    assert main(["rl", "train", "--steps", "4096", "--param", "normalize=maybe", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nashmp: error:") and "normalize must be true or false" in err


def test_solve_reports_the_file_it_wrote(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13, item 8: `--out x` wrote x.npy but reported x."""
    for name, written in (("x", "x.npy"), ("y.npy", "y.npy"), ("z.v1", "z.v1.npy")):
        out = files["dir"] / name
        argv = [
            "solve",
            "--preference",
            str(files["P"]),
            "--ref",
            str(files["ref"]),
            "--beta",
            "0.1",
            "--out",
            str(out),
        ]
        assert main(argv) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["out"] == str(files["dir"] / written) and Path(report["out"]).is_file()


def test_text_and_non_npy_files_get_a_true_message(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13, item 9: a .txt table was reported as "pickled data"; now it is read, and junk is called so."""
    tmp = files["dir"]
    np.savetxt(tmp / "P.txt", P3)
    np.savetxt(tmp / "r.txt", REF3)
    argv = ["solve", "--preference", str(tmp / "P.txt"), "--ref", str(tmp / "r.txt"), "--beta", "0.1"]
    assert main([*argv, "--out", str(tmp / "s")]) == 0
    capsys.readouterr()
    (tmp / "junk.npy").write_text("0.5 0.5\n")
    (tmp / "bin.txt").write_bytes(b"\xff\xfe\x00")
    for path, message in ((tmp / "junk.npy", "not a .npy array"), (tmp / "bin.txt", "not UTF-8")):
        assert main([*argv[:1], "--preference", str(path), *argv[3:], "--out", str(tmp / "s2")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "pickled" not in err, err


@pytest.mark.parametrize(
    ("argv", "configs"),
    [
        (["approx", "--help"], ["nashmp.approx.recipes:ApproxConfig"]),
        (["rl", "train", "--help"], ["nashmp.rl.mdpo:MDPOConfig", "nashmp.rl.mdpo_off:MDPOOffConfig"]),
    ],
)
def test_help_documents_every_config_field(
    argv: list[str], configs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13, item 10: every field has a docstring, and --help shows it with its type and default."""
    pytest.importorskip("torch")
    if argv[0] == "rl":
        pytest.importorskip("gymnasium")
    import dataclasses
    import importlib
    import typing

    from nashmp._fields import field_docs
    from nashmp.cli._common import type_name

    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    flagged = {"env_id", "total_steps", "seed", "eval_episodes", "recipe"}  # set by their own flags
    for spec in configs:
        module, _, name = spec.partition(":")
        cls = getattr(importlib.import_module(module), name)
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.name in docs, f"{name}.{f.name} has no docstring"
            if f.name not in flagged:
                assert f"{f.name} [{type_name(hints[f.name])}; default: {f.default}]" in text, f.name
                assert " ".join(docs[f.name].split())[:50] in text, f.name
    if argv[0] == "approx":
        from nashmp.online.recipes import RECIPES

        assert "Choices: adam, sgd." in text and all(r in text for r in RECIPES)


def test_run_help_lists_each_algorithms_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for name in nashmp.ALGORITHMS:
        assert f"  {name}: " in text
    assert "nash-md: eta: float | None = None, decay: bool = True" in text


def test_cli_command_modules_do_not_import_each_other() -> None:
    """Issue 13, item 10: shared helpers live in cli/_common.py; only main.py imports the command modules."""
    import ast

    import nashmp.cli

    folder = Path(nashmp.cli.__file__).parent
    commands = {p.stem for p in folder.glob("*.py")} - {"__init__", "_common"}
    for path in folder.glob("*.py"):
        if path.stem in ("main", "__init__"):
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported.add(node.module or "")
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nashmp.cli."):
                imported.add(node.module.removeprefix("nashmp.cli."))  # type: ignore[union-attr]
        assert not imported & commands, f"cli/{path.name} imports {sorted(imported & commands)}"


def test_only_setup_libraries_errors_become_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError raised inside peft/accelerate (a user's setting they refuse) is one line with exit 2;
    the same error raised by nashmp or anything else is a bug and surfaces as itself."""
    import nashmp.cli.main as cli

    namespace: dict[str, object] = {"__name__": "peft.tuners.tuners_utils"}
    exec(  # noqa: S102 - a function whose frame belongs to peft, as peft's own raise does
        "def refuse(args):\n    raise ValueError('Target modules {\\'x\\'} not found in the base model.\\nPlease check.')\n",
        namespace,
    )
    argv = ["solve", "--preference", str(files["P"]), "--ref", str(files["ref"]), "--beta", "0.1", "--out", "o"]
    monkeypatch.setattr(cli, "cmd_solve", namespace["refuse"])
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "nashmp: error: peft: Target modules {'x'} not found in the base model. Please check.\n"
    )

    def ours(args: object) -> int:
        raise ValueError("a bug in nashmp")

    monkeypatch.setattr(cli, "cmd_solve", ours)
    with pytest.raises(ValueError, match="a bug in nashmp"):
        main(argv)
