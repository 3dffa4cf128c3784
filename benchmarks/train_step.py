"""Training step (forward + backward + AdamW) tokens/s: our Transformer vs transformers'
DeepseekV3ForCausalLM on the same config, batch and data, timed round-robin in one run.

    python benchmarks/train_step.py [--config recipes/model/tiny.yaml] [--batch 8] [--seq 256]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, hf_config, interleaved  # noqa: E402

from model import ModelConfig, Transformer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="recipes/model/tiny.yaml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from transformers import DeepseekV3ForCausalLM

    values = yaml.safe_load(open(args.config))["model"]
    ours_mtp = ModelConfig(**values)
    ours_main = ModelConfig(**{**values, "num_nextn_predict_layers": 0})
    torch.manual_seed(0)
    models = {"ours": Transformer(ours_main), "ours_with_mtp": Transformer(ours_mtp),
              "hf": DeepseekV3ForCausalLM(hf_config(ours_main))}
    ids = torch.randint(0, ours_main.vocab_size, (args.batch, args.seq), device=args.device)

    def step(model):
        model.to(args.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run():
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    times = interleaved({k: step(m) for k, m in models.items()}, repeat=args.repeat, device=args.device)
    tokens = args.batch * args.seq
    result = {"benchmark": "train_step", "device": args.device, "config": args.config,
              "batch": args.batch, "seq": args.seq,
              **{f"{k}_tokens_per_s": round(tokens / t, 1) for k, t in times.items()},
              "speedup_vs_hf": round(times["hf"] / times["ours"], 2),
              "speedup_with_mtp_vs_hf": round(times["hf"] / times["ours_with_mtp"], 2)}
    for k, t in times.items():
        print(f"{k:>14}: {t * 1e3:8.1f} ms/step  {tokens / t:10,.0f} tokens/s")
    emit(result)


if __name__ == "__main__":
    main()
