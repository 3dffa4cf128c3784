"""`distillery generate`'s local backends on the same checkpoint and prompts: engine vs
transformers tokens/s through the generation layer (evals/generation.py), alternated in one run.

    python benchmarks/generate_backends.py [--hidden 256] [--layers 4] [--prompts 16]
        [--new-tokens 64] [--batch-size 8] [--repeat 3]

Both backends sample at temperature 0.6 / top-p 0.95 with per-sample seeds; EOS is never
produced by the random model in practice, so every sample runs to --new-tokens. The checkpoint
is a fresh random DeepSeek-V3 model with the byte tokenizer and the R1 chat template, saved once
to a temporary directory. Target (issue 10): engine >= 1.5x transformers tokens/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from evals.config import ModelSpec, SamplingParams  # noqa: E402
from evals.generation import make_generator  # noqa: E402


def make_checkpoint(path: str, hidden: int, layers: int) -> None:
    from model import ModelConfig, Transformer
    from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer

    tok = build_byte_tokenizer()
    h = hidden
    config = ModelConfig(vocab_size=272, hidden_size=h, intermediate_size=3 * h // 2,
                         moe_intermediate_size=h // 2, num_hidden_layers=layers,
                         first_k_dense_replace=1, num_attention_heads=max(2, h // 32),
                         num_key_value_heads=max(2, h // 32), q_lora_rank=h // 2,
                         kv_lora_rank=h // 2, qk_nope_head_dim=32, qk_rope_head_dim=16,
                         v_head_dim=32, n_routed_experts=8, n_group=2, topk_group=1,
                         num_experts_per_tok=2, num_nextn_predict_layers=1,
                         max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    Transformer(config).save_pretrained(path)
    save_tokenizer(tok, path)


def run(gen, prompts, sampling) -> tuple[int, float]:
    start = time.perf_counter()
    samples = gen.generate(prompts, 1, sampling)
    elapsed = time.perf_counter() - start
    return sum(s[0].completion_tokens for s in samples), elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mtp", action="store_true", help="also time the engine with MTP")
    args = ap.parse_args()
    sampling = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=args.new_tokens)
    prompts = [[{"role": "user", "content": f"What is {i} times {i + 3}? Explain."}]
               for i in range(args.prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(tmp, args.hidden, args.layers)
        gens = {"engine": make_generator(ModelSpec("e", tmp, "engine", batch_size=args.batch_size)),
                "transformers": make_generator(ModelSpec("t", tmp, "transformers",
                                                         batch_size=args.batch_size))}
        if args.mtp:
            gens["engine_mtp"] = make_generator(ModelSpec("m", tmp, "engine",
                                                          batch_size=args.batch_size,
                                                          options={"use_mtp": True}))
        threads = torch.get_num_threads()
        for gen in gens.values():  # warm up
            gen.generate(prompts[:2], 1, SamplingParams(max_new_tokens=4))
        rates = {name: [] for name in gens}
        for _ in range(args.repeat):
            for name, gen in gens.items():
                torch.set_num_threads(threads)  # the same threads for both
                tokens, elapsed = run(gen, prompts, sampling)
                rates[name].append(tokens / elapsed)
        medians = {name: statistics.median(r) for name, r in rates.items()}
        print(medians, flush=True)
    emit({"benchmark": "generate_backends", "hidden": args.hidden, "layers": args.layers,
          "prompts": args.prompts, "new_tokens": args.new_tokens, "batch_size": args.batch_size,
          "tokens_per_s": medians,
          "engine_over_transformers": medians["engine"] / medians["transformers"]})


if __name__ == "__main__":
    main()
