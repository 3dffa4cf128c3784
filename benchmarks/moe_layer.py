"""MoE layer forward+backward: ours vs transformers' DeepseekV3MoE, same config, weights, inputs.

transformers picks its experts kernel at model load ("grouped_mm" where it can, else "eager", a
Python loop over the experts that were hit); both are timed, interleaved in one run.

    python benchmarks/moe_layer.py [--tokens 4096] [--experts 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, hf_config, interleaved  # noqa: E402

from model import ModelConfig  # noqa: E402
from model.moe import MoE  # noqa: E402


def build(args):
    config = ModelConfig(hidden_size=args.hidden, moe_intermediate_size=args.moe_inter,
                         n_routed_experts=args.experts, num_experts_per_tok=args.top_k,
                         n_group=args.groups, topk_group=args.topk_groups, n_shared_experts=1,
                         num_hidden_layers=1, first_k_dense_replace=0, num_nextn_predict_layers=0,
                         seq_aux_loss_alpha=0.0)
    torch.manual_seed(0)
    ours = MoE(config)
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.02)
    ours.gate.e_score_correction_bias.normal_(0, 0.01)
    return config, ours


def hf_layer(config, ours, implementation):
    from transformers import DeepseekV3ForCausalLM
    model = DeepseekV3ForCausalLM._from_config(hf_config(config),
                                                experts_implementation=implementation)
    layer = model.model.layers[0].mlp
    layer.load_state_dict(ours.state_dict(), strict=False)
    layer.gate.e_score_correction_bias.copy_(ours.gate.e_score_correction_bias)
    return layer, model.config._experts_implementation


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--moe-inter", type=int, default=128)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=6)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--topk-groups", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    config, ours = build(args)
    layers = {"ours": ours}
    for impl in ("grouped_mm", "eager"):
        layer, resolved = hf_layer(config, ours, impl)
        layers[f"hf_{resolved}"] = layer
    for layer in layers.values():
        layer.to(args.device, dtype).train()
    x = torch.randn(1, args.tokens, args.hidden, device=args.device, dtype=dtype)
    with torch.no_grad():  # same function: same output up to float rounding
        ref = ours(x)
        for name, layer in layers.items():
            diff = (layer(x) - ref).abs().max().item()
            assert diff < 1e-3 * max(1.0, ref.abs().max().item()), f"{name} differs from ours: {diff}"

    def step(layer):
        def run():
            xi = x.detach().requires_grad_()
            layer(xi).square().mean().backward()
            layer.zero_grad(set_to_none=True)
        return run

    times = interleaved({name: step(layer) for name, layer in layers.items()}, repeat=args.repeat,
                        device=args.device)
    result = {"benchmark": "moe_layer_fwd_bwd", "device": args.device, "dtype": args.dtype,
              "tokens": args.tokens, "hidden": args.hidden, "experts": args.experts, "top_k": args.top_k,
              **{f"{name}_ms": round(t * 1e3, 2) for name, t in times.items()}}
    for name, t in times.items():
        if name != "ours":
            result[f"speedup_vs_{name}"] = round(t / times["ours"], 2)
    for name, t in times.items():
        print(f"{name:>16}: {t * 1e3:8.2f} ms  ({args.tokens / t:,.0f} tokens/s)")
    emit(result)


if __name__ == "__main__":
    main()
