"""Decode tokens/s: our engine (latent cache, absorbed MLA) vs transformers' `generate` on the
same checkpoint, greedy, fixed lengths, batch 1 and 16, timed alternately in one run.

    python benchmarks/decode.py [--config recipes/model/tiny.yaml] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from model import ModelConfig, Transformer  # noqa: E402
from model.engine import Engine  # noqa: E402


def ours_rate(engine, prompts, new_tokens, use_mtp=False):
    start = time.perf_counter()
    result = engine.generate(prompts, max_new_tokens=new_tokens, temperature=0.0, eos_token_ids=(),
                             use_mtp=use_mtp)
    elapsed = time.perf_counter() - start
    assert all(len(t) == new_tokens for t in result.tokens)
    return result.num_generated / elapsed, result


def hf_rate(model, prompts, new_tokens):
    ids = torch.tensor(prompts)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    elapsed = time.perf_counter() - start
    return ids.shape[0] * (out.shape[1] - ids.shape[1]) / elapsed, out[:, ids.shape[1]:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="recipes/model/tiny.yaml")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from transformers import DeepseekV3ForCausalLM

    torch.manual_seed(0)
    config = ModelConfig(**yaml.safe_load(open(args.config))["model"])
    with tempfile.TemporaryDirectory() as tmp:
        Transformer(config).save_pretrained(tmp)
        ours = Transformer.from_pretrained(tmp).eval()
        hf = DeepseekV3ForCausalLM.from_pretrained(tmp).eval()
    engine = Engine(ours)
    result = {"benchmark": "decode", "config": args.config, "prompt_len": args.prompt_len,
              "new_tokens": args.new_tokens}
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = torch.randint(0, config.vocab_size, (batch, args.prompt_len)).tolist()
        ours_rate(engine, prompts, 4)  # warmup
        hf_rate(hf, prompts, 4)
        rates = {"ours": [], "hf": [], "ours_mtp": []}
        for _ in range(args.repeat):  # alternate so machine noise hits both alike
            r, res = ours_rate(engine, prompts, args.new_tokens)
            rates["ours"].append(r)
            r, hf_tokens = hf_rate(hf, prompts, args.new_tokens)
            rates["hf"].append(r)
            r, res_mtp = ours_rate(engine, prompts, args.new_tokens, use_mtp=True)
            rates["ours_mtp"].append(r)
        # Same checkpoint, greedy: the first tokens agree (long greedy runs may split on fp ties).
        agree = (torch.tensor(res.tokens)[:, :8] == hf_tokens[:, :8]).float().mean().item()
        best = {k: max(v) for k, v in rates.items()}
        result[f"b{batch}"] = {**{f"{k}_tokens_per_s": round(v, 1) for k, v in best.items()},
                               "speedup": round(best["ours"] / best["hf"], 2),
                               "mtp_speedup": round(best["ours_mtp"] / best["hf"], 2),
                               "mtp_acceptance": round(res_mtp.acceptance_rate, 3),
                               "first8_agreement_with_hf": agree}
        print(f"batch {batch}: {result[f'b{batch}']}", flush=True)
    emit(result)


if __name__ == "__main__":
    main()
