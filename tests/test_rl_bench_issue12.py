"""benchmarks/rl_vs_sb3.py at a tiny size: run files written and skipped, the report rebuilt from them alone,
the rank test equal to scipy's on the per-seed values, the issue-12 suite's seed-major plan."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")
torch = pytest.importorskip("torch")
from scipy.stats import mannwhitneyu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import rl_vs_sb3  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _main(tmp: Path, algos: list[str], *extra: str) -> None:
    rl_vs_sb3.main(
        ["--quick", "--algos", *algos, "--onpolicy-steps", "4096", "--seeds", "2", "--workers", "0",
         "--blas-threads", "0", "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
         "--results-dir", str(tmp / "results"), "--img-dir", str(tmp / "img"), "--legacy-dir", "none", *extra]
    )  # fmt: skip


def _check(tmp: Path, algos: list[str], baseline: str, capsys: Any) -> None:
    extra = ["--baseline", baseline]
    _main(tmp, algos, *extra)
    files = sorted((tmp / "runs").glob("*.json"))
    assert len(files) == 2 * len(algos)
    records = [json.loads(p.read_text()) for p in files]
    for p, r in zip(files, records, strict=True):
        assert p.stat().st_size < 8_000
        assert r["steps_done"] == 4096 and len(r["curve"]) == 2 and len(r["eval_returns"]) == 2
        assert r["kl_iterations"] == 2 and len(r["kl"]) == 2 and r["kl_median"] > 0, r["key"]
        assert r["kl_name"] == ("losses/approx_kl" if r["library"] == "nashmp" else "train/approx_kl")
    mtimes = [p.stat().st_mtime_ns for p in files]
    capsys.readouterr()

    _main(tmp, algos, *extra)  # every run has its file: nothing runs
    assert f"{len(files)} of {len(files)} planned runs have run files; 0 to do" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in files] == mtimes

    shutil.rmtree(tmp / "cache")
    shutil.rmtree(tmp / "results")
    _main(tmp, algos, "--report-only", *extra)  # from the run files alone
    report = json.loads((tmp / "results" / "rl_vs_sb3_quick.json").read_text())
    assert report["planned"] == report["done"] == len(files) and not report["missing"]
    assert (tmp / "results" / "rl_vs_sb3_quick.md").is_file() and (tmp / "results" / "rl_vs_sb3.md").is_file()
    assert (tmp / "img" / "rl_quick_kl.png").is_file()
    values = {a: [r["eval_mean"] for r in sorted(records, key=lambda r: r["seed"]) if r["algo"] == a] for a in algos}
    tests = report["rank_tests"]
    variants = [a for a in algos if a != baseline and a.startswith("mdpo")]
    assert sorted(t["variant"] for t in tests) == sorted(variants)
    for t in tests:
        assert t["baseline"] == baseline and t["n_variant"] == t["n_baseline"] == 2
        assert t["variant_values"] == values[t["variant"]] and t["baseline_values"] == values[baseline]
        ref = mannwhitneyu(values[t["variant"]], values[baseline], alternative="greater")
        assert t["U"] == pytest.approx(ref.statistic) and t["p_greater"] == pytest.approx(ref.pvalue)
    table = {row["algo"]: row for row in report["tables"]["on-policy"]}
    for a in algos:
        assert table[a]["done"] == 2 and sorted(table[a]["per_seed"].values()) == sorted(values[a])


def test_nashmp_runs_files_skip_and_report(tmp_path: Path, capsys: Any) -> None:
    _check(tmp_path, ["mdpo", "mdpo:release"], "mdpo", capsys)


def test_against_sb3_ppo(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("stable_baselines3")
    _check(tmp_path, ["mdpo:release", "ppo"], "ppo", capsys)


def test_a_stale_run_file_is_left_out_and_run_again_and_a_rename_must_keep_the_config(
    tmp_path: Path, capsys: Any
) -> None:
    _main(tmp_path, ["mdpo"])
    first, second = sorted((tmp_path / "runs").glob("*.json"))
    record = json.loads(first.read_text())
    record["config"]["lr"] = 3e-4  # as if it had run under defaults that have changed since
    first.write_text(json.dumps(record))
    capsys.readouterr()
    _main(tmp_path, ["mdpo"], "--report-only")
    assert (
        f"1 stale run file(s) left out of the reports (their config is not what their algorithm builds today; "
        f"the next run without --report-only runs them again): {record['key']}" in capsys.readouterr().out
    )
    assert json.loads((tmp_path / "results" / "rl_vs_sb3_quick.json").read_text())["done"] == 1
    mtime = second.stat().st_mtime_ns
    _main(tmp_path, ["mdpo"])
    assert "1 of 2 planned runs have run files; 1 to do" in capsys.readouterr().out
    assert json.loads(first.read_text())["config"]["lr"] == 1e-3 and second.stat().st_mtime_ns == mtime

    with pytest.raises(SystemExit, match=r"its config differs in \['clip_obs', 'clip_reward', 'kl_target'"):
        rl_vs_sb3.rename_algo([tmp_path / "runs"], "mdpo", "mdpo:release-run-budget")
    assert sorted((tmp_path / "runs").glob("*.json")) == [first, second]  # nothing renamed
    _main(tmp_path, ["mdpo:tuned"], "--rename-algo", "mdpo", "mdpo:tuned", "--report-only")  # the same config
    renamed = sorted((tmp_path / "runs").glob("*.json"))
    assert [p.name for p in renamed] == [p.name.replace("__mdpo__", "__mdpo+tuned__") for p in (first, second)]
    records = [json.loads(p.read_text()) for p in renamed]
    assert {(r["algo"], r["label"], r["config"]["preset"]) for r in records} == {
        ("mdpo:tuned", "MDPO (tuned)", "tuned")
    }
    assert json.loads((tmp_path / "results" / "rl_vs_sb3_quick.json").read_text())["done"] == 2


def test_issue12_plan_is_seed_major() -> None:
    plan = rl_vs_sb3.plan_tasks([tuple(c) for c in rl_vs_sb3.SUITES["issue12"]], 10, None, {})  # type: ignore[misc]
    assert len(plan) == 3 * 5 * 5 + 2 * 2 * 3
    assert len({t["key"] for t in plan}) == len(plan)
    seeds = [t["seed"] for t in plan]
    assert seeds == sorted(seeds)  # seed 0 of every cell first
    first = plan[: 3 * 5 + 2 * 2]
    assert {t["seed"] for t in first} == {0} and {t["family"] for t in first} == {"on-policy", "off-policy"}
    on = [t for t in plan if t["family"] == "on-policy"]
    assert {t["steps"] for t in on} == {999_424} and {t["steps"] for t in plan if t not in on} == {100_000}


def test_algorithm_names() -> None:
    assert rl_vs_sb3.check_algo("mdpo:release") == "mdpo:release"
    assert rl_vs_sb3.run_key("Hopper-v5", "mdpo:tuned", 2048, 0, 10, None) == "Hopper-v5__mdpo+tuned__2048__s0__e10"
    for bad in ("mdpo:nope", "ppo:tuned", "a2c"):
        with pytest.raises(Exception, match="algorithm|presets"):
            rl_vs_sb3.check_algo(bad)


def test_claim_holds_a_run_for_one_process_and_dies_with_it(tmp_path: Path) -> None:
    task = {"cache": str(tmp_path / "cache"), "runs_dir": str(tmp_path / "runs"), "key": "k"}
    with rl_vs_sb3.claim(task) as first:
        assert first
        with rl_vs_sb3.claim(task) as second:  # another open file: flock treats it as another process
            assert not second
    with rl_vs_sb3.claim(task) as again:  # released when the holder's block ends
        assert again

    lock = tmp_path / "cache" / "claims" / "k.lock"
    with subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with rl_vs_sb3.claim(task) as ours:
                assert not ours
        finally:
            holder.kill()  # a killed session
            holder.wait()
    with rl_vs_sb3.claim(task) as ours:  # leaves no stale claim
        assert ours

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "k.json").write_text('{"algo": "ppo"}')  # another process finished it since this one planned
    with rl_vs_sb3.claim(task) as ours:
        assert not ours
    with rl_vs_sb3.claim(dict(task, force=True)) as ours:  # --force re-runs it
        assert ours


def test_a_run_another_process_holds_is_left_to_it(tmp_path: Path, capsys: Any) -> None:
    dirs = {"cache": str(tmp_path / "cache"), "runs_dir": str(tmp_path / "runs")}
    plan = rl_vs_sb3.plan_tasks([("on-policy", ["Pendulum-v1"], ["mdpo"], 4096, 2)], 2, 1_000, dirs)
    held = plan[1]
    with rl_vs_sb3.claim(held) as ours:
        assert ours
        _main(tmp_path, ["mdpo"])
    out = capsys.readouterr().out
    assert "0 of 2 planned runs have run files; 2 to do" in out and "skipped: another process holds" in out
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.json")) == [plan[0]["key"]]
    _main(tmp_path, ["mdpo"])  # released: the next process runs it
    assert "1 of 2 planned runs have run files; 1 to do" in capsys.readouterr().out
    assert sorted(p.stem for p in (tmp_path / "runs").glob("*.json")) == sorted(t["key"] for t in plan)


def test_kl_sweep_settings_keep_the_step_they_were_measured_with() -> None:
    import dataclasses

    import mdpo_kl_sweep
    from nashmp.rl.mdpo import MDPOConfig

    def config(name: str) -> dict[str, Any]:
        return dataclasses.asdict(mdpo_kl_sweep.setting_config(name, "Hopper-v5"))

    assert config("defaults") == dataclasses.asdict(MDPOConfig.from_preset("release-run-budget", env_id="Hopper-v5"))
    assert config("tuned") == dataclasses.asdict(MDPOConfig(env_id="Hopper-v5"))  # the defaults since 2026-12-07
    capped = config("kl0.01_cap2")  # a grid cell: its fields over the old step, no clipping
    assert (capped["lr"], capped["kl_target"], capped["kl_weight_max"], capped["clip_obs"]) == (1e-3, 0.01, 2.0, None)
