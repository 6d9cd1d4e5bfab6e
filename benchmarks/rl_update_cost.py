"""Cost of one off-policy gradient step: nashmp ``MDPOOff.update`` vs Stable-Baselines3 ``SAC.train``.

Off-policy MDPO and SAC both take one gradient step per environment step, so after the warm-up their
env-steps/s is set by the cost of that step. This script measures it directly, side by side in one
process, so both sides see the same machine load:

1. For each environment, build ``MDPOOff(MDPOOffConfig())`` and ``SAC("MlpPolicy")`` with their default
   networks (256-256 ReLU), batch 256, 1 torch thread, and fill both replay buffers with the same number
   of uniformly random steps (``--fill``; no gradient step is taken while filling).
2. Alternate blocks of ``--block`` gradient steps: one block of ``MDPOOff.update()`` calls, then one
   ``SAC.train(gradient_steps=block)``, ``--blocks`` times. Interleaving cancels drifts in machine load.
3. Report the median over blocks of milliseconds per gradient step and the ratio nashmp / SB3.

What one step contains: MDPO-off samples a batch, runs the actor (one forward), the frozen π_old (one
forward), the two critics for ∂Q/∂a (critic weights frozen during the actor step), the actor update, the
soft Bellman target (actor + two target critics), the critic update and the Polyak step. SAC does the same
minus π_old, plus its temperature (α) update. Environment stepping and data collection are not timed.

Usage::

    .venv/bin/python benchmarks/rl_update_cost.py                     # 3 envs, ~3 min
    .venv/bin/python benchmarks/rl_update_cost.py --envs Hopper-v5 --blocks 10

Outputs: ``benchmarks/results/rl_update_cost.{md,csv,json}`` (``--tag T``: ``rl_update_cost_T.*``). To time
an older version of nashmp, check it out beside this one and put its ``src`` first on the path::

    git worktree add ../nashmp-before bb798a4
    PYTHONPATH=../nashmp-before/src .venv/bin/python benchmarks/rl_update_cost.py --tag before
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def _fill_and_build(env_id: str, fill: int, seed: int) -> tuple[Any, Any]:
    import gymnasium as gym
    from stable_baselines3 import SAC

    from nashmp.rl.mdpo_off import MDPOOff, MDPOOffConfig

    agent = MDPOOff(MDPOOffConfig(env_id=env_id, total_steps=fill + 1, learning_starts=fill, seed=seed))
    agent.learn(stop_after=fill)  # random warm-up only: update() is never called at step <= learning_starts
    sac = SAC("MlpPolicy", gym.make(env_id), learning_starts=fill, seed=seed, device="cpu", verbose=0)
    sac.learn(total_timesteps=fill)  # SB3 trains only once num_timesteps > learning_starts
    return agent, sac


def measure(env_id: str, *, fill: int, block: int, blocks: int, seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    agent, sac = _fill_and_build(env_id, fill, seed)
    agent.update(), sac.train(gradient_steps=1, batch_size=256)  # warm-up: allocator, first-call overheads
    ours, theirs = [], []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(block):
            agent.update()
        ours.append((time.perf_counter() - start) / block * 1e3)
        start = time.perf_counter()
        sac.train(gradient_steps=block, batch_size=256)
        theirs.append((time.perf_counter() - start) / block * 1e3)
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {
        "env": env_id,
        "nashmp_ms": statistics.median(ours),
        "sb3_ms": statistics.median(theirs),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "blocks": blocks,
        "block": block,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=["Pendulum-v1", "Hopper-v5", "HalfCheetah-v5"])
    ap.add_argument("--fill", type=int, default=2000, help="random steps in both replay buffers")
    ap.add_argument("--block", type=int, default=100, help="gradient steps per timed block")
    ap.add_argument("--blocks", type=int, default=8, help="interleaved blocks per library")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix for the result files (e.g. 'before' for an older checkout)")
    args = ap.parse_args(argv)
    if args.fill < 256 or args.block < 1 or args.blocks < 1:
        ap.error("--fill must be ≥ 256 (one batch), --block and --blocks ≥ 1")
    _common.reexec_with_blas_threads(1)

    import stable_baselines3
    import torch

    rows = []
    for env_id in args.envs:
        r = measure(env_id, fill=args.fill, block=args.block, blocks=args.blocks, seed=args.seed)
        print(f"{env_id}: nashmp {r['nashmp_ms']:.2f} ms, SB3 {r['sb3_ms']:.2f} ms, ratio {r['ratio']:.2f}", flush=True)
        rows.append(r)
    header = ["env", "nashmp MDPO-off ms/step", "SB3 SAC ms/step", "ratio nashmp/SB3 (min–max over blocks)"]
    table = [
        [r["env"], f"{r['nashmp_ms']:.2f}", f"{r['sb3_ms']:.2f}",
         f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"]
        for r in rows
    ]  # fmt: skip
    versions = f"torch {torch.__version__}, Stable-Baselines3 {stable_baselines3.__version__}"
    text = (
        "# Off-policy gradient-step cost: nashmp MDPO-off vs SB3 SAC\n\n"
        f"Written by `benchmarks/rl_update_cost.py` (`{_common.command_line()}`). {versions}, 1 torch thread.\n"
        f"{_common.machine_line()}\n\n"
        f"Median over {args.blocks} interleaved blocks of {args.block} gradient steps, batch 256, "
        f"default 256-256 networks, replay buffers filled with {args.fill} random steps.\n\n"
        + _common.md_table(header, table, align=["l", "r", "r", "r"])
    )
    import nashmp

    name = "rl_update_cost" + (f"_{args.tag}" if args.tag else "")
    src = Path(nashmp.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    text += f"\n\nTimed nashmp: `{src}` (checkout at {head.stdout.strip() or 'unknown'}).\n"
    _common.write_text(f"{name}.md", text)
    _common.write_csv(f"{name}.csv", list(rows[0]), [list(r.values()) for r in rows])
    payload = {"machine": _common.machine(), "versions": versions, "nashmp_path": nashmp.__file__, "rows": rows}
    _common.write_json(f"{name}.json", payload)
    print(text)


if __name__ == "__main__":
    main()
