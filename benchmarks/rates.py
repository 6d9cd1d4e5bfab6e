"""Measured convergence rates of Nash-MP against the theory, n-independence, and the adaptive certificate.

What it measures
----------------
(a) **Contraction rates of Nash-MP at η = 2β.** On each family (n = ``--n``, ``--games`` contexts) and
    β ∈ {1e-3, 1e-2, 0.1, 1}, Nash-MP runs until the mean KL(π*‖π) ≤ 1e-20, recording per context
    KL(π*‖π_k), the exploitability 𝓔_β(π_k) and span(log π_k − log π*) every iteration. Reported per
    metric: the *worst single-iteration factor* max_{k,x} v_{k+1}/v_k and the *fitted asymptotic factor*
    (worst context; exp of the least-squares slope of log v_k over the last half of the iterations
    above the rounding floor), both per iteration, next to the theory's KL factor 1/(1+2β) per
    iteration = (1+2β)^{-1/2} per query; and the largest KL_k·(1+2β)^k/KL_0 over k ≥ 1 and contexts
    (≤ 1 is the theorem KL(π*‖π_k) ≤ (1+2β)^{-k}·KL(π*‖π_0)). Floors below which ratios are rounding
    noise: 1e-20 for KL and exploitability, 1e-9 for the span.
(b) **Queries to KL ≤ 1e-8 versus n** at β = 0.1 for n from 10 to 10^4 (one game per n, seed 0), for
    Nash-MP at η = 2β and adaptive-nash-mp, with KL(π*‖π_ref) and the bound's N = smallest even N with
    (1+2β)^{-N/2}·KL_0 ≤ 1e-8. The paper states rates independent of n; the bound depends on n only
    through KL_0.
(c) **adaptive-nash-mp's certificate.** ``state.aux["log_bound"]`` (recorded per iteration in
    ``traj.extras["log_bound"]``, per context) claims KL_k ≤ exp(log_bound_k)·KL_0. We check it at every
    record k ≥ 1 and context with KL_k above 1e-25 and report the largest ratio KL_k / (exp(log_bound_k)·KL_0)
    (≤ 1 means the certificate held), the η reached (min/median/max over contexts at the end), the
    certified per-query factor exp(log_bound/N) and the number of retries.

Command (from the repository root; ~2 min)::

    .venv/bin/python benchmarks/rates.py
    .venv/bin/python benchmarks/rates.py --quick   # β ∈ {1e-2, 0.1}, 3 families, n ≤ 1000 in (b)

Outputs: markdown tables on stdout and ``benchmarks/results/rates.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import numpy as np

import nashmp
from _common import command_line, machine, machine_line, md_table, peak_rss_gb, write_json, write_text
from nashmp.metrics import kl_to_star

FLOORS = {"kl_to_star": 1e-20, "exploitability": 1e-20, "span": 1e-9}
EPS = 1e-8


def theory_n(kl0: float, beta: float, eps: float = EPS) -> int:
    return 0 if kl0 <= eps else 2 * math.ceil(math.log(kl0 / eps) / math.log1p(2 * beta))


def factors(v: np.ndarray, floor: float) -> tuple[float, float]:
    """(worst single-iteration factor, worst-context fitted asymptotic factor) of a (T, X) series."""
    worst, fitted = -math.inf, -math.inf
    for x in range(v.shape[1]):
        s = v[:, x]
        above = np.nonzero(np.isfinite(s) & (s > floor))[0]
        if above.size < 2:
            continue
        last = above[-1]
        seg = s[: last + 1]
        worst = max(worst, float(np.max(seg[1:] / seg[:-1])))
        tail = np.arange(last // 2, last + 1)
        if tail.size >= 2:
            slope = np.polyfit(tail, np.log(s[tail]), 1)[0]
            fitted = max(fitted, float(math.exp(slope)))
    return worst, fitted


# --------------------------------------------------------------------------------------------- (a)
def part_a(families: list[str], betas: list[float], n: int, games: int) -> list[dict[str, Any]]:
    out = []
    for beta in betas:
        for fam in families:
            game = nashmp.make_game(fam, n, beta, num_games=games, seed=0)
            eq = nashmp.solve_equilibrium(game)
            kl0 = kl_to_star(eq.log_policy, game.log_ref)
            budget = theory_n(float(kl0.max()), beta, 1e-20) + 10
            t0 = time.perf_counter()
            traj = nashmp.run(
                game,
                "nash-mp",
                budget,
                equilibrium=eq,
                metrics=["kl_to_star", "exploitability", "span"],
                stop_kl=FLOORS["kl_to_star"],
            )
            row: dict[str, Any] = {"family": fam, "beta": beta, "iterations": int(traj.iterations[-1])}
            for m, floor in FLOORS.items():
                w, f = factors(traj.per_context[m], floor)
                row[f"{m}_worst"], row[f"{m}_fitted"] = w, f
            kl = traj.per_context["kl_to_star"]
            k = traj.iterations[:, None]
            ok = (kl > FLOORS["kl_to_star"]) & (k >= 1)  # k = 0 is 1 by definition
            ratio = np.where(ok, kl * (1 + 2 * beta) ** k / kl[0], 0.0)
            row["bound_ratio_max"] = float(ratio.max())
            row["theory_factor"] = 1 / (1 + 2 * beta)
            row["seconds"] = time.perf_counter() - t0
            out.append(row)
            print(f"[rates a] {fam} β={beta:g}: {row['iterations']} it", file=sys.stderr, flush=True)
    return out


def table_a(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        th = r["theory_factor"]
        body.append(
            [
                f"{r['beta']:g}",
                r["family"],
                f"{th:.4f}",
                f"{r['kl_to_star_worst']:.4f}",
                f"{r['kl_to_star_fitted']:.4f}",
                f"{r['kl_to_star_fitted'] ** 0.5:.4f} / {th**0.5:.4f}",
                f"{r['bound_ratio_max']:.3f}",
                f"{r['exploitability_worst']:.4f}",
                f"{r['exploitability_fitted']:.4f}",
                f"{r['span_worst']:.4f}",
                f"{r['span_fitted']:.4f}",
                r["iterations"],
            ]
        )
    return md_table(
        [
            "β",
            "family",
            "theory KL factor 1/(1+2β)",
            "KL worst",
            "KL fitted",
            "KL fitted per query / theory",
            "max KL_k(1+2β)^k/KL_0",
            "exploit. worst",
            "exploit. fitted",
            "span worst",
            "span fitted",
            "iterations",
        ],
        body,
        ["r", "l"] + ["r"] * 10,
    )


# --------------------------------------------------------------------------------------------- (b)
def part_b(families: list[str], sizes: list[int], beta: float) -> list[dict[str, Any]]:
    out = []
    for fam in families:
        for n in sizes:
            t0 = time.perf_counter()
            game = nashmp.make_game(fam, n, beta, seed=0)
            eq = nashmp.solve_equilibrium(game)
            kl0 = float(kl_to_star(eq.log_policy, game.log_ref).max())
            row: dict[str, Any] = {"family": fam, "n": n, "beta": beta, "kl0": kl0, "theory_n": theory_n(kl0, beta)}
            cap = 4 * row["theory_n"] + 20
            for algo in ("nash-mp", "adaptive-nash-mp"):
                traj = nashmp.run(game, algo, cap, equilibrium=eq, metrics=["kl_to_star"], stop_kl=EPS)
                row[algo] = nashmp.queries_to_reach(traj, EPS)
            row["seconds"] = time.perf_counter() - t0
            out.append(row)
            print(f"[rates b] {fam} n={n}: {row['nash-mp']} queries", file=sys.stderr, flush=True)
            del game, eq
    return out


def table_b(rows: list[dict[str, Any]]) -> str:
    body = [
        [r["family"], r["n"], f"{r['kl0']:.3g}", r["theory_n"], r["nash-mp"] or "—", r["adaptive-nash-mp"] or "—"]
        for r in rows
    ]
    return md_table(
        ["family", "n", "KL(π*‖π_ref)", "bound N (η=2β)", "nash-mp η=2β", "adaptive-nash-mp"],
        body,
    )


# --------------------------------------------------------------------------------------------- (c)
def part_c(families: list[str], betas: list[float], n: int, games: int) -> list[dict[str, Any]]:
    out = []
    for beta in betas:
        for fam in families:
            game = nashmp.make_game(fam, n, beta, num_games=games, seed=0)
            eq = nashmp.solve_equilibrium(game)
            kl0 = kl_to_star(eq.log_policy, game.log_ref)
            cap = theory_n(float(kl0.max()), beta, 1e-14) + 10
            traj = nashmp.run(game, "adaptive-nash-mp", cap, equilibrium=eq, metrics=["kl_to_star"], stop_kl=1e-14)
            kl = traj.per_context["kl_to_star"]
            lb = traj.extras["log_bound"]
            eta = traj.extras["eta"]
            ok = (kl > 1e-25) & (kl0[None, :] > 0) & (traj.iterations[:, None] >= 1)  # k = 0 is 1 by definition
            ratio = np.where(ok, kl / (np.exp(lb) * kl0[None, :]), 0.0)
            N = int(traj.queries[-1])
            final_eta = eta[-1]
            out.append(
                {
                    "family": fam,
                    "beta": beta,
                    "queries": N,
                    "queries_to_1e-8": nashmp.queries_to_reach(traj, EPS),
                    "final_mean_kl": float(traj.metrics["kl_to_star"][-1]),
                    "max_ratio": float(ratio.max()),
                    "records_checked": int(ok.sum()),
                    "eta_over_beta_min": float(final_eta.min() / beta),
                    "eta_over_beta_median": float(np.median(final_eta) / beta),
                    "eta_over_beta_max": float(final_eta.max() / beta),
                    "eta_over_beta_max_ever": float(eta.max() / beta),
                    "certified_factor_per_query": float(np.exp(lb[-1].max() / N)) if N else math.nan,
                    "theory_factor_per_query": (1 + 2 * beta) ** -0.5,
                    "retries": int(traj.final.aux["retries"]),
                    "iterations": int(traj.iterations[-1]),
                }
            )
            print(f"[rates c] {fam} β={beta:g}: max ratio {out[-1]['max_ratio']:.3g}", file=sys.stderr, flush=True)
    return out


def table_c(rows: list[dict[str, Any]]) -> str:
    body = [
        [
            f"{r['beta']:g}",
            r["family"],
            f"{r['max_ratio']:.3g}",
            r["records_checked"],
            f"{r['eta_over_beta_min']:.3g} / {r['eta_over_beta_median']:.3g} / {r['eta_over_beta_max']:.3g}",
            f"{r['eta_over_beta_max_ever']:.3g}",
            f"{r['certified_factor_per_query']:.4f} / {r['theory_factor_per_query']:.4f}",
            r["queries_to_1e-8"],
            r["iterations"],
            r["retries"],
        ]
        for r in rows
    ]
    return md_table(
        [
            "β",
            "family",
            "max KL_k/(e^{log_bound_k}·KL_0)",
            "(k, x) checked",
            "final η/β min / median / max",
            "max η/β",
            "certified factor per query / Nash-MP theory",
            "N to 1e-8",
            "iterations",
            "retries",
        ],
        body,
        ["r", "l"] + ["r"] * 8,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="abc", help="which parts to run, e.g. 'ac'")
    ap.add_argument("--n", type=int, default=30, help="responses per game in (a) and (c)")
    ap.add_argument("--games", type=int, default=4, help="games batched as contexts in (a) and (c)")
    ap.add_argument("--betas", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1, 1.0])
    ap.add_argument("--families", nargs="+", default=["random", "bradley-terry", "rps", "skew", "cyclic"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000, 10000])
    ap.add_argument("--size-families", nargs="+", default=["random", "cyclic"])
    ap.add_argument("--quick", action="store_true", help="β ∈ {1e-2, 0.1}, 3 families, n ≤ 1000 in (b)")
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    args = ap.parse_args()
    if args.quick:
        args.betas = [1e-2, 1e-1]
        args.families = ["random", "rps", "cyclic"]
        args.sizes = [s for s in args.sizes if s <= 1000]

    t0 = time.perf_counter()
    out: dict[str, Any] = {"command": command_line(), "machine": machine()}
    parts = []
    if "a" in args.parts:
        out["a"] = part_a(args.families, args.betas, args.n, args.games)
        parts.append(
            f"### (a) Nash-MP (η = 2β) contraction factors per iteration (n={args.n}, {args.games} games)\n\n"
            + table_a(out["a"])
        )
    if "b" in args.parts:
        out["b"] = part_b(args.size_families, args.sizes, 0.1)
        parts.append("### (b) Queries to KL(π*‖π) ≤ 1e-8 versus n at β = 0.1 (one game per n)\n\n" + table_b(out["b"]))
    if "c" in args.parts:
        out["c"] = part_c(args.families, args.betas, args.n, args.games)
        parts.append(
            f"### (c) adaptive-nash-mp: certificate check and step reached (n={args.n}, {args.games} games)\n\n"
            + table_c(out["c"])
        )
    wall = time.perf_counter() - t0
    out["wall_seconds"] = wall
    out["peak_rss_gb"] = peak_rss_gb()
    text = (
        f"{machine_line()} Peak RSS {peak_rss_gb():.2f} GB.\n\nCommand: `{command_line()}` ({wall:.0f} s wall).\n\n"
        + "\n\n".join(parts)
        + "\n"
    )
    print(text)
    name = "rates" + (f"_{args.tag}" if args.tag else "_quick" if args.quick else "")
    write_text(f"{name}.md", text)
    write_json(f"{name}.json", out)


if __name__ == "__main__":
    main()
