"""SFT quality on the synthetic tasks (issue 12): held-out pass@1 of a student before SFT, after
SFT on verifier-filtered R1-style traces, and after SFT on the unfiltered traces (planted errors
kept), all with k samples per problem and the standard error over problems.

The "teacher samples" are `distillery data synth --style r1 --error-rate E` traces (E of them
carry a planted wrong step and a wrong final answer); the filter keeps the traces that
`verifiers.verify("math", ...)` accepts against the gold answer, which is what `distillery filter`
does with real teacher samples. Quality, not timing: run it anywhere.

    python benchmarks/sft_quality.py --out runs/sft-quality [--steps 400] [--k 4] [--n-test 50]

Prints one JSON line last: pass@1 (mean, se) per model and the gains in points.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml


def sh(*args: str) -> None:
    print("+ distillery", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "distill.cli", *args], check=True)


def filtered(rows_path: Path, out_path: Path) -> tuple[int, int]:
    from verifiers import verify

    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    kept = [r for r in rows
            if verify("math", r["messages"][-1]["content"], r["reference"]).correct]
    out_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return len(kept), len(rows)


def sft_recipe(out: Path, name: str, data: Path, base: Path, args) -> Path:
    recipe = {"sft": {
        "model": str(base), "data": [{"path": str(data)}], "out_dir": str(out / name),
        "seed": 0, "style": {"format": "r1"},
        # Length control: the traces' reasoning is cut to fit the budget (the steps come first,
        # the re-checking chatter last), which keeps the CPU run to minutes.
        "length": {"max_tokens": args.max_tokens, "over_budget": "cap"},
        "trl": {"max_steps": args.steps, "per_device_train_batch_size": args.batch,
                "learning_rate": args.lr, "lr_scheduler_type": "cosine", "warmup_steps": 20,
                "gradient_checkpointing": False, "max_length": 512, "save_strategy": "no",
                "logging_steps": 20}}}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def eval_recipe(out: Path, models: dict[str, Path], args) -> Path:
    bench = f"synthetic:{args.task}?n={args.n_test}&split=test&difficulty={args.difficulty}"
    recipe = {"eval": {
        "models": [{"name": n, "path": str(p), "backend": "engine", "batch_size": 32}
                   for n, p in models.items()],
        "benchmarks": [{"name": bench, "k": args.k}],
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": args.max_tokens,
                     "seed": 0},
        "chat_template": True, "enable_thinking": False, "verify_workers": 1,
        "out_dir": str(out / "eval")}}
    path = out / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def base_and_teacher_samples(out: Path, args, error_rate: float) -> tuple[Path, Path]:
    """A random tiny student base and R1-style synthetic "teacher samples" with planted errors,
    each made once under OUT and reused on a rerun."""
    base = out / "base"
    if not (base / "config.json").is_file():
        sh("model", "init", "--config", "recipes/model/tiny.yaml", "--out", str(base))
    raw = out / "teacher_samples.jsonl"
    if not raw.is_file():
        sh("data", "synth", "--task", args.task, "--n", str(args.n_train), "--split", "train",
           "--difficulty", str(args.difficulty), "--style", "r1",
           "--error-rate", str(error_rate), "--out", str(raw))
    return base, raw


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/sft-quality")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--error-rate", type=float, default=0.4)
    p.add_argument("--n-test", type=int, default=50)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-tokens", type=int, default=160)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, raw = base_and_teacher_samples(out, args, args.error_rate)
    kept, total = filtered(raw, out / "filtered.jsonl")
    models = {"base": base}
    for name, data in (("sft_filtered", out / "filtered.jsonl"), ("sft_unfiltered", raw)):
        if not (out / name / "final" / "config.json").is_file():
            sh("sft", "--config", str(sft_recipe(out, name, data, base, args)))
        models[name] = out / name / "final"
    sh("eval", "--config", str(eval_recipe(out, models, args)))
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    score = {r["model"]: r["pass@1"] for r in results}
    line = {"task": args.task, "difficulty": args.difficulty, "k": args.k,
            "n_test": args.n_test, "steps": args.steps, "filtered_kept": kept,
            "teacher_samples": total, "pass@1": score,
            "gain_filtered_pts": 100 * (score["sft_filtered"]["mean"] - score["base"]["mean"]),
            "gain_unfiltered_pts": 100 * (score["sft_unfiltered"]["mean"] - score["base"]["mean"])}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
