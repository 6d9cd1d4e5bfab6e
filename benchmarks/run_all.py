"""Run every benchmark in sequence (``make bench``) and the ``nashmp compare`` plots of docs/benchmarks.md.

The timing benchmarks (query_speed, solver_scaling) run first and alone, so that nothing else competes
for the 2 cores while they are timed; then queries_to_eps (2 worker processes), rates, and the two
``nashmp compare`` runs whose ``compare.png`` and ``summary.md`` are kept in ``docs/img/`` (their
``metrics.csv`` is deleted to keep the repository small). Each benchmark writes its own files into
``benchmarks/results/``.

Command (from the repository root; 35–50 min on 2 cores, no GPU)::

    .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick            # every script with --quick (~3 min);
                                                              # compare plots go to runs/bench-quick/
    .venv/bin/python benchmarks/run_all.py --only rates query_speed
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("query_speed", "solver_scaling", "queries_to_eps", "rates")
COMPARES = {
    "compare-cyclic": ["--family", "cyclic", "--n", "60", "--games", "8", "--beta", "0.01", "--queries", "3000"],
    "compare-random": ["--family", "random", "--n", "60", "--games", "8", "--beta", "0.1", "--queries", "600"],
}


def nashmp_cli() -> list[str]:
    exe = Path(sys.executable).parent / "nashmp"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nashmp.cli.main"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script; smaller compare runs")
    ap.add_argument("--only", nargs="+", choices=[*SCRIPTS, *COMPARES], help="run only these steps")
    args = ap.parse_args()
    steps = args.only or [*SCRIPTS, *COMPARES]
    failed = []
    t_all = time.perf_counter()
    for name in steps:
        if name in SCRIPTS:
            cmd = [sys.executable, str(Path("benchmarks") / f"{name}.py"), *(["--quick"] if args.quick else [])]
            out_dir = None
        else:
            cli_args = list(COMPARES[name])
            if args.quick:
                i = cli_args.index("--queries")
                cli_args[i + 1] = str(int(cli_args[i + 1]) // 5)
                out_dir = Path("runs") / "bench-quick" / name
            else:
                out_dir = Path("docs") / "img" / name
            cmd = [*nashmp_cli(), "compare", *cli_args, "--out", str(out_dir), "--no-progress"]
        print(f"\n## {name}\n\n$ {' '.join(cmd)}\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"\n[{name}: exit {rc}, {time.perf_counter() - t0:.0f} s]", flush=True)
        if rc != 0:
            failed.append(name)
        if out_dir is not None:
            csv = ROOT / out_dir / "metrics.csv"
            if csv.exists() and not args.quick:
                csv.unlink()
            for extra in (ROOT / out_dir).glob("*"):
                if extra.name not in ("compare.png", "summary.md", "metrics.csv"):
                    shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    print(f"\nall benchmarks: {time.perf_counter() - t_all:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
