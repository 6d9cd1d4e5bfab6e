"""The runner: batching, budgets, early stop, CSV output, and the public API surface."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

import nashmp
from nashmp import PreferenceGame
from nashmp.runner import COLUMNS

from ._doc_tables import table_names


def test_batched_run_equals_individual_runs() -> None:
    g = nashmp.make_game("rps", 9, 0.05, num_games=3, seed=1)
    batched = nashmp.run(g, "nash-mp", 40)
    for x in range(3):
        single = nashmp.run(PreferenceGame(g.P[x], g.ref[x], g.beta), "nash-mp", 40)
        np.testing.assert_allclose(batched.final.log_policy[x], single.final.log_policy[0], atol=1e-12)
        np.testing.assert_allclose(
            batched.per_context["kl_to_star"][:, x], single.metrics["kl_to_star"], rtol=1e-9, atol=1e-18
        )
    np.testing.assert_allclose(batched.metrics["kl_to_star"], batched.per_context["kl_to_star"].mean(axis=1))
    np.testing.assert_allclose(batched.metrics["span_max"], batched.per_context["span"].max(axis=1))


def test_budget_record_every_and_stop(game3: PreferenceGame) -> None:
    tr = nashmp.run(game3, "nash-mp", 41, record_every=5)
    assert tr.queries[0] == 0 and tr.queries[-1] == 42  # an iteration costs 2: the budget is reached, not cut
    assert list(tr.iterations[:3]) == [0, 5, 10]
    stop = nashmp.run(game3, "nash-mp", 10_000, stop_kl=1e-6)
    assert stop.metrics["kl_to_star"][-1] <= 1e-6 < stop.metrics["kl_to_star"][-2]
    assert nashmp.queries_to_reach(stop, 1e-6) == stop.queries[-1]
    assert nashmp.queries_to_reach(stop, 1e-30) is None


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_bad_budget(game3: PreferenceGame, budget: object) -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="queries"):
        nashmp.run(game3, "nash-mp", budget)  # type: ignore[arg-type]


def test_bad_run_options(game3: PreferenceGame) -> None:
    with pytest.raises(nashmp.InvalidParameterError, match="unknown metrics"):
        nashmp.run(game3, "nash-mp", 4, metrics=["loss"])
    with pytest.raises(nashmp.InvalidParameterError, match="stop_kl"):
        nashmp.run(game3, "nash-mp", 4, metrics=["span"], stop_kl=1e-3)
    with pytest.raises(nashmp.InvalidParameterError, match="record_every"):
        nashmp.run(game3, "nash-mp", 4, record_every=0)


def test_write_csv(tmp_path, game3: PreferenceGame) -> None:  # noqa: ANN001
    tr = nashmp.run(game3, "omd", 5)
    path = tr.write_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert {"queries", "eval/kl_to_star", "eval/exploitability", "eval/span", "eval/span_max"} <= set(rows[0])
    assert [int(r["queries"]) for r in rows] == [0, 1, 2, 3, 4, 5]


def test_csv_columns_are_exactly_the_documented_ones(tmp_path, game3: PreferenceGame) -> None:  # noqa: ANN001
    """Issue 13 item 11: the written header is COLUMNS (x-axis bare, the counter under charts/, each metric under
    eval/); a subset of metrics writes only theirs, and the Python names stay bare."""
    with nashmp.run(game3, "omd", 3).write_csv(tmp_path / "m.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)
    tr = nashmp.run(game3, "omd", 3, metrics=["span"])
    assert tr.columns == ["queries", "charts/iteration", "eval/span", "eval/span_max"]
    assert list(tr.metrics) == ["span", "span_max"]


def test_readme_table_lists_exactly_the_csv_columns() -> None:
    assert table_names("README.md", "**Metric columns of the exact layer**") == list(COLUMNS)


def test_public_api_is_pinned() -> None:
    assert sorted(nashmp.__all__) == sorted(
        [
            "PreferenceGame", "stack_games", "make_game", "FAMILIES", "solve_equilibrium", "Equilibrium",
            "fixed_point_residual", "METRICS", "ALGORITHMS", "Algorithm", "State", "make_algorithm", "prox_step",
            "run", "Trajectory", "queries_to_reach", "NashMPValueError", "InvalidPreferenceError",
            "InvalidReferenceError", "InvalidParameterError", "InvalidPolicyError", "EquilibriumNotCertifiedError",
            "InvalidOracleOutputError", "PreferenceOracle", "GameOracle", "NoisyOracle", "CallableOracle",
            "__version__",
        ]
    )  # fmt: skip


def test_import_is_light() -> None:
    code = "import sys, nashmp; print(any(m in sys.modules for m in ('torch', 'matplotlib', 'tqdm')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_equilibrium_solved_only_when_a_metric_needs_it(monkeypatch: pytest.MonkeyPatch, game3: PreferenceGame) -> None:
    import nashmp.runner as runner_module

    def boom(game: PreferenceGame) -> None:
        raise AssertionError("solve_equilibrium must not be called")

    monkeypatch.setattr(runner_module, "solve_equilibrium", boom)
    tr = nashmp.run(game3, "nash-mp", 6, metrics=["exploitability", "unregularized_exploitability"])
    assert tr.metrics["exploitability"][-1] < tr.metrics["exploitability"][0]
    with pytest.raises(AssertionError, match="must not be called"):
        nashmp.run(game3, "nash-mp", 6, metrics=["span"])
