"""Preference queries to reach mean KL(π*‖π) ≤ 1e-8, per algorithm with its best step from a grid.

What it measures
----------------
For every game family of ``nashmp.FAMILIES`` except ``tie`` (whose equilibrium is π_ref, so every
algorithm starts at π*; it is checked separately) and β ∈ {1e-3, 1e-2, 1e-1, 1}, on one batched game of
``--games`` contexts with ``--n`` responses (fixed ``--seed``), it runs every algorithm of
``nashmp.ALGORITHMS`` (except the alias ``inpo`` = ``omd``) over a grid of its step parameters with
``nashmp.run(..., metrics=["kl_to_star"], stop_kl=1e-8)`` and reports the smallest number of counted
preference queries at which the ρ-mean KL(π*‖π) over contexts is ≤ 1e-8, and the parameter that achieved
it. ``adaptive-nash-mp`` runs with its defaults (no tuning: that is its point) and ``nash-mp`` is also
reported untuned at its default η = 2β.

Grids (η of Nash-MP and proximal point is in units of β; η of the mirror-descent methods is η_MD, on
a geometric grid of ratio 2 from 1/β, where η_MD·β = 1 and the step is a best response, down to 1/16;
each grid is run largest step first):

* nash-mp: η ∈ {256, 64, 32, 16, 8, 4, 2, 1, 0.5}·β;
* proximal-point: η ∈ {4096, 1024, 256, 64, 16, 4, 2, 1, 0.5}·β, inner_tol 1e-9;
* omd, egpo, onpo, nash-md (constant step, ``decay=False``): η_MD on the geometric grid;
* nash-md (decaying η_k = min(η, 2/(β(k+2))), the default): η ∈ {1/β, 1, 0.1};
* mpo: α ∈ {1, 0.1, 0.01} × η on the geometric grid extended to 8/β (MPO's η has no η·β ≤ 1
  constraint), magnet reset every 20 iterations (the default);
* sppo: η ∈ {10, 1, 0.1}; online-ipo: lr ∈ {4096, 1024, 256, 64, 16, 4, 1, 0.25}.

Search and stopping rules (exact unless marked):

* budget cap per β: 2e5 queries at β = 1e-3, 5e4 at 1e-2, 1e4 at 0.1, 2e3 at 1 ('>cap' if not reached);
* within one row, each grid point runs with budget min(cap, best so far): a point that has not reached
  1e-8 by then cannot be the best one, so the best count is exact (a run whose last iteration crosses
  the budget, e.g. an outer step of proximal point, counts as not reached);
* a run whose mean KL becomes NaN/inf, or exceeds 100·max(KL_0, 1), is stopped ("diverged");
* heuristic early stops (``--no-early-stop`` disables them): after 1000 iterations, every 500 iterations,
  "stalled" if the minimum KL over the second half of the run is not 0.1 % below the minimum over the
  first half *and* KL varies by less than 1 % over that second half (a biased fixed point), and
  "projected" if the geometric rate over the last half of the run would need more than 20× the
  remaining budget to reach 1e-8. (The recorded run in docs/benchmarks.md used an earlier stall rule
  without the 1 % flatness condition; a validation run with ``--no-early-stop`` showed that it
  misjudged online-ipo, whose KL first rises for a long time — see the docs.)

Runs execute in ``--workers`` processes (default 2).

Command (from the repository root; 23 min on 2 cores for the recorded run, half of it MPO's 54-point grid at
β = 1e-3; the current stall rule lets online-ipo runs continue, estimated +5–15 min)::

    .venv/bin/python benchmarks/queries_to_eps.py
    .venv/bin/python benchmarks/queries_to_eps.py --quick   # n=12, 2 games, β ∈ {0.1, 1}, caps ÷ 5

Outputs: a markdown table per β on stdout and ``benchmarks/results/queries_to_eps.{json,csv,md}``.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing as mp
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import nashmp
from _common import command_line, machine, machine_line, md_table, write_csv, write_json, write_text
from nashmp.metrics import kl_to_star

TARGET = 1e-8
CAPS = {1e-3: 200_000, 1e-2: 50_000, 1e-1: 10_000, 1.0: 2_000}
NASH_MULTS = (256, 64, 32, 16, 8, 4, 2, 1, 0.5)  # largest first: see "Search and stopping rules"
PP_MULTS = (4096, 1024, 256, 64, 16, 4, 2, 1, 0.5)
CHECK_EVERY = 500
MIN_CHECK_ITERS = 1000
PROJECT_FACTOR = 20.0


# ---------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Row:
    """One row of the table: an algorithm and the grid of parameters it is tuned over."""

    label: str
    algo: str
    grid: tuple[dict[str, Any], ...]
    tuned: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)


def md_grid(beta: float, top: float = 1.0) -> list[float]:
    """η_MD = (top/β)·2^{-k} down to 1/16, largest first (η_MD·β ≤ 1 for top = 1)."""
    out, e = [], top / beta
    while e >= (1 / 16) * (1 - 1e-12):
        out.append(e)
        e /= 2
    return out


def fmt_param(key: str, value: Any, beta: float) -> str:
    if key == "eta_mult":
        return f"η={value:g}β"
    if key == "eta" and isinstance(value, float):
        return f"η={value:.3g}"
    if isinstance(value, float):
        return f"{key}={value:.3g}"
    return f"{key}={value}"


def rows_for(beta: float, algorithms: set[str]) -> list[Row]:
    mdg = md_grid(beta)
    rows = [
        Row("nash-mp (tuned η)", "nash-mp", tuple({"eta_mult": m} for m in NASH_MULTS)),
        Row("nash-mp (η=2β, untuned)", "nash-mp", ({},), tuned=False),
        Row("adaptive-nash-mp (defaults)", "adaptive-nash-mp", ({},), tuned=False),
        Row(
            "proximal-point (tuned η)",
            "proximal-point",
            tuple({"eta_mult": m} for m in PP_MULTS),
            fixed={"inner_tol": 1e-9},
        ),
        Row("egpo", "egpo", tuple({"eta": e} for e in mdg)),
        Row("omd (= inpo)", "omd", tuple({"eta": e} for e in mdg)),
        Row("onpo", "onpo", tuple({"eta": e} for e in mdg)),
        Row(
            "nash-md (decaying, default)",
            "nash-md",
            tuple({"eta": e} for e in sorted({1.0 / beta, min(1.0, 1 / beta), min(0.1, 1 / beta)}, reverse=True)),
            fixed={"decay": True},
        ),
        Row("nash-md (constant η)", "nash-md", tuple({"eta": e} for e in mdg), fixed={"decay": False}),
        Row("mpo", "mpo", tuple({"eta": e, "alpha": a} for a in (1.0, 0.1, 0.01) for e in md_grid(beta, 8.0))),
        Row("sppo", "sppo", tuple({"eta": e} for e in (10.0, 1.0, 0.1))),
        Row("online-ipo", "online-ipo", tuple({"lr": lr} for lr in (4096, 1024, 256, 64, 16, 4, 1, 0.25))),
    ]
    return [r for r in rows if r.algo in algorithms]


# ---------------------------------------------------------------------------------------- one run
class EarlyStopError(Exception):
    def __init__(self, status: str, queries: int, kl: float) -> None:
        super().__init__(status)
        self.status, self.queries, self.kl = status, queries, kl


def guarded(
    algo: nashmp.Algorithm, game: nashmp.PreferenceGame, log_star: np.ndarray, budget: int, early: bool
) -> nashmp.Algorithm:
    """Wrap ``algo`` so that divergence (always) and stalls/hopeless rates (if ``early``) stop the run."""
    its: list[int] = []
    kls: list[float] = []
    count = 0

    def mean_kl(lp: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            v = kl_to_star(log_star, lp)
        return float(np.sum(game.weights * v)) if np.all(np.isfinite(v)) else math.inf

    def init(g: nashmp.PreferenceGame) -> nashmp.State:
        s = algo.init(g)
        its.append(0)
        kls.append(mean_kl(s.log_policy))
        return s

    def step(g: nashmp.PreferenceGame, state: nashmp.State, query: Any) -> nashmp.State:
        nonlocal count

        def counted(policy: np.ndarray) -> np.ndarray:
            nonlocal count
            count += 1
            return query(policy)

        new = algo.step(g, state, counted)
        k = new.iteration
        if k % 50 == 0:
            kl = mean_kl(new.log_policy)
            if not np.isfinite(kl) or kl > 100 * max(kls[0], 1.0):
                raise EarlyStopError("diverged", count, kl)
            its.append(k)
            kls.append(kl)
            if early and k >= MIN_CHECK_ITERS and k % CHECK_EVERY == 0 and kl > TARGET:
                it, v = np.asarray(its), np.asarray(kls)
                first = v[it <= k // 2].min()
                tail = v[it > k // 2]
                second = tail.min()
                if second >= (1 - 1e-3) * first and tail.max() <= (1 + 1e-2) * second:
                    raise EarlyStopError("stalled", count, kl)
                old = v[(it >= k // 4) & (it <= k // 2)].min()
                rate = math.log(second / old) / (k / 2)  # < 0
                if rate < 0:
                    needed = math.log(TARGET / second) / rate  # iterations still needed
                    left = max(budget - count, 1) / (count / k)
                    if needed > PROJECT_FACTOR * left:
                        raise EarlyStopError("projected", count, kl)
        return new

    return nashmp.Algorithm(algo.name, init, step, algo.params)


@functools.lru_cache(maxsize=8)
def game_and_eq(family: str, n: int, beta: float, games: int, seed: int) -> tuple[Any, Any]:
    game = nashmp.make_game(family, n, beta, num_games=games, seed=seed)
    return game, nashmp.solve_equilibrium(game)


def params_of(point: dict[str, Any], fixed: dict[str, Any], beta: float) -> dict[str, Any]:
    p = dict(fixed)
    for k, v in point.items():
        if k == "eta_mult":
            p["eta"] = v * beta
        else:
            p[k] = v
    return p


def run_point(
    game: Any, eq: Any, algo: str, params: dict[str, Any], budget: int, early: bool
) -> tuple[int | None, str, int, float]:
    """(queries to reach or None, status, queries spent, last mean KL)."""
    base = nashmp.make_algorithm(algo, **params)
    wrapped = guarded(base, game, eq.log_policy, budget, early)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            traj = nashmp.run(game, wrapped, budget, equilibrium=eq, metrics=["kl_to_star"], stop_kl=TARGET)
    except EarlyStopError as stop:
        return None, stop.status, stop.queries, stop.kl
    except (FloatingPointError, ValueError, OverflowError, nashmp.NashMPValueError) as exc:
        return None, f"error: {type(exc).__name__}", 0, math.nan
    q = nashmp.queries_to_reach(traj, TARGET)
    if q is not None and q > budget:  # the last iteration crossed the budget (several queries per iteration)
        q = None
    last = float(traj.metrics["kl_to_star"][-1])
    return q, ("reached" if q is not None else "budget"), int(traj.queries[-1]), last


def run_row(task: tuple[float, str, Row, dict[str, Any]]) -> dict[str, Any]:
    beta, family, row, cfg = task
    t0 = time.perf_counter()
    game, eq = game_and_eq(family, cfg["n"], beta, cfg["games"], cfg["seed"])
    cap = cfg["caps"][beta]
    best: int | None = None
    best_point: dict[str, Any] | None = None
    points = []
    for point in row.grid:
        budget = cap if best is None else min(cap, best)
        params = params_of(point, row.fixed, beta)
        q, status, spent, last = run_point(game, eq, row.algo, params, budget, cfg["early"])
        points.append(
            {
                "point": point,
                "queries": q,
                "status": status,
                "budget": budget,
                "spent": spent,
                "last_kl": None if not np.isfinite(last) else last,
            }
        )
        if q is not None and (best is None or q < best):
            best, best_point = q, point
    edge = False
    if row.tuned and best_point is not None:
        for key, value in best_point.items():
            values = sorted({p[key] for p in row.grid if key in p})
            if len(values) > 1 and key != "alpha" and value in (values[0], values[-1]):
                edge = True
    return {
        "beta": beta,
        "family": family,
        "row": row.label,
        "algo": row.algo,
        "fixed": row.fixed,
        "cap": cap,
        "best_queries": best,
        "best_point": best_point,
        "best_at_grid_edge": edge,
        "kl0": float(np.sum(game.weights * kl_to_star(eq.log_policy, game.log_ref))),
        "points": points,
        "seconds": time.perf_counter() - t0,
    }


def tie_check(cfg: dict[str, Any], algorithms: set[str]) -> dict[str, int | None]:
    """On the tie family π* = π_ref: every algorithm must report 0 queries (KL_0 = 0)."""
    out = {}
    for row in rows_for(0.1, algorithms):
        if row.label in out:
            continue
        game, eq = game_and_eq("tie", cfg["n"], 0.1, cfg["games"], cfg["seed"])
        params = params_of(row.grid[0], row.fixed, 0.1)
        traj = nashmp.run(game, row.algo, 10, equilibrium=eq, metrics=["kl_to_star"], stop_kl=TARGET, **params)
        out[row.label] = nashmp.queries_to_reach(traj, TARGET)
    return out


# ---------------------------------------------------------------------------------------- report
def cell(res: dict[str, Any]) -> str:
    if res["best_queries"] is None:
        statuses = sorted({p["status"] for p in res["points"]})
        return f">{res['cap']:,}<br><sub>{'/'.join(statuses)}</sub>"
    bp = res["best_point"]
    txt = ", ".join(fmt_param(k, v, res["beta"]) for k, v in bp.items()) if bp else "defaults"
    mark = " (edge)" if res["best_at_grid_edge"] else ""
    return f"**{res['best_queries']:,}**<br><sub>{txt}{mark}</sub>"


def theory_queries(kl0: float, beta: float) -> int:
    """Nash-MP bound at η=2β: smallest even N with (1+2β)^{-N/2}·KL_0 ≤ 1e-8."""
    if kl0 <= TARGET:
        return 0
    return 2 * math.ceil(math.log(kl0 / TARGET) / math.log1p(2 * beta))


def summarize(results: list[dict[str, Any]], betas: list[float], families: list[str]) -> str:
    out = []
    by = {(r["beta"], r["family"], r["row"]): r for r in results}
    labels = list(dict.fromkeys(r["row"] for r in sorted(results, key=lambda r: r["order"])))
    for beta in betas:
        out.append(f"\n### β = {beta:g} (cap {CAPS_USED[beta]:,} queries)\n")
        header = ["algorithm", *families]
        rows = []
        for label in labels:
            rows.append([label, *(cell(by[(beta, f, label)]) if (beta, f, label) in by else "" for f in families)])
        kl0 = [by[(beta, f, labels[0])]["kl0"] for f in families]
        rows.append(["KL(π*‖π_ref) (ρ-mean)", *(f"{k:.3g}" for k in kl0)])
        rows.append(["Nash-MP bound (1+2β)^{-N/2}·KL_0 ≤ 1e-8", *(f"{theory_queries(k, beta):,}" for k in kl0)])
        out.append(md_table(header, rows, ["l"] + ["r"] * len(families)))
        out.append("")
        for f in families:
            cand = [by[(beta, f, lab)] for lab in labels if (beta, f, lab) in by]
            reached = [c for c in cand if c["best_queries"] is not None]
            if not reached:
                out.append(f"- {f}: no algorithm reached 1e-8 within the cap.")
                continue
            win = min(reached, key=lambda c: c["best_queries"])
            ada = by.get((beta, f, "adaptive-nash-mp (defaults)"))
            baselines = [c for c in reached if not c["algo"].startswith(("nash-mp", "adaptive", "proximal"))]
            bb = min(baselines, key=lambda c: c["best_queries"]) if baselines else None
            s = f"- {f}: fastest {win['row']} ({win['best_queries']:,})"
            if ada is not None and bb is not None:
                aq = ada["best_queries"]
                if aq is None:
                    s += f"; adaptive-nash-mp did not reach; best tuned baseline {bb['row']} {bb['best_queries']:,}"
                else:
                    ratio = aq / bb["best_queries"]
                    verdict = "beats" if ratio < 1 else "does NOT beat"
                    s += (
                        f"; adaptive-nash-mp {aq:,} {verdict} the best tuned baseline "
                        f"{bb['row']} {bb['best_queries']:,} (ratio {ratio:.2f})"
                    )
            out.append(s + ".")
    return "\n".join(out)


CAPS_USED: dict[float, int] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="responses per game")
    ap.add_argument("--games", type=int, default=4, help="games batched as contexts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--betas", type=float, nargs="+", default=sorted(CAPS))
    ap.add_argument("--families", nargs="+", default=[f for f in nashmp.FAMILIES if f != "tie"])
    ap.add_argument("--algos", nargs="+", default=[a for a in nashmp.ALGORITHMS if a != "inpo"])
    ap.add_argument("--cap-scale", type=float, default=1.0, help="multiply every budget cap")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-early-stop", action="store_true", help="disable the 'stalled'/'projected' heuristics")
    ap.add_argument("--quick", action="store_true", help="n=12, 2 games, β ∈ {0.1, 1}, caps ÷ 5")
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    args = ap.parse_args()
    if args.quick:
        args.n, args.games, args.betas, args.cap_scale = 12, 2, [1e-1, 1.0], args.cap_scale / 5
    if "rps" in args.families and args.n % 3:
        ap.error("the rps family needs n divisible by 3")
    caps = {}
    for b in args.betas:
        base = CAPS.get(b) or int(2_000 / b**0.5)
        caps[b] = max(10, int(base * args.cap_scale))
    CAPS_USED.update(caps)
    cfg = {"n": args.n, "games": args.games, "seed": args.seed, "caps": caps, "early": not args.no_early_stop}
    algorithms = set(args.algos)
    tasks, order = [], {}
    for beta in args.betas:
        for i, row in enumerate(rows_for(beta, algorithms)):
            order[row.label] = i
            for fam in args.families:
                tasks.append((beta, fam, row, cfg))
    # longest first (small β, big grids) for load balance
    tasks.sort(key=lambda t: -t[3]["caps"][t[0]] * len(t[2].grid))
    t0 = time.perf_counter()
    results = []
    with mp.get_context("fork").Pool(args.workers) as pool:
        for res in pool.imap_unordered(run_row, tasks):
            res["order"] = order[res["row"]]
            results.append(res)
            print(
                f"[queries_to_eps] {len(results)}/{len(tasks)} β={res['beta']:g} {res['family']} {res['row']}: "
                f"{res['best_queries']} ({res['seconds']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    wall = time.perf_counter() - t0
    tie = tie_check(cfg, algorithms)

    header = (
        f"Queries to mean KL(π*‖π) ≤ {TARGET:g}; n={args.n}, {args.games} games as contexts, seed {args.seed}. "
        f"Cell: best query count (bold) and the step that achieved it; '(edge)' = best step at the end of its grid; "
        f"'>cap' = not reached, with the stop reasons of the grid points.\n\n{machine_line()}\n\n"
        f"Command: `{command_line()}` ({wall:.0f} s wall, {args.workers} workers)."
    )
    body = summarize(results, args.betas, args.families)
    tie_line = "\n\nTie family (π* = π_ref): queries to reach at the first step of each grid: " + ", ".join(
        f"{k} {v}" for k, v in tie.items()
    )
    text = header + "\n" + body + tie_line + "\n"
    print(text)
    suffix = f"_{args.tag}" if args.tag else ("_quick" if args.quick else "")
    write_text(f"queries_to_eps{suffix}.md", text)
    results.sort(key=lambda r: (r["beta"], r["family"], r["order"]))
    for r in results:
        r["seconds"] = round(r["seconds"], 2)
        r["points"] = [
            [
                ";".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in p["point"].items())
                or "defaults",
                p["queries"],
                p["status"],
                p["budget"],
                p["spent"],
            ]
            for p in r["points"]
        ]
    write_json(
        f"queries_to_eps{suffix}.json",
        {
            "command": command_line(),
            "machine": machine(),
            "config": {**{k: v for k, v in cfg.items() if k != "caps"}, "caps": {str(k): v for k, v in caps.items()}},
            "target_kl": TARGET,
            "wall_seconds": wall,
            "tie_check": tie,
            "points_format": ["params", "queries_to_target_or_null", "status", "budget", "queries_spent"],
            "results": results,
        },
        indent=None,
    )
    write_csv(
        f"queries_to_eps{suffix}.csv",
        ["beta", "family", "algorithm", "best_queries", "best_params", "cap", "kl0", "seconds"],
        [
            [
                r["beta"],
                r["family"],
                r["row"],
                "" if r["best_queries"] is None else r["best_queries"],
                "" if r["best_point"] is None else ";".join(f"{k}={v}" for k, v in r["best_point"].items()),
                r["cap"],
                f"{r['kl0']:.6g}",
                f"{r['seconds']:.2f}",
            ]
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
