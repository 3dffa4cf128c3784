"""GRPO rollouts on our checkpoint: the in-repo engine (TRL rollout_func) vs TRL's own generate.

Both candidates train the same policy on the same prompts with the same GRPOConfig; rounds of a
few steps alternate between them (the order flips each round) so machine noise hits both alike.
Per candidate: rollout tokens/s (completion tokens / wall time of TRL's `_generate`, which is
where either backend runs) and the median TRL `step_time` (generation + scoring + backward).

    python benchmarks/grpo_rollout.py [--policy CKPT | --config recipes/model/tiny.yaml]
        [--rounds 3] [--steps 2] [--prompts 8] [--generations 8] [--max-new 128] [--use-mtp]

Prints one JSON line last: per candidate tokens_per_s and step_s, and engine/trl ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import emit  # noqa: E402

from distill.grpo import DataSpec, GRPORecipe, PolicySpec  # noqa: E402
from distill.grpo.dynamic import DynamicSamplingTrainer  # noqa: E402
from distill.grpo.metrics import read_rows  # noqa: E402
from distill.grpo.run import run_grpo  # noqa: E402
from distill.rewards import RewardSpec  # noqa: E402

TIMES: dict[str, list[tuple[float, int]]] = {}


def _timed_generate(original):
    def wrapper(self, prompts):
        start = time.perf_counter()
        out = original(self, prompts)
        if self.model.training:
            TIMES.setdefault(self._bench_name, []).append(
                (time.perf_counter() - start, sum(len(ids) for ids in out[1])))
        return out
    return wrapper


def make_policy(args, tmp: Path) -> Path:
    if args.policy:
        return Path(args.policy)
    from distill.cli import main

    out = tmp / "policy"
    if main(["model", "init", "--config", args.config, "--out", str(out)]) != 0:
        raise SystemExit("model init failed")
    return out


def one_round(name: str, policy: Path, args, out: Path) -> list[float]:
    DynamicSamplingTrainer._bench_name = name
    cfg = GRPORecipe(
        policy=PolicySpec(str(policy)), output_dir=str(out), rollout=name, plots=False,
        rollout_mtp=args.use_mtp and name == "engine",
        data=DataSpec(f"synthetic:arithmetic?n={4 * args.prompts}&split=train&seed=0&difficulty=1"),
        rewards=[RewardSpec("accuracy"), RewardSpec("kimi", 0.1)],
        trainer={"per_device_train_batch_size": args.prompts * args.generations,
                 "num_generations": args.generations, "max_completion_length": args.max_new,
                 "max_steps": args.steps, "save_strategy": "no", "seed": 0, "temperature": 1.0})
    run_grpo(cfg)
    return [r["step_time"] for r in read_rows(out / "metrics.jsonl") if "step_time" in r]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", help="our checkpoint directory (default: init one from --config)")
    p.add_argument("--config", default="recipes/model/tiny.yaml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--max-new", type=int, default=128)
    p.add_argument("--use-mtp", action="store_true")
    args = p.parse_args()
    DynamicSamplingTrainer._generate = _timed_generate(DynamicSamplingTrainer._generate)
    steps: dict[str, list[float]] = {"engine": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = make_policy(args, tmp)
        for r in range(args.rounds):
            for name in (("engine", "trl") if r % 2 == 0 else ("trl", "engine")):
                steps[name] += one_round(name, policy, args, tmp / f"{name}-{r}")
    result = {"benchmark": "grpo_rollout", "policy": args.policy or args.config, "rounds": args.rounds,
              "steps_per_round": args.steps, "prompts": args.prompts, "generations": args.generations,
              "max_new_tokens": args.max_new, "use_mtp": args.use_mtp}
    for name in steps:
        secs, toks = sum(t for t, _ in TIMES[name]), sum(n for _, n in TIMES[name])
        result[name] = {"tokens_per_s": toks / secs, "step_s": statistics.median(steps[name]),
                        "rollout_s": secs / len(TIMES[name])}
    result["engine_over_trl_tokens_per_s"] = result["engine"]["tokens_per_s"] / result["trl"]["tokens_per_s"]
    result["trl_over_engine_step_s"] = result["trl"]["step_s"] / result["engine"]["step_s"]
    emit(result)


if __name__ == "__main__":
    main()
