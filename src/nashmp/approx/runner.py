"""Run approximate recipes for a budget of preference queries, with exact metrics along the way."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..algorithms.base import State
from ..equilibrium import Equilibrium, solve_equilibrium
from ..errors import InvalidParameterError
from ..games.game import PreferenceGame, check_positive_int
from ..metrics import METRICS, aggregate, context_metrics
from ..oracles import PreferenceOracle
from ..runner import COLUMNS as EXACT_COLUMNS
from ..runner import Trajectory
from .recipes import ApproxConfig, ApproxLearner

__all__ = ["COLUMNS", "run_approx"]

#: The columns of ``nashmp approx``'s ``metrics.csv`` (docs/approx-study.md lists exactly these, tested): the run's
#: recipe and seed, then the exact layer's trajectory columns (:data:`nashmp.runner.COLUMNS`: ``queries`` the
#: x-axis, ``eval/`` the exact metrics of π_θ against π*_β); the approximate layer logs no training statistics.
COLUMNS: dict[str, str] = {
    "recipe": "the recipe (ApproxConfig.recipe)",
    "seed": "its seed",
    **EXACT_COLUMNS,
    "charts/iteration": "gradient steps taken",
}


def run_approx(
    game: PreferenceGame,
    config: ApproxConfig | None = None,
    queries: int = 10_000,
    *,
    oracle: PreferenceOracle | None = None,
    equilibrium: Equilibrium | None = None,
    evals: int = 50,
    progress: bool = False,
    **overrides: Any,
) -> Trajectory:
    """Train with ``config`` (fields may be overridden by keyword) while a step fits in ``queries`` queries.

    The budget is never exceeded: the run stops before a step that would overspend it, and a budget
    smaller than one step (``batch_size`` pairs; ``2 × batch_size`` for EGPO) is an error. The exact metrics of the current π_θ against π*_β are recorded about ``evals`` times, evenly in
    queries; ``Trajectory.iterations`` holds the number of gradient steps taken.
    """
    check_positive_int("queries", queries)
    check_positive_int("evals", evals)
    cfg = ApproxConfig(**{**(config.to_dict() if config else {}), **overrides})
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _run(game, cfg, int(queries), oracle, equilibrium, evals, progress)
    finally:
        torch.set_num_threads(threads)


def _run(
    game: PreferenceGame,
    cfg: ApproxConfig,
    queries: int,
    oracle: PreferenceOracle | None,
    equilibrium: Equilibrium | None,
    evals: int,
    progress: bool,
) -> Trajectory:
    learner = ApproxLearner(game, cfg, oracle)
    if learner.step_cost > queries:
        raise InvalidParameterError(
            f"queries={queries} is less than one {cfg.recipe} step ({learner.step_cost} preference queries with "
            f"batch_size={cfg.batch_size}): nothing would train; raise the budget or lower batch_size."
        )
    eq = equilibrium if equilibrium is not None else solve_equilibrium(game)
    every = max(1, int(queries) // max(1, evals))
    q_hist: list[int] = []
    it_hist: list[int] = []
    per: dict[str, list[np.ndarray]] = {n: [] for n in METRICS}

    def record() -> None:
        q_hist.append(learner.queries)
        it_hist.append(learner.steps)
        vals = context_metrics(game, eq.log_policy, learner.all_log_probs())
        for n in METRICS:
            per[n].append(vals[n])

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(queries), desc=cfg.recipe, unit="q", leave=False, disable=None)
    record()
    next_eval = every
    while learner.queries + learner.step_cost <= queries:
        before = learner.queries
        learner.step()
        if bar is not None:
            bar.update(min(learner.queries, queries) - min(before, queries))
        if learner.queries >= next_eval or learner.queries + learner.step_cost > queries:
            record()
            next_eval = (learner.queries // every + 1) * every
    if bar is not None:
        bar.close()
    per_arr = {n: np.asarray(v) for n, v in per.items()}
    rows = [aggregate(game, {n: per_arr[n][t] for n in METRICS}) for t in range(len(q_hist))]
    return Trajectory(
        algorithm=cfg.recipe,
        params=cfg.to_dict(),
        beta=game.beta,
        queries=np.asarray(q_hist),
        iterations=np.asarray(it_hist),
        metrics={k: np.array([r[k] for r in rows]) for k in rows[0]},
        per_context=per_arr,
        final=State(learner.all_log_probs(), learner.steps),
    )
