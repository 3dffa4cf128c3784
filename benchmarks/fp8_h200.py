"""One prepared GPU check for FP8 (<= 3 minutes on an H200):

(a) the scaled_mm backend vs emulated on the same inputs (three GEMMs), relative errors;
(b) FP8 linear forward+backward vs the bf16 linear at hidden 1024 (the 0.74B) / 4096 / 8192;
(c) the 0.74B MoE (no MTP): FP8 vs bf16 training tokens/s and loss after N steps, same data.

    python benchmarks/fp8_h200.py [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from model import ModelConfig, Transformer, fp8  # noqa: E402


def cuda_time(fn, repeat=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def backend_agreement():
    out_dtype = fp8.scaled_mm_out_dtype(0)
    result = {"scaled_mm_out_dtype": str(out_dtype)}
    if out_dtype is None:
        return result
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4096, 4096, device="cuda", generator=gen)
    w = torch.randn(4096, 4096, device="cuda", generator=gen) * 0.02
    dy = torch.randn(4096, 4096, device="cuda", generator=gen)
    real, emu = fp8._real_gemms(False, out_dtype), fp8._emulated_gemms(False)
    for name, fr, fe, args in (("fprop", real[0], emu[0], (x, w)), ("dgrad", real[1], emu[1], (dy, w)),
                               ("wgrad", real[2], emu[2], (dy, x))):
        a, b = fr(*args), fe(*args)
        result[f"{name}_rel_err"] = ((a - b).norm() / b.norm()).item()
    bf16 = (x.bfloat16() @ w.bfloat16().t()).float()
    ref = x @ w.t()
    result["bf16_rounding_rel_err"] = ((bf16 - ref).norm() / ref.norm()).item()
    return result


def linear_speed(hidden, tokens):
    x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(hidden, hidden, device="cuda") * 0.02).requires_grad_()
    dy = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)

    def bf16_step():
        y = torch.nn.functional.linear(x, w.bfloat16())
        y.backward(dy)

    def fp8_step():
        y = fp8.fp8_linear(x, w, "scaled_mm")
        y.backward(dy)

    t_bf16, t_fp8 = cuda_time(bf16_step), cuda_time(fp8_step)
    flops = 6 * tokens * hidden * hidden
    return {"bf16_ms": t_bf16 * 1e3, "fp8_ms": t_fp8 * 1e3, "speedup": t_bf16 / t_fp8,
            "bf16_tflops": flops / t_bf16 / 1e12, "fp8_tflops": flops / t_fp8 / 1e12}


def train(config, steps, batch, seq):
    torch.manual_seed(0)
    model = Transformer(config).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), fused=True)
    gen = torch.Generator(device="cuda").manual_seed(1)
    data = torch.randint(0, 1000, (steps, batch, seq), device="cuda", generator=gen)
    losses, start = [], None
    for i in range(steps):
        if i == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=data[i], labels=data[i])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.lm_loss.detach())
    torch.cuda.synchronize()
    tps = batch * seq * (steps - 3) / (time.perf_counter() - start)
    losses = [x.item() for x in losses]
    del model, opt
    torch.cuda.empty_cache()
    return {"tokens_per_s": tps, "loss_last10": sum(losses[-10:]) / 10, "loss_first": losses[0]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"benchmark": "fp8_h200"}

    def record(name, fn):
        try:
            t0 = time.perf_counter()
            result[name] = fn()
            print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {result[name]}", flush=True)
        except Exception as exc:  # keep measuring the rest
            result[name] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            print(f"{name} FAILED: {result[name]}", flush=True)

    record("backend_agreement", backend_agreement)
    for hidden, tokens in ((1024, 16384), (4096, 8192), (8192, 16384)):  # 1024: the 0.74B's width
        record(f"linear_h{hidden}_t{tokens}", lambda: linear_speed(hidden, tokens))
    values = yaml.safe_load(open("recipes/model/moe_0p7b.yaml"))["model"]
    values["num_nextn_predict_layers"] = 0
    record("train_bf16", lambda: train(ModelConfig(**values), args.steps, 4, 2048))
    record("train_fp8", lambda: train(ModelConfig(**values, fp8=True), args.steps, 4, 2048))
    if isinstance(result.get("train_bf16"), dict) and isinstance(result.get("train_fp8"), dict):
        b, f = result["train_bf16"], result["train_fp8"]
        result["train_speedup"] = f["tokens_per_s"] / b["tokens_per_s"]
        result["loss_rel_gap"] = (f["loss_last10"] - b["loss_last10"]) / b["loss_last10"]
    if args.out:
        json.dump(result, open(args.out, "w"), indent=2)
    emit(result)


if __name__ == "__main__":
    main()
