"""GRPO quality on the synthetic tasks (issue 13), from an SFT'd student, CPU, tiny model.

1. student: our tiny checkpoint SFT'd on verifier-filtered R1-style traces (benchmarks/
   sft_quality.py's recipe, `distillery sft`);
2. GRPO from the student with `distillery grpo`: accuracy only; accuracy + Kimi length reward;
   accuracy with DAPO dynamic sampling; LCPO-Exact on "Think for N tokens." prompts;
3. held-out pass@1 (k samples, standard error over problems) and mean completion tokens with
   `distillery eval` (engine backend, T=0.6); LCPO: mean relative error |len - N| / N of the
   produced completion length over three budgets.
Quality, not timing (wall times are printed only to compare dynamic sampling with its baseline
in the same run). Every stage is skipped when its output exists, so a killed run resumes.

    python benchmarks/grpo_quality.py --out runs/grpo-quality [--grpo-steps 40] [--k 4]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sft_quality import base_and_teacher_samples, filtered, sft_recipe, sh  # noqa: E402

VARIANTS = {
    "acc": {"rewards": [{"name": "accuracy"}]},
    "acc_kimi": {"rewards": [{"name": "accuracy"}, {"name": "kimi", "weight": 1.0}]},
    "acc_dyn": {"rewards": [{"name": "accuracy"}], "dynamic_sampling": {"enabled": True, "max_rounds": 2}},
    "lcpo": {"rewards": [{"name": "lcpo_exact"}]},
}


def student(out: Path, args) -> Path:
    base, raw = base_and_teacher_samples(out, args, error_rate=0.4)
    if not (out / "filtered.jsonl").is_file():
        filtered(raw, out / "filtered.jsonl")
    if not (out / "sft" / "final" / "config.json").is_file():
        sh("sft", "--config", str(sft_recipe(out, "sft", out / "filtered.jsonl", base, args)))
    return out / "sft" / "final"


def grpo(out: Path, name: str, policy: Path, args) -> tuple[Path, float]:
    run = out / f"grpo_{name}"
    if (run / "final" / "config.json").is_file():
        return run / "final", json.loads((run / "wall.json").read_text())["seconds"]
    variant = VARIANTS[name]
    data = {"path": f"synthetic:{args.task}?n={args.n_prompts}&split=train&seed=1&difficulty={args.difficulty}"}
    if name == "lcpo":
        data["length_budget"] = {"mode": "exact", "min_tokens": args.budgets[0], "max_tokens": args.budgets[-1]}
        variant = {"rewards": [{"name": "lcpo_exact", "args": {"alpha": args.lcpo_alpha}}]}
    recipe = {"grpo": {"policy": {"path": str(policy)}, "data": data, "output_dir": str(run), "plots": True,
                       **variant,
                       "trainer": {"per_device_train_batch_size": args.prompts * args.generations,
                                   "num_generations": args.generations, "max_completion_length": args.max_tokens,
                                   "max_steps": args.grpo_steps, "learning_rate": args.grpo_lr,
                                   "temperature": 1.0, "beta": 0.0, "save_steps": 1000, "seed": 0,
                                   "lr_scheduler_type": "constant", "gradient_checkpointing": False}}}
    path = out / f"grpo_{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    start = time.time()
    sh("grpo", "--config", str(path))
    seconds = time.time() - start
    (run / "wall.json").write_text(json.dumps({"seconds": seconds}))
    return run / "final", seconds


def evaluate(out: Path, models: dict[str, Path], args) -> dict:
    bench = f"synthetic:{args.task}?n={args.n_test}&split=test&difficulty={args.difficulty}"
    recipe = {"eval": {
        "models": [{"name": n, "path": str(p), "backend": "engine", "batch_size": 32} for n, p in models.items()],
        "benchmarks": [{"name": bench, "k": args.k}],
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": args.max_tokens, "seed": 0},
        "chat_template": True, "enable_thinking": False, "verify_workers": 1, "out_dir": str(out / "eval")}}
    path = out / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    sh("eval", "--config", str(path))
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    return {r["model"]: {"pass@1": r["pass@1"], "mean_tokens": r["completion_tokens"].get("mean")}
            for r in results}


def lcpo_error(model: Path, args) -> dict:
    """Mean |len - N| / N of completions asked for N tokens, per budget, on test problems."""
    from evals.benchmarks import format_prompt, load_benchmark
    from evals.config import ModelSpec, SamplingParams
    from evals.generation import make_generator

    bench = load_benchmark(f"synthetic:{args.task}?n={args.n_test}&split=test&difficulty={args.difficulty}")
    gen = make_generator(ModelSpec("lcpo", str(model), "engine", batch_size=32), enable_thinking=False)
    sampling = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=2 * args.budgets[-1], seed=0)
    out = {}
    for n in args.budgets:
        prompts = [[{"role": "user", "content": f"{format_prompt(bench, p)} Think for {n} tokens."}]
                   for p in bench.problems]
        samples = [s for group in gen.generate(prompts, args.k, sampling) for s in group]
        lengths = [s.completion_tokens for s in samples]
        out[n] = {"mean_tokens": statistics.mean(lengths),
                  "rel_error": statistics.mean(abs(x - n) / n for x in lengths)}
    out["mean_rel_error"] = statistics.mean(out[n]["rel_error"] for n in args.budgets)
    return out


def reward_curve(run: Path) -> list:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [round(r["rewards/accuracy/mean"], 3) for r in rows if "rewards/accuracy/mean" in r]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/grpo-quality")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--steps", type=int, default=400, help="SFT steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3, help="SFT learning rate")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--n-prompts", type=int, default=512)
    p.add_argument("--prompts", type=int, default=4, help="prompt groups per GRPO step")
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--grpo-steps", type=int, default=40)
    p.add_argument("--grpo-lr", type=float, default=2e-4)
    p.add_argument("--lcpo-alpha", type=float, default=0.003)
    p.add_argument("--budgets", type=int, nargs=3, default=[40, 80, 120])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--n-test", type=int, default=50)
    p.add_argument("--k", type=int, default=4)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sft = student(out, args)
    runs = {name: grpo(out, name, sft, args) for name in args.variants}
    models = {"sft": sft, **{f"grpo_{n}": path for n, (path, _) in runs.items() if n != "lcpo"}}
    scores = evaluate(out, models, args)
    line = {"task": args.task, "difficulty": args.difficulty, "k": args.k, "n_test": args.n_test,
            "grpo_steps": args.grpo_steps, "results": scores,
            "wall_s": {n: round(s, 1) for n, (_, s) in runs.items()}}
    if "acc_kimi" in runs:
        line["kimi_length_cut"] = 1 - scores["grpo_acc_kimi"]["mean_tokens"] / scores["grpo_acc"]["mean_tokens"] \
            if "acc" in runs else None
        line["kimi_length_cut_vs_sft"] = 1 - scores["grpo_acc_kimi"]["mean_tokens"] / scores["sft"]["mean_tokens"]
    if "acc_dyn" in runs and "acc" in runs:
        line["reward_curve"] = {n: reward_curve(out / f"grpo_{n}") for n in ("acc", "acc_dyn")}
    if "lcpo" in runs:
        line["lcpo"] = {"sft": lcpo_error(sft, args), "grpo_lcpo": lcpo_error(runs["lcpo"][0], args)}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
