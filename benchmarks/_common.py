"""Helpers shared by the benchmark scripts: machine description, markdown tables, result files."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU, core count, Python/numpy/scipy versions and the BLAS numpy was built against."""
    import scipy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg['name']} {cfg['version']}"
    except Exception:  # numpy < 2 or unusual builds
        pass
    threads = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": "none",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas,
        "blas_thread_env": threads or "default",
        "platform": platform.platform(),
        "nashmp": source_version(),
        "loadavg_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }


def source_version() -> str:
    """``git`` commit of the repository and whether src/ has uncommitted changes (what was benchmarked)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" + uncommitted src changes" if dirty.stdout.strip() else "")


def machine_line() -> str:
    m = machine()
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, no GPU; Python {m['python']}, numpy {m['numpy']}, "
        f"scipy {m['scipy']}, BLAS {m['blas']} (thread env: {m['blas_thread_env']}); nashmp at {m['nashmp']}. Load average (1/5/15 min) when written: {m['loadavg_1_5_15min']}."
    )


def reexec_with_blas_threads(threads: int) -> None:
    """Re-run this script with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``threads``.

    BLAS reads these variables only when it is loaded, so the process is replaced (``os.execv``) unless
    they are already set. ``threads`` = 0 keeps the library default. On a 2-core machine shared with other
    jobs, the default 2 OpenBLAS threads made a 1024×1024 ``P @ x`` 60× slower (12 ms vs 0.2 ms) in our
    runs, so the timing scripts default to 1 thread.
    """
    if threads <= 0:
        return
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    if all(os.environ.get(k) == str(threads) for k in keys):
        return
    env = {**os.environ, **dict.fromkeys(keys, str(threads))}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def peak_rss_gb() -> float:
    """Peak resident memory of this process (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table; ``align`` holds 'l' or 'r' per column (default: first left, rest right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_sci(x: float | None, digits: int = 2) -> str:
    if x is None or not np.isfinite(x):
        return "—" if x is None else str(x)
    return f"{x:.{digits}e}"


def write_json(name: str, payload: Mapping[str, Any], indent: int | None = 1) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    seps = (",", ":") if indent is None else None
    path.write_text(json.dumps(payload, indent=indent, separators=seps, default=_json_default) + "\n")
    return path


def write_csv(name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_text(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


def command_line() -> str:
    """The command that produced this output, as run from the repository root."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
