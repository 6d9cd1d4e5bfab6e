"""benchmarks/approx_study.py against today's API: every setting it runs builds a valid ``ApproxConfig``, one
tiny run per recipe goes through, and the report rebuilds the committed tables from the committed CSV files."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _approx_report  # noqa: E402
import approx_study  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _every_setting(quick: bool) -> list[dict]:
    s = _approx_report.settings(quick)
    grid = [p for recipe in _approx_report.RECIPES for p in _approx_report.tuning_grid(s, recipe)]
    best = {p["recipe"]: approx_study.config_row(p) for p in grid}  # one row per recipe, as in approx_study_best.csv
    confirm = [approx_study.best_params(best, **over) for _, over, _ in s["confirm"]]
    return grid + confirm


@pytest.mark.parametrize("quick", [True, False])
def test_every_setting_of_the_study_is_a_valid_config(quick: bool) -> None:
    for params in _every_setting(quick):
        row = approx_study.config_row(params)  # raises if a field or recipe name has drifted
        assert row["recipe"] == params["recipe"]  # the CSV files keep the study's labels
        for field in _approx_report.TUNED:
            if field in params:
                assert row[field] == params[field]


def test_one_tiny_run_per_recipe() -> None:
    s = _approx_report.settings(True)
    for recipe in _approx_report.RECIPES:
        params = {**_approx_report.tuning_grid(s, recipe)[0], "seed": 0}
        res = approx_study.run_task(approx_study.task(s, "random", 0.1, 256, params, evals=2))
        kl = res["kl_to_star"]
        assert len(kl) >= 2 and all(math.isfinite(v) and v >= 0 for v in kl)
        assert kl[-1] < kl[0]  # 256 queries at the quick setting's lr already move toward π*_β


def test_report_rebuilds_the_committed_tables(tmp_path: Path) -> None:
    for f in RESULTS.glob("approx_study_*.csv"):
        shutil.copy(f, tmp_path / f.name)
    meta = json.loads((RESULTS / "approx_study_meta.json").read_text())
    text = _approx_report.report(_approx_report.settings(False), tmp_path, tmp_path / "img", meta)
    assert text == (RESULTS / "approx_study.md").read_text()
    assert {p.name for p in (tmp_path / "img").glob("*.png")} >= {"inner_steps.png", "ema.png"}
