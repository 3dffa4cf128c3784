"""One prepared GPU check for the model issue (<= 5 minutes on an H200):

1. training step (fwd + bwd + AdamW) tokens/s, MFU and peak memory in bf16 for the ~0.7B MoE of
   recipes/model/moe_0p7b.yaml, ours vs transformers' DeepseekV3ForCausalLM (same config,
   batch, data), interleaved in one run;
2. the share of CUDA time spent in grouped GEMMs (torch profiler, one step);
3. decode tokens/s of our engine at batch 1 / 16 / 64 (and transformers' generate at 1 / 16).

    python benchmarks/h200_model.py [--steps 10] [--out results.json]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, hf_config, sync  # noqa: E402

from model import ModelConfig, Transformer  # noqa: E402
from model.accounting import account  # noqa: E402
from pretrain.metrics import device_peak_flops  # noqa: E402

def load_config(path: str) -> ModelConfig:
    return ModelConfig(**yaml.safe_load(open(path))["model"])


def train_rate(model, batch, seq, steps, device, warmup=3):
    cuda = device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=cuda)
    gen = torch.Generator(device=device).manual_seed(0)
    data = torch.randint(0, model.config.vocab_size, (steps + warmup, batch, seq), device=device,
                         generator=gen)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []
    for i in range(steps + warmup):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            out = model(input_ids=data[i], labels=data[i])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
    sync(device)
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": batch * seq * steps / elapsed,
            "step_ms": elapsed / steps * 1e3,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "loss_first": losses[0].item(), "loss_last": losses[-1].item()}


def kernel_times(model, batch, seq, device) -> dict[str, float]:
    """Self device time (CPU time on CPU) per kernel name in one profiled fwd+bwd."""
    from torch.profiler import ProfilerActivity, profile
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    activity = ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        with torch.autocast(device, dtype=torch.bfloat16):
            model(input_ids=ids, labels=ids).loss.backward()
        sync(device)
    model.zero_grad(set_to_none=True)
    attr = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    return {evt.key: getattr(evt, attr, 0) for evt in prof.key_averages()}


def grouped_share(times: dict[str, float], device) -> float:
    """Share of the time in the routed experts' GEMMs (grouped_mm on CUDA, bmm on CPU)."""
    kernels = ("grouped", "gemm_grouped", "cutlass") if device == "cuda" else ("aten::_grouped_mm", "aten::bmm")
    grouped = sum(t for key, t in times.items() if any(k in key for k in kernels))
    return grouped / max(sum(times.values()), 1e-9)


def top_kernels(times: dict[str, float], n=12):
    """The n kernels with the most self time: where the time goes."""
    total = max(sum(times.values()), 1e-9)
    ranked = sorted(times.items(), key=lambda kv: kv[1], reverse=True)
    return [(key[:80], round(t / total, 3)) for key, t in ranked[:n]]


def kernel_agreement(config, device, tokens=4096):
    """The grouped_mm and padded-bmm expert kernels on the same bf16 inputs: max relative error
    of output and input gradient (both in bf16; differences are accumulation order only)."""
    from model.moe import MoE
    layer = MoE(config).to(device, torch.bfloat16)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(1, tokens, config.hidden_size, device=device, dtype=torch.bfloat16)
    outs = {}
    for kernel in ("grouped_mm", "bmm"):
        layer.experts.kernel = kernel
        xi = x.detach().requires_grad_()
        y = layer(xi)
        y.float().square().mean().backward()
        outs[kernel] = (y.detach().float(), xi.grad.float())
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()  # noqa: E731
    return {"out_rel_err": rel(*[outs[k][0] for k in outs]),
            "grad_rel_err": rel(*[outs[k][1] for k in outs])}


def decode_rates(model, batches, prompt_len=128, new_tokens=128):
    """Greedy decode tokens/s of our engine (random weights: EOS is disabled)."""
    from model.engine import Engine
    engine = Engine(model)
    rates = {}
    for b in batches:
        prompts = torch.randint(0, model.config.vocab_size, (b, prompt_len)).tolist()
        engine.generate(prompts, max_new_tokens=8, temperature=0.0)  # warmup
        res = engine.generate(prompts, max_new_tokens=new_tokens, temperature=0.0,
                              eos_token_ids=())
        rates[b] = res.tokens_per_s
    return rates


def hf_decode_rates(model, batches, device, prompt_len=128, new_tokens=64):
    rates = {}
    for b in batches:
        ids = torch.randint(0, model.config.vocab_size, (b, prompt_len), device=device)
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)
        model.generate(ids, max_new_tokens=4, **kw)
        sync(device)
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        sync(device)
        rates[b] = b * (out.shape[1] - prompt_len) / (time.perf_counter() - start)
    return rates


def free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="recipes/model/moe_0p7b.yaml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--decode-batches", default="1,16,64")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd model")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_config(args.config)
    acc = account(config, args.seq)
    result = {"benchmark": "h200_model", "config": args.config, "batch": args.batch, "seq": args.seq,
              "total_params": acc.total_params, "active_params": acc.active_params,
              "flops_per_token": acc.flops_per_token}
    device = args.device
    peak = device_peak_flops(torch.device(device)) or float("nan")

    def record(name, fn):
        try:
            t0 = time.perf_counter()
            value = fn()
            print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {value}", flush=True)
            result[name] = value
        except Exception as exc:  # keep measuring the rest; report what failed
            print(f"{name} FAILED: {type(exc).__name__}: {exc}", flush=True)
            result[name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"

    batches = [int(b) for b in args.decode_batches.split(",")]
    record("moe_kernel_agreement", lambda: kernel_agreement(config, device))
    main_only = copy.deepcopy(config)
    main_only.num_nextn_predict_layers = 0
    flops = {"mtp": acc.flops_per_token, "main": account(main_only, args.seq).flops_per_token}

    def train_variant(name, make, mtp=False, bf16_weights=False, compile=False):
        """fp32 master weights + bf16 autocast, or bf16 weights throughout (`bf16_weights`)."""
        model = make().to(device)
        if bf16_weights:
            model.to(torch.bfloat16)
        run = torch.compile(model) if compile else model
        record(name, lambda: train_rate(run, args.batch, args.seq, args.steps, device))
        if isinstance(result.get(name), dict):
            tps = result[name]["tokens_per_s"]
            result[name]["mfu"] = tps * flops["mtp" if mtp else "main"] / peak
        return model

    model = train_variant("ours_train", lambda: Transformer(config), mtp=True)
    def profile_summary():  # one profiled step serves both numbers
        times = kernel_times(model, args.batch, args.seq, device)
        return {"grouped_gemm_share": grouped_share(times, device), "top_kernels": top_kernels(times)}

    record("profile", profile_summary)
    if isinstance(result.get("profile"), dict):
        result.update(result.pop("profile"))
    model.eval()
    model.to(torch.bfloat16)
    record("ours_decode_tokens_per_s", lambda: decode_rates(model, batches))
    del model
    free()
    del_after = lambda m: (m, free())  # noqa: E731
    del_after(train_variant("ours_nomtp_train", lambda: Transformer(main_only)))
    del_after(train_variant("ours_nomtp_bf16_train", lambda: Transformer(main_only), bf16_weights=True))
    if not args.skip_hf:
        from transformers import DeepseekV3ForCausalLM
        hf_cfg = hf_config(main_only)
        del_after(train_variant("hf_train", lambda: DeepseekV3ForCausalLM(hf_cfg)))
        hf = train_variant("hf_bf16_train", lambda: DeepseekV3ForCausalLM(hf_cfg), bf16_weights=True)
        hf.eval()
        record("hf_decode_tokens_per_s", lambda: hf_decode_rates(hf, batches[:2], device))
        del hf
        free()
        for ours, theirs in (("ours_nomtp_train", "hf_train"), ("ours_nomtp_bf16_train", "hf_bf16_train")):
            if isinstance(result.get(ours), dict) and isinstance(result.get(theirs), dict):
                result[f"speedup_{ours}_vs_{theirs}"] = (result[ours]["tokens_per_s"]
                                                         / result[theirs]["tokens_per_s"])
    if args.compile:
        del_after(train_variant("ours_nomtp_compiled_train", lambda: Transformer(main_only), compile=True))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    emit(result)


if __name__ == "__main__":
    main()
