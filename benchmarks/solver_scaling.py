"""Wall time and certificate of ``nashmp.solve_equilibrium`` versus the number of responses n.

What it measures
----------------
For the ``random`` and ``cyclic`` families (one game, seed 0), n ∈ {10, 100, 1000, 4096, 10000} and
β ∈ {1e-3, 1e-1, 10}: the wall time of ``solve_equilibrium(game, raise_on_failure=False)`` (default
tol 1e-10; dense Newton for n ≤ 2048, GMRES-Newton above), its certificate
``max_x span(log π* − log BR(π*))`` (pass if ≤ 1e-10), the Newton steps and β-continuation levels it
used, and KL(π*‖π_ref). The game is generated once per (family, n) (generation time reported) and
re-used for every β through ``game.with_beta``. A solve that exceeds ``--timeout`` seconds is stopped
(SIGALRM) and reported as a timeout.

Command (from the repository root; ~6–8 min on 2 cores, most of it at n = 10000)::

    .venv/bin/python benchmarks/solver_scaling.py
    .venv/bin/python benchmarks/solver_scaling.py --quick   # n ≤ 4096

Outputs: a markdown table on stdout and ``benchmarks/results/solver_scaling.{json,csv,md}``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
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
    write_csv,
    write_json,
    write_text,
)
from nashmp.metrics import kl_to_star

TOL = 1e-10


class SolveTimeoutError(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise SolveTimeoutError


def solve(game: nashmp.PreferenceGame, timeout: int) -> dict[str, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    t0 = time.perf_counter()
    try:
        eq = nashmp.solve_equilibrium(game, tol=TOL, raise_on_failure=False)
    except SolveTimeoutError:
        return {"seconds": time.perf_counter() - t0, "status": "timeout"}
    finally:
        signal.alarm(0)
    dt = time.perf_counter() - t0
    cert = eq.certificate
    return {
        "seconds": dt,
        "status": "certified" if cert <= TOL else "NOT certified",
        "certificate": cert,
        "newton_steps": eq.newton_steps,
        "levels": eq.levels,
        "kl_star_ref": float(np.max(kl_to_star(eq.log_policy, game.log_ref))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 4096, 10000])
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-3, 1e-1, 10.0])
    ap.add_argument("--families", nargs="+", default=["random", "cyclic"])
    ap.add_argument("--timeout", type=int, default=400, help="seconds allowed per solve")
    ap.add_argument("--quick", action="store_true", help="stop at n = 4096")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (0 = library default)")
    args = ap.parse_args()
    reexec_with_blas_threads(args.blas_threads)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 4096]

    load_before = [round(x, 2) for x in os.getloadavg()]
    t_all = time.perf_counter()
    results = []
    for family in args.families:
        for n in args.sizes:
            t0 = time.perf_counter()
            base = nashmp.make_game(family, n, args.betas[0], seed=0)
            gen = time.perf_counter() - t0
            for beta in args.betas:
                game = base if beta == args.betas[0] else base.with_beta(beta)
                res = {"family": family, "n": n, "beta": beta, "generate_seconds": gen, **solve(game, args.timeout)}
                results.append(res)
                print(
                    f"[solver_scaling] {family} n={n} β={beta:g}: {res['status']} in {res['seconds']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
                del game
            del base
    wall = time.perf_counter() - t_all

    rows = []
    for family in args.families:
        for n in args.sizes:
            sub = [r for r in results if r["family"] == family and r["n"] == n]
            cells = []
            for r in sub:
                if r["status"] == "timeout":
                    cells.append(f">{args.timeout} s (timeout)")
                else:
                    ok = "" if r["status"] == "certified" else " **FAIL**"
                    cells.append(
                        f"{r['seconds']:.3g} s<br><sub>cert {r['certificate']:.1e}{ok}, "
                        f"{r['newton_steps']} Newton / {r['levels']} levels</sub>"
                    )
            rows.append([family, n, f"{sub[0]['generate_seconds']:.3g} s", *cells])
    table = md_table(["family", "n", "generate", *(f"β = {b:g}" for b in args.betas)], rows)
    text = (
        f"solve_equilibrium wall time, certificate span(log π* − log BR(π*)) (tol {TOL:g}), Newton steps and "
        f"continuation levels. Dense Newton for n ≤ 2048, GMRES-Newton above.\n\n{machine_line()} "
        f"Peak RSS {peak_rss_gb():.2f} GB. Load average before the run: {load_before}.\n\nCommand: `{command_line()}` ({wall:.0f} s wall).\n\n{table}\n"
    )
    print(text)
    name = "solver_scaling_quick" if args.quick else "solver_scaling"
    write_text(f"{name}.md", text)
    write_json(
        f"{name}.json",
        {
            "command": command_line(),
            "machine": machine(),
            "peak_rss_gb": peak_rss_gb(),
            "loadavg_before": load_before,
            "wall_seconds": wall,
            "results": results,
        },
    )
    cols = [
        "family",
        "n",
        "beta",
        "status",
        "seconds",
        "certificate",
        "newton_steps",
        "levels",
        "kl_star_ref",
        "generate_seconds",
    ]
    write_csv(f"{name}.csv", cols, [[r.get(c, "") for c in cols] for r in results])


if __name__ == "__main__":
    main()
