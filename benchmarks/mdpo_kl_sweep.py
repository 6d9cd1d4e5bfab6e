r"""KL(π_{k+1}‖π_k) per iteration of on-policy MDPO for a grid of step settings, next to SB3 PPO on the same data.

Issue 12 diagnosed that with the then defaults (m = 10 full-batch Adam steps, lr 3e-4) an MDPO iteration moves the
policy by a median KL of ~1e-3, a tenth of what PPO's clipped update moves it, so the KL weight 1/t_k does
not bind. This script measures that step for each setting cheaply, without training to the end:

1. For each environment, setting and seed, build ``MDPO`` with ``total_steps = --budget`` (1M by default, so
   that t_k and any annealing are those of the first iterations of a 1M-step run) and ``n_steps = 2048``.
2. Run ``--iterations`` iterations (10) by hand: ``batch = agent.collect()``, then **PPO on the same data**
   (below), then ``agent.update(batch)``. Record MDPO's KL(π_{k+1}‖π_k) (``losses/approx_kl``: analytic,
   mean over the batch), the change of the mean log-std, the KL weight and the actor's lr.
3. PPO on the same data: a fresh ``stable_baselines3.PPO("MlpPolicy")`` with SB3's defaults (10 epochs of
   minibatches of 64, clip 0.2, lr 3e-4, vf_coef 0.5, grad-norm clip 0.5, advantages normalised per
   minibatch, a fresh Adam) gets a copy of MDPO's current actor *and* critic (the same 64-64 tanh shapes),
   and its rollout buffer is filled with MDPO's batch: the (normalised) observations, the sampled actions,
   their log-probabilities under π_k, MDPO's values, GAE advantages and returns. SB3's own ``PPO.train()``
   then runs once, and the KL of its result to π_k is measured with the same analytic formula on the same
   batch. SB3's logged ``train/approx_kl`` (its sample estimate, averaged over the last epoch's minibatches)
   is recorded too. MDPO then continues from its own update, so the PPO probe changes nothing in MDPO's run
   (the global torch/numpy random states are restored after it).

   Why this rather than running SB3 PPO and reading its approx_kl: the two then see the same states, the
   same advantages and the same starting policy, so the ratio of the two KLs is the ratio of the two
   update rules and nothing else; a separate PPO run would also differ by its data and by its policy after
   k iterations of its own. SB3's code does the update, so no PPO is re-implemented here.

Every setting but ``tuned`` is a set of fields on top of the release's step with K from the run's budget
(preset ``release-run-budget``: the defaults when this sweep ran, before it chose new ones), so the names
mean what they meant then; ``tuned`` is that preset (since 2026-12-07, the defaults).

Summaries pool the iterations of all seeds: median and inter-quartile range (25 %–75 %) of the KL per
iteration, the median of the per-iteration ratio MDPO/PPO, and the mean log-std change over the 10
iterations (MDPO's own trajectory; for PPO the sum of its per-iteration changes on the same batches).

Usage::

    nice -n 19 .venv/bin/python benchmarks/mdpo_kl_sweep.py                       # HalfCheetah, 1 seed
    nice -n 19 .venv/bin/python benchmarks/mdpo_kl_sweep.py --envs Hopper-v5 --settings defaults lr1e-3_m10
    .venv/bin/python benchmarks/mdpo_kl_sweep.py --report-only

Results accumulate in ``benchmarks/results/mdpo_kl_sweep.json`` (one entry per env × setting × seed, each
written as soon as it finishes, so a long sweep can be completed over several invocations; ``--redo``
recomputes entries that exist) and ``benchmarks/results/mdpo_kl_sweep.md`` is rebuilt from all of them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

NAME = "mdpo_kl_sweep"
#: setting name → MDPOConfig fields over the preset release-run-budget ("tuned" is read from presets.json instead)
SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},  # the defaults until 2026-12-07 (lr 3e-4, m 10): also the grid's lr 3e-4 × m 10 cell
    "lr3e-4_m20": {"lr": 3e-4, "sgd_steps": 20},
    "lr1e-3_m10": {"lr": 1e-3, "sgd_steps": 10},
    "lr1e-3_m20": {"lr": 1e-3, "sgd_steps": 20},
    "lr3e-3_m10": {"lr": 3e-3, "sgd_steps": 10},
    "lr3e-3_m20": {"lr": 3e-3, "sgd_steps": 20},
    "kl0.01": {"kl_target": 0.01, "lr": 1e-3},  # the adaptive rule, started where the grid found KL ≈ 1e-2
    "kl0.02": {"kl_target": 0.02, "lr": 1e-3},
    # a capped KL weight, probed late in the run (--start-fraction 0.9: 1/t_k ≥ 10, so the weight is the cap)
    "lr1e-3_m20_cap2": {"lr": 1e-3, "sgd_steps": 20, "kl_weight_max": 2.0},
    "lr1e-3_m20_cap4": {"lr": 1e-3, "sgd_steps": 20, "kl_weight_max": 4.0},
    "lr3e-3_m20_cap2": {"lr": 3e-3, "sgd_steps": 20, "kl_weight_max": 2.0},
    "lr3e-3_m20_cap4": {"lr": 3e-3, "sgd_steps": 20, "kl_weight_max": 4.0},
    "kl0.01_cap2": {"kl_target": 0.01, "lr": 1e-3, "kl_weight_max": 2.0},
    "kl0.01_cap4": {"kl_target": 0.01, "lr": 1e-3, "kl_weight_max": 4.0},
}


def setting_fields(name: str, env_id: str) -> dict[str, Any]:
    """The fields a setting names (what the report shows): the tuned preset's, or those over the base step."""
    from nashmp.rl.presets import preset_params

    return preset_params("mdpo", "tuned", env_id) if name == "tuned" else dict(SETTINGS[name])


def setting_config(name: str, env_id: str, **fields: Any) -> Any:
    """The MDPOConfig of a setting: the release's step with K from the run's budget, then its fields."""
    from nashmp.rl.mdpo import MDPOConfig

    base = [] if name == "tuned" else ["release-run-budget"]
    return MDPOConfig.from_preset(base, **setting_fields(name, env_id), env_id=env_id, **fields)


def _sb3_state(agent: Any) -> dict[str, Any]:
    """MDPO's actor and critic under SB3 ActorCriticPolicy's parameter names (same 64-64 tanh layout)."""
    a, c = agent.actor.state_dict(), agent.critic.state_dict()
    return {
        "log_std": a["log_std"],
        **{f"mlp_extractor.policy_net.{i}.{p}": a[f"body.{i}.{p}"] for i in (0, 2) for p in ("weight", "bias")},
        **{f"action_net.{p}": a[f"body.4.{p}"] for p in ("weight", "bias")},
        **{f"mlp_extractor.value_net.{i}.{p}": c[f"{i}.{p}"] for i in (0, 2) for p in ("weight", "bias")},
        **{f"value_net.{p}": c[f"4.{p}"] for p in ("weight", "bias")},
    }


def ppo_probe(agent: Any, batch: dict[str, np.ndarray], raw_env: Any, seed: int) -> dict[str, float]:
    """One SB3 ``PPO.train()`` (its defaults) from MDPO's current actor and critic on MDPO's ``batch``."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.buffers import RolloutBuffer
    from stable_baselines3.common.logger import Logger

    from nashmp.rl.mdpo import policy_kl

    # SB3 seeds and draws its minibatches from the global (legacy) numpy and torch generators: saved and restored
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    try:
        model = PPO("MlpPolicy", raw_env, n_steps=agent.cfg.n_steps, seed=seed, device="cpu", verbose=0)
        model.policy.load_state_dict(_sb3_state(agent), strict=True)
        model.set_logger(Logger(folder=None, output_formats=[]))
        obs, actions = torch.as_tensor(batch["obs"]), torch.as_tensor(batch["actions"])
        with torch.no_grad():
            old = agent.actor.dist(obs)
            old_logp = agent.actor.log_prob(old, actions)
        n = len(obs)
        buf = RolloutBuffer(n, model.observation_space, model.action_space, device="cpu", n_envs=1)
        buf.observations[:, 0] = batch["obs"]
        buf.actions[:, 0] = batch["actions"].reshape(n, -1)
        buf.log_probs[:, 0] = old_logp.numpy()
        for key in ("values", "advantages", "returns"):
            getattr(buf, key)[:, 0] = batch[key]
        buf.pos, buf.full = n, True
        model.rollout_buffer = buf
        model.train()
        new_actor = copy.deepcopy(agent.actor)
        sd = model.policy.state_dict()
        new_actor.load_state_dict({"log_std": sd["log_std"],
                                   **{f"body.{i}.{p}": sd[f"mlp_extractor.policy_net.{i}.{p}"] for i in (0, 2)
                                      for p in ("weight", "bias")},
                                   **{f"body.4.{p}": sd[f"action_net.{p}"] for p in ("weight", "bias")}})  # fmt: skip
        with torch.no_grad():
            kl = float(policy_kl(new_actor.dist(obs), old).mean())
            dlog = float(new_actor.log_std.mean() - agent.actor.log_std.mean())
        logged = model.logger.name_to_value
        return {"kl": kl, "dlog_std": dlog, "sb3_approx_kl": float(logged["train/approx_kl"]),
                "clip_fraction": float(logged["train/clip_fraction"])}  # fmt: skip
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)  # noqa: NPY002


def run_one(env_id: str, setting: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym
    import torch

    from nashmp.rl.mdpo import MDPO

    torch.set_num_threads(1)
    fields = setting_fields(setting, env_id)
    cfg = setting_config(setting, env_id, seed=seed, total_steps=args.budget, n_steps=args.n_steps)
    agent = MDPO(cfg)
    # a late-run probe: the counters (hence t_k and the annealing) as at that fraction of the run, the policy fresh
    agent.progress.iteration = int(args.start_fraction * agent.num_iterations)
    raw_env = gym.make(env_id) if args.ppo else None
    rows = []
    start = time.perf_counter()
    for _ in range(args.iterations):
        before = float(agent.actor.log_std.detach().mean())  # type: ignore[union-attr]
        batch = agent.collect()
        ppo = ppo_probe(agent, batch, raw_env, seed * 1000 + agent.progress.iteration) if args.ppo else None
        stats = agent.update(batch)
        rows.append({
            "iteration": agent.progress.iteration,
            "kl": stats["losses/approx_kl"],
            "dlog_std": stats["train/log_std"] - before,
            "log_std": stats["train/log_std"],
            "kl_weight": stats["train/kl_weight"],
            "lr": float(agent.opt.param_groups[0]["lr"]),
            "episodic_return": float(np.mean(agent.returns[-10:])) if agent.returns else float("nan"),
            **({f"ppo_{k}": v for k, v in ppo.items()} if ppo else {}),
        })  # fmt: skip
        print(f"  {env_id} {setting} seed {seed} it {rows[-1]['iteration']}: KL {rows[-1]['kl']:.2e}"
              + (f" (PPO {ppo['kl']:.2e})" if ppo else ""), flush=True)  # fmt: skip
    return {"env": env_id, "setting": setting, "seed": seed, "fields": fields, "budget": args.budget,
            "start_fraction": args.start_fraction,
            "n_steps": args.n_steps, "wall_s": time.perf_counter() - start, "loadavg": list(os.getloadavg()),
            "rows": rows}  # fmt: skip


def _q(values: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(np.asarray(values, float), [25, 50, 75])
    return float(q50), float(q25), float(q75)


def summarise(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the iterations of the seeds of one env × setting (see the module docstring)."""
    rows = [r for e in entries for r in e["rows"]]
    out: dict[str, Any] = {"seeds": sorted(e["seed"] for e in entries), "iterations": len(rows)}
    out["kl"] = _q([r["kl"] for r in rows])
    out["dlog_std_total"] = float(np.mean([sum(r["dlog_std"] for r in e["rows"]) for e in entries]))
    out["lr_first_last"] = (rows[0]["lr"], float(np.mean([e["rows"][-1]["lr"] for e in entries])))
    out["kl_weight_max"] = max(r["kl_weight"] for r in rows)
    if "ppo_kl" in rows[0]:
        out["ppo_kl"] = _q([r["ppo_kl"] for r in rows])
        out["ppo_sb3_approx_kl"] = _q([r["ppo_sb3_approx_kl"] for r in rows])
        out["ratio"] = _q([r["kl"] / r["ppo_kl"] for r in rows])
        out["ppo_dlog_std_total"] = float(np.mean([sum(r["ppo_dlog_std"] for r in e["rows"]) for e in entries]))
    return out


def report(data: dict[str, Any]) -> str:
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for entry in data["entries"].values():
        groups.setdefault((entry["env"], entry.get("start_fraction", 0.0), entry["setting"]), []).append(entry)
    order = [*SETTINGS, "tuned"]
    header = ["env", "run fraction", "setting", "fields", "seeds", "1/t_k", "MDPO KL/iter median [IQR]",
              "PPO KL/iter, same data", "MDPO/PPO", "Δ log-std: MDPO", "PPO", "actor lr first → last"]  # fmt: skip
    table = []
    for (env, frac, setting), entries in sorted(groups.items(), key=lambda kv: (*kv[0][:2], order.index(kv[0][2]))):
        s = summarise(entries)
        weights = [r["kl_weight"] for e in entries for r in e["rows"]]
        kl = f"{s['kl'][0]:.2e} [{s['kl'][1]:.1e}, {s['kl'][2]:.1e}]"
        ppo = f"{s['ppo_kl'][0]:.2e} [{s['ppo_kl'][1]:.1e}, {s['ppo_kl'][2]:.1e}]" if "ppo_kl" in s else "—"
        ratio = f"{s['ratio'][0]:.2g}" if "ratio" in s else "—"
        fields = ", ".join(f"{k}={v}" for k, v in entries[0]["fields"].items()) or "(none)"
        table.append([env, f"{frac:g}", setting, fields, len(s["seeds"]), f"{min(weights):.3g}–{max(weights):.3g}",
                      kl, ppo, ratio, f"{s['dlog_std_total']:+.3f}",
                      f"{s.get('ppo_dlog_std_total', float('nan')):+.3f}",
                      f"{s['lr_first_last'][0]:.1e} → {s['lr_first_last'][1]:.1e}"])  # fmt: skip
    loads = sorted({tuple(round(x, 2) for x in e["loadavg"]) for e in data["entries"].values()})
    return (
        "# On-policy MDPO: KL per iteration by setting, next to SB3 PPO on the same data\n\n"
        "Written by `benchmarks/mdpo_kl_sweep.py` (protocol in its docstring). A setting's fields apply over the "
        "preset `release-run-budget` (the defaults until 2026-12-07); `tuned` is the preset of that name (the defaults "
        "since). "
        "Each row: "
        "`--iterations` iterations of 2048 steps of a 1M-step run's config, from its start (run fraction 0) "
        "or with the iteration counter started at that fraction of the run (t_k and annealing as late in the "
        "run; the policy fresh); KL(π_{k+1}‖π_k) analytic, mean over the batch; median [25 %, 75 %] over the "
        "iterations of all seeds; MDPO/PPO is the median of the per-iteration ratio; Δ log-std is the mean "
        "log-std change summed over the iterations (PPO: its per-iteration changes on MDPO's batches, summed).\n\n"
        + _common.md_table(header, table, align=["l", "r", "l", "l", *["r"] * 8])
        + f"\n\nCommands: {'; '.join(f'`{c}`' for c in data.get('commands', []))}.\n\n"
        + f"{data.get('machine_line', '')}\nLoad averages (1/5/15 min) when entries finished: "
        + ", ".join(str(list(x)) for x in loads[:3])
        + (f" … {list(loads[-1])}" if len(loads) > 3 else "")
        + f" (min {min(x[0] for x in loads):.2f}, max {max(x[0] for x in loads):.2f} over 1 min).\n"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=["HalfCheetah-v5"])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=[*SETTINGS, "tuned"])
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0 … N−1")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--n-steps", type=int, default=2048)
    ap.add_argument("--budget", type=int, default=1_000_000, help="total_steps of the config (sets t_k, annealing)")
    ap.add_argument(
        "--start-fraction",
        type=float,
        default=0.0,
        help="start the iteration counter at this fraction of the run (t_k as late in it; fresh policy)",
    )
    ap.add_argument("--no-ppo", dest="ppo", action="store_false", help="skip the SB3 PPO probe")
    ap.add_argument("--redo", action="store_true", help="recompute entries already in the JSON")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the result files (a smoke test: --tag smoke)")
    args = ap.parse_args(argv)
    name = NAME + (f"_{args.tag}" if args.tag else "")
    if args.iterations < 1 or args.seeds < 1 or not 0 <= args.start_fraction < 1:
        ap.error("--iterations and --seeds must be ≥ 1, --start-fraction in [0, 1)")
    _common.reexec_with_blas_threads(1)
    path = _common.RESULTS / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"entries": {}, "commands": []}
    if not args.report_only:
        command = _common.command_line()
        data["commands"] = [*[c for c in data.get("commands", []) if c != command], command]
        for env_id in args.envs:
            for setting in args.settings:
                for seed in range(args.seeds):
                    late = f"/start{args.start_fraction:g}" if args.start_fraction else ""
                    key = f"{env_id}/{setting}{late}/seed{seed}"
                    if key in data["entries"] and not args.redo:
                        continue
                    data["entries"][key] = run_one(env_id, setting, seed, args)
                    data["machine"], data["machine_line"] = _common.machine(), _common.machine_line()
                    _common.write_json(f"{name}.json", data)  # each entry lands as soon as it finishes
                    _common.write_text(f"{name}.md", report(data))
    text = report(data)
    _common.write_text(f"{name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
