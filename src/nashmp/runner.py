"""Run an algorithm for a budget of preference queries and record the metric trajectory.

All contexts (or stacked games) advance together with batched array operations; one call of the
counted ``query`` evaluates ``P(·≻μ)`` for every context and counts as **one** preference query.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._numerics import FloatArray
from .algorithms.base import Algorithm, State
from .algorithms.registry import make_algorithm
from .equilibrium import Equilibrium, solve_equilibrium
from .errors import InvalidParameterError
from .games.game import PreferenceGame, check_positive_int
from .metrics import DESCRIPTIONS, METRICS, aggregate, context_metrics

__all__ = ["COLUMNS", "Trajectory", "column", "run", "queries_to_reach"]


def column(metric: str) -> str:
    """The CSV column of ``metric`` (``kl_to_star``, ``span_max``, ...): ``eval/<metric>``.

    Every recorded value is an exact evaluation of π against π*_β, so in the project's metric namespaces
    (``charts/``, ``losses/``, ``train/``, ``eval/``, shared with the LLM and RL layers) it is an ``eval/``
    column. The Python names stay bare (``metrics=``, ``Trajectory.metrics``, :func:`queries_to_reach`):
    the namespace belongs to what is logged, not to the API that computes it.
    """
    return f"eval/{metric}"


#: The columns of :meth:`Trajectory.write_csv` and of the ``metrics.csv`` of ``nashmp run``/``compare``/``approx``
#: with the default ``metrics`` (README lists exactly these, tested): the x-axis ``queries`` (rates are per
#: query; not namespaced), the progress counter, then each metric's ρ-weighted mean and maximum over contexts.
COLUMNS: dict[str, str] = {
    "queries": "preference queries spent so far (one per counted call of P(·≻μ), all contexts together)",
    "charts/iteration": "iterations taken (the approximate layer: gradient steps)",
    **{
        column(name): text
        for m, d in DESCRIPTIONS.items()
        for name, text in ((m, f"{d}; ρ-weighted mean over contexts"), (f"{m}_max", "the same, maximum over contexts"))
    },
}


@dataclass
class Trajectory:
    """Metrics of one run versus preference queries.

    Attributes:
        algorithm: name; ``params``: the parameters it was built with.
        queries, iterations: shape ``(T,)``; row 0 is the initial policy (0 queries).
        metrics: aggregated series, ``name`` (ρ-weighted mean over contexts) and ``name_max``.
        per_context: ``name -> (T, X)`` arrays.
        final: the last algorithm state (``final.log_policy`` is batched ``(X, n)``).
    """

    algorithm: str
    params: Mapping[str, Any]
    beta: float
    queries: np.ndarray
    iterations: np.ndarray
    metrics: dict[str, np.ndarray]
    per_context: dict[str, np.ndarray]
    final: State
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """CSV header of :meth:`rows` (:data:`COLUMNS` with the default metrics)."""
        return ["queries", "charts/iteration", *(column(k) for k in self.metrics)]

    def rows(self) -> list[list[float]]:
        cols = list(self.metrics.values())
        return [
            [int(self.queries[t]), int(self.iterations[t]), *(float(c[t]) for c in cols)]
            for t in range(len(self.queries))
        ]

    def write_csv(self, path: str | Path) -> Path:
        """Write ``queries,charts/iteration,eval/<metric>,eval/<metric>_max,...`` to ``path``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            w.writerows(self.rows())
        return p


def run(
    game: PreferenceGame,
    algo: str | Algorithm,
    queries: int,
    *,
    equilibrium: Equilibrium | None = None,
    metrics: Iterable[str] = METRICS,
    record_every: int = 1,
    stop_kl: float | None = None,
    progress: bool = False,
    **params: Any,
) -> Trajectory:
    """Run ``algo`` on ``game`` until ``queries`` preference queries are spent.

    Args:
        game: the (possibly batched) game.
        algo: an algorithm name from :data:`~nashmp.algorithms.ALGORITHMS` or a built :class:`Algorithm`.
        queries: budget N. The run stops at the first iteration that reaches N, so an algorithm whose
            iterations cost several queries may end a few queries past N.
        equilibrium: π*_β if already solved (otherwise :func:`solve_equilibrium` is called when a
            recorded metric needs it).
        metrics: names from :data:`~nashmp.metrics.METRICS` to record.
        record_every: record every k-th iteration (the last one is always recorded).
        stop_kl: stop early once the mean KL(π*‖π) is ≤ this value (needs ``kl_to_star``).
        progress: show a tqdm progress bar over queries.
        **params: algorithm parameters (e.g. ``eta=0.2``).

    Returns:
        A :class:`Trajectory`.
    """
    budget = check_positive_int("queries", queries)
    check_positive_int("record_every", record_every)
    names = tuple(metrics)
    unknown = set(names) - set(METRICS)
    if unknown:
        raise InvalidParameterError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}.")
    if stop_kl is not None and "kl_to_star" not in names:
        raise InvalidParameterError("stop_kl needs 'kl_to_star' among the recorded metrics.")
    algorithm = make_algorithm(algo, **params)
    needs_star = bool({"kl_to_star", "kl_from_star", "span"} & set(names))
    if equilibrium is not None:
        log_star = equilibrium.log_policy
    elif needs_star:
        log_star = solve_equilibrium(game).log_policy
    else:  # no metric needs π*: do not solve for it (e.g. timing runs with metrics=())
        log_star = game.log_ref

    count = 0

    def query(policy: FloatArray) -> FloatArray:
        nonlocal count
        count += 1
        return game.payoff(policy)

    state = algorithm.init(game)
    q_hist: list[int] = []
    it_hist: list[int] = []
    per: dict[str, list[FloatArray]] = {n: [] for n in names}
    extras: dict[str, list[FloatArray]] = {}

    def record() -> float:
        q_hist.append(count)
        it_hist.append(state.iteration)
        vals = context_metrics(game, log_star, state.log_policy, names)
        for n in names:
            per[n].append(vals[n])
        for key, v in state.aux.items():
            if key in ("eta", "log_bound"):
                extras.setdefault(key, []).append(np.ravel(np.asarray(v, dtype=np.float64)).copy())
        return float(np.sum(game.weights * vals["kl_to_star"])) if "kl_to_star" in vals else np.inf

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, desc=algorithm.name, unit="q", leave=False, disable=None)  # off when not a TTY
    kl = record()
    while count < budget and not (stop_kl is not None and kl <= stop_kl):
        before = count
        state = algorithm.step(game, state, query)
        if count == before:
            raise RuntimeError(f"{algorithm.name} made no preference query in an iteration")  # pragma: no cover
        if bar is not None:
            bar.update(min(count, budget) - min(before, budget))
        if state.iteration % record_every == 0 or count >= budget or stop_kl is not None:
            kl = record()
    if q_hist[-1] != count:
        record()
    if bar is not None:
        bar.close()
    per_arr = {n: np.asarray(v) for n, v in per.items()}
    agg_rows = [aggregate(game, {n: per_arr[n][t] for n in names}) for t in range(len(q_hist))]
    agg = {k: np.array([r[k] for r in agg_rows]) for k in agg_rows[0]}
    return Trajectory(
        algorithm=algorithm.name,
        params=dict(algorithm.params),
        beta=game.beta,
        queries=np.asarray(q_hist),
        iterations=np.asarray(it_hist),
        metrics=agg,
        per_context=per_arr,
        final=state,
        extras={k: np.asarray(v) for k, v in extras.items()},
    )


def queries_to_reach(traj: Trajectory, threshold: float, metric: str = "kl_to_star") -> int | None:
    """First recorded query count at which ``metric`` (mean over contexts) is ≤ ``threshold``, else None."""
    vals = traj.metrics[metric]
    hit = np.nonzero(vals <= threshold)[0]
    return int(traj.queries[hit[0]]) if hit.size else None
