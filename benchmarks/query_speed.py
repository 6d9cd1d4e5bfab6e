"""Time per preference query of Nash-MP relative to a raw matrix-vector product of the same size.

What it measures
----------------
One Nash-MP iteration makes two preference queries (``P π_k`` and ``P π_{k+½}``) plus two KL-prox
steps in log space, so its cost per query is (time of one ``nash_mp`` step) / 2. This script divides
that by the time of the bare BLAS product the query needs:

* single game, n = ``--n`` (default 4096): baseline ``P @ x`` with ``P`` of shape (n, n);
* ``--batch-games`` games batched as contexts (default 64 × n = 1024, P = 0.5 GB; n = 2048 would need
  2.1 GB for P and ~3× that transiently while the game is generated and validated): baselines
  ``np.matmul(P, x[..., None])`` (what ``PreferenceGame.payoff`` calls) and a Python loop of
  per-game ``P[i] @ x[i]`` products.

Timed variants (each timed over a block of calls; blocks of all variants are interleaved, and the
median over ``--repeats`` rounds is reported):

* ``raw``: the baseline product(s) above;
* ``payoff``: ``game.payoff(policy)``, the counted query itself;
* ``step/2``: ``algorithm.step(game, state, game.payoff)`` of ``nashmp.make_algorithm("nash-mp")``,
  divided by 2 — the algorithm's own cost, no metric evaluation;
* ``run/2``: ``nashmp.run(game, "nash-mp", 2·m, metrics=[], equilibrium=<placeholder>)`` per query,
  i.e. including the runner's bookkeeping (a placeholder equilibrium is passed because ``run`` would
  otherwise solve for π*, which no metric needs here).

The target is ratio ``step/2 ÷ raw ≤ 1.25`` at n = 4096.

Command (from the repository root; ~1 min)::

    .venv/bin/python benchmarks/query_speed.py
    .venv/bin/python benchmarks/query_speed.py --quick   # n=1024 single, 64 × 256 batched, 3 repeats

Outputs: a markdown table on stdout and ``benchmarks/results/query_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import nashmp
from _common import (
    command_line,
    machine,
    machine_line,
    md_table,
    peak_rss_gb,
    reexec_with_blas_threads,
    write_json,
    write_text,
)

TARGET_RATIO = 1.25


def placeholder_equilibrium(game: nashmp.PreferenceGame) -> nashmp.Equilibrium:
    """An Equilibrium object that only satisfies ``run``'s signature (no metric will read it)."""
    return nashmp.Equilibrium(
        game=game, log_policy=game.log_ref.copy(), residual=np.zeros(game.num_contexts), newton_steps=0, levels=0
    )


def time_block(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def bench(game: nashmp.PreferenceGame, raw: dict[str, Callable[[], Any]], repeats: int, seconds: float) -> dict:
    X, n = game.num_contexts, game.num_responses
    rng = np.random.default_rng(1)
    policy = rng.dirichlet(np.ones(n), size=X)
    algo = nashmp.make_algorithm("nash-mp")
    state = [algo.init(game)]
    eq = placeholder_equilibrium(game)

    def step() -> None:
        state[0] = algo.step(game, state[0], game.payoff)

    variants: dict[str, Callable[[], Any]] = {**raw, "payoff": lambda: game.payoff(policy), "step": step}
    # calibrate the block length so that one block of the raw baseline takes ~`seconds`
    first = next(iter(raw.values()))
    first()
    t = time_block(first, 3)
    calls = max(3, int(seconds / max(t, 1e-7)))
    run_queries = 2 * max(2, calls // 2)

    def run() -> None:
        nashmp.run(game, "nash-mp", run_queries, equilibrium=eq, metrics=[])

    samples: dict[str, list[float]] = {k: [] for k in [*variants, "run"]}
    for _ in range(2):  # warm-up
        for fn in variants.values():
            fn()
    for r in range(repeats):
        names = list(variants) + ["run"]
        names = names[r % len(names) :] + names[: r % len(names)]  # rotate the order every round
        for name in names:
            if name == "run":
                t0 = time.perf_counter()
                run()
                samples["run"].append((time.perf_counter() - t0) / run_queries)
            else:
                samples[name].append(time_block(variants[name], calls))
    med = {k: statistics.median(v) for k, v in samples.items()}
    med["step/2"] = med.pop("step") / 2
    med["run/2"] = med.pop("run")  # already per query
    return {"X": X, "n": n, "calls_per_block": calls, "repeats": repeats, "median_seconds": med, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="responses of the single game")
    ap.add_argument("--batch-n", type=int, default=1024, help="responses per game in the batched case")
    ap.add_argument("--batch-games", type=int, default=64, help="games batched as contexts")
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds (median reported)")
    ap.add_argument("--block-seconds", type=float, default=0.25, help="length of one timed block")
    ap.add_argument("--quick", action="store_true", help="n=1024 single, 64 × 256 batched, 3 repeats")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (0 = library default)")
    args = ap.parse_args()
    reexec_with_blas_threads(args.blas_threads)
    if args.quick:
        args.n, args.batch_n, args.repeats, args.block_seconds = 1024, 256, 3, 0.1

    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    t0 = time.perf_counter()
    single = nashmp.make_game("random", args.n, 0.1, seed=0)
    P1 = single.P[0]
    x1 = np.random.default_rng(2).dirichlet(np.ones(args.n))
    results.append(
        {
            "case": f"single game, n={args.n}",
            **bench(single, {"raw P @ x": lambda: P1 @ x1}, args.repeats, args.block_seconds),
        }
    )
    del single

    batched = nashmp.make_game("random", args.batch_n, 0.1, num_games=args.batch_games, seed=0)
    PB = batched.P
    xb = np.random.default_rng(3).dirichlet(np.ones(args.batch_n), size=args.batch_games)
    out = np.empty_like(xb)

    def loop() -> np.ndarray:
        for i in range(PB.shape[0]):
            out[i] = PB[i] @ xb[i]
        return out

    raw_b = {"raw np.matmul(P, x[..., None])": lambda: np.matmul(PB, xb[..., None]), "raw loop of P[i] @ x[i]": loop}
    results.append(
        {
            "case": f"{args.batch_games} games batched, n={args.batch_n}",
            **bench(batched, raw_b, args.repeats, args.block_seconds),
        }
    )
    wall = time.perf_counter() - t0

    rows = []
    for res in results:
        med = res["median_seconds"]
        raws = {k: v for k, v in med.items() if k.startswith("raw")}
        base_name = next(iter(raws))
        base = raws[base_name]
        best_raw = min(raws.values())
        res["ratio_step_per_query"] = med["step/2"] / base
        res["ratio_run_per_query"] = med["run/2"] / base
        res["ratio_step_vs_best_raw"] = med["step/2"] / best_raw
        for name, v in med.items():
            rows.append(
                [
                    res["case"],
                    name,
                    f"{v * 1e3:.3f}",
                    f"{v / base:.3f}",
                    f"{v / best_raw:.3f}" if len(raws) > 1 else "",
                ]
            )
    table = md_table(
        ["case", "variant (per query)", "median ms", f"÷ {'first raw'}", "÷ fastest raw"],
        rows,
        ["l", "l", "r", "r", "r"],
    )
    verdict = []
    for res in results:
        r = res["ratio_step_per_query"]
        verdict.append(
            f"- {res['case']}: Nash-MP step per query = {r:.3f} × raw product "
            f"({'meets' if r <= TARGET_RATIO else 'MISSES'} the ≤ {TARGET_RATIO} target); "
            f"through nashmp.run: {res['ratio_run_per_query']:.3f} ×"
            + (
                f"; vs the fastest raw variant: {res['ratio_step_vs_best_raw']:.3f} ×"
                if "loop" in str(res["median_seconds"])
                else ""
            )
        )
    text = (
        f"Time per preference query, Nash-MP (2 queries per step) vs the raw product. {args.repeats} interleaved "
        f"rounds, median.\n\n{machine_line()} Peak RSS {peak_rss_gb():.2f} GB. Load average before the run: {load_before}.\n\n"
        f"Command: `{command_line()}` ({wall:.0f} s wall).\n\n{table}\n\n" + "\n".join(verdict) + "\n"
    )
    print(text)
    name = "query_speed_quick" if args.quick else "query_speed"
    write_text(f"{name}.md", text)
    for res in results:
        res["samples_ms"] = {k: [round(s * 1e3, 5) for s in v] for k, v in res.pop("samples").items()}
    write_json(
        f"{name}.json",
        {
            "command": command_line(),
            "machine": machine(),
            "peak_rss_gb": peak_rss_gb(),
            "loadavg_before": load_before,
            "wall_seconds": wall,
            "target_ratio": TARGET_RATIO,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
