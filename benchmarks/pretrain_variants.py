"""Pretraining MFU of the real `pretrain.train` loop per compile variant (eager, per-layer,
whole-model with MTP), one after another in one process, with the profiler's top kernels of
one steady step per variant.

    python benchmarks/pretrain_variants.py --config recipes/pretrain/h200_moe_0p7b.yaml \
        --variants eager,layer,model --steps 25 [--final-steps 200] [--set KEY=VALUE ...]

Each variant runs `--steps` steps into runs/issue15-<variant> (no checkpoint: it stops one step
before the end). With --final-steps the last variant instead trains that many steps and writes
its checkpoint (<out>/final, for the MTP acceptance check). Prints one JSON line per variant
and a summary line last (MFU per variant and the ratio to eager).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402
from h200_model import top_kernels  # noqa: E402

import pretrain.train as train_loop  # noqa: E402
from pretrain.config import PretrainConfig  # noqa: E402
from recipes.config import load_config  # noqa: E402

COMPILE = {"eager": False, "layer": "layer", "model": "model"}


def profiled(step_to_profile: int, sink: dict):
    """Wrap pretrain.train.train_step so that one step runs under the torch profiler."""
    from torch.profiler import ProfilerActivity, profile

    original = train_loop.train_step

    def step(model, core, optimizer, batches, cfg, rt, index):
        if index != step_to_profile:
            return original(model, core, optimizer, batches, cfg, rt, index)
        cuda = rt.device.type == "cuda"
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            row = original(model, core, optimizer, batches, cfg, rt, index)
            if cuda:
                torch.cuda.synchronize()
        attr = "self_device_time_total" if cuda else "self_cpu_time_total"
        sink["times"] = {e.key: getattr(e, attr, 0) for e in prof.key_averages()}
        return row

    return original, step


def run_variant(args, name, steps, save):
    out = Path(f"{args.out_prefix}-{name}")
    shutil.rmtree(out, ignore_errors=True)
    overrides = list(args.overrides) + [f"train.compile={json.dumps(COMPILE[name])}",
                                        f"out_dir={out}", "train.eval_every=0",
                                        f"train.max_steps={steps if save else steps + 1}",
                                        f"train.save_every={steps if save else 10**9}"]
    if args.backend:
        overrides.append(f"train.compile_backend={args.backend}")
    cfg = load_config(PretrainConfig, args.config, overrides, section="pretrain")
    sink = {}
    original, wrapped = profiled(steps - 2, sink)
    train_loop.train_step = wrapped
    try:
        train_loop.run(cfg, where=args.config, stop_after=None if save else steps)
    finally:
        train_loop.train_step = original
        breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step" in r and "tokens_per_s" in r]
    steady = [r for r in rows if r["step"] > args.skip and r["step"] != steps - 1] or rows[-1:]
    mfu = [r["mfu"] for r in steady if r.get("mfu") is not None]
    return {"variant": name, "steps": len(rows), "graph_breaks": breaks,
            "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
            "mfu_median": statistics.median(mfu) if mfu else None,
            "first_step_s": rows[0]["step_s"], "loss_first": rows[0]["loss"],
            "loss_last": rows[-1]["loss"], "mtp_loss_last": rows[-1]["mtp_loss"],
            "peak_mem_gib": max((r.get("peak_mem_gib") or 0) for r in rows),
            "top_kernels": top_kernels(sink.get("times", {}), n=args.top)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="recipes/pretrain/h200_moe_0p7b.yaml")
    parser.add_argument("--variants", default="eager,layer,model")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--skip", type=int, default=5, help="steps left out of the medians")
    parser.add_argument("--final-steps", type=int, default=0,
                        help="the last variant trains this many steps and saves a checkpoint")
    parser.add_argument("--out-prefix", default="runs/issue15")
    parser.add_argument("--backend", default=None, help="torch.compile backend (default inductor)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(COMPILE)
    if unknown:
        raise ValueError(f"--variants: unknown {sorted(unknown)}; choose from {sorted(COMPILE)}")
    summary = {"benchmark": "pretrain_variants", "config": args.config, "steps": args.steps}
    for i, name in enumerate(variants):
        last = i == len(variants) - 1 and args.final_steps > 0
        try:
            row = run_variant(args, name, args.final_steps if last else args.steps, save=last)
        except Exception as exc:  # keep measuring the others; say what failed
            row = {"variant": name, "failed": f"{type(exc).__name__}: {str(exc)[:300]}"}
        print(json.dumps(row), flush=True)
        summary[name] = {k: row.get(k) for k in ("mfu_median", "tokens_per_s_median", "failed")}
    base = summary.get("eager", {}).get("tokens_per_s_median")
    for name in variants:
        if base and summary[name].get("tokens_per_s_median"):
            summary[name]["speedup_vs_eager"] = summary[name]["tokens_per_s_median"] / base
    if args.final_steps:
        summary["checkpoint"] = f"{args.out_prefix}-{variants[-1]}/final"
    emit(summary)


if __name__ == "__main__":
    main()
