"""Training tokens/s under TRL's SFTTrainer: our Transformer vs transformers'
DeepseekV3ForCausalLM, same weights (one checkpoint loaded by both), same data, same SFTConfig.

Both trainers are built once; then rounds alternate between them (ours, hf, hf, ours, ...), each
timing `--steps` optimizer steps of `trainer.training_step` + optimizer step, so the machine's
drift hits both alike. Reports tokens/s (non-pad tokens) per candidate and the ratio per round.

    python benchmarks/sft_throughput.py [--model recipes/model/tiny.yaml] [--batch 8] \\
        [--steps 5] [--rounds 4] [--max-tokens 384] [--no-gc] [--device cpu|cuda]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml


def build(args, tmp: Path):
    from datasets import Dataset
    from transformers import DeepseekV3ForCausalLM

    from distill.cli.data import synth_rows
    from distill.sft import LengthConfig, StyleConfig
    from distill.sft.data import SFTSource, load_sources
    from distill.sft.style import build_conversations
    from model import ModelConfig, Transformer
    from pretrain.tokenizer import build_byte_tokenizer

    tok = build_byte_tokenizer()
    values = yaml.safe_load(Path(args.model).read_text())["model"]
    values.update(vocab_size=max(values.get("vocab_size", 0), len(tok)), bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    Transformer(ModelConfig.from_config_dict(values, args.model)).save_pretrained(tmp / "ckpt")
    rows = synth_rows("arithmetic", 64 * args.batch, "train", 0, 2, "r1")
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    convs, _ = build_conversations(load_sources([SFTSource(str(tmp / "d.jsonl"))], 0), StyleConfig(),
                                   LengthConfig(max_tokens=args.max_tokens, over_budget="cap"), tok)
    data = Dataset.from_list(convs)
    ours = Transformer.from_pretrained(tmp / "ckpt").train()
    ours.mtp_layers.requires_grad_(False)  # as `distillery sft` does with the MTP loss off
    hf = DeepseekV3ForCausalLM.from_pretrained(tmp / "ckpt", dtype=torch.float32).train()
    return tok, data, {"ours": ours, "hf": hf}


def trainer_for(model, tok, data, args, out):
    from trl import SFTTrainer

    from distill.sft.trl_args import build_sft_config

    cfg = build_sft_config({"per_device_train_batch_size": args.batch, "max_steps": 10**6,
                            "gradient_checkpointing": not args.no_gc, "save_strategy": "no"},
                           out, seed=0, cpu=args.device == "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model.to(args.device), args=cfg, train_dataset=data,
                             processing_class=tok)
    trainer.create_optimizer_and_scheduler(num_training_steps=10**6)
    trainer.current_gradient_accumulation_steps = 1  # set by train(), which we do not call
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(cfg.gradient_checkpointing_kwargs)
    return trainer


def timed_steps(trainer, batches, steps, device):
    tokens, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    if device == "cuda":
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="recipes/model/tiny.yaml", help="a recipe with a model: section")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--no-gc", action="store_true", help="gradient checkpointing off (TRL: on)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tok, data, models = build(args, Path(tmp))
        trainers = {n: trainer_for(m, tok, data, args, str(Path(tmp) / n)) for n, m in models.items()}
        loaders = {n: iter(t.get_train_dataloader()) for n, t in trainers.items()}
        for name, t in trainers.items():  # warm-up: one step each, not timed
            timed_steps(t, loaders[name], 1, args.device)
        totals = {n: [0, 0.0] for n in trainers}
        ratios = []
        for r in range(args.rounds):
            order = ["ours", "hf"] if r % 2 == 0 else ["hf", "ours"]
            rates = {}
            for name in order:
                tokens, seconds = timed_steps(trainers[name], loaders[name], args.steps, args.device)
                totals[name][0] += tokens
                totals[name][1] += seconds
                rates[name] = tokens / seconds
            ratios.append(rates["ours"] / rates["hf"])
            print(f"round {r}: ours {rates['ours']:,.0f} tok/s, hf {rates['hf']:,.0f} tok/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    line = {"benchmark": "sft_throughput", "device": args.device, "model": args.model,
            "batch": args.batch, "steps_per_round": args.steps, "rounds": args.rounds,
            "gradient_checkpointing": not args.no_gc,
            "ours_tokens_per_s": totals["ours"][0] / totals["ours"][1],
            "hf_tokens_per_s": totals["hf"][0] / totals["hf"][1],
            "ratio_ours_over_hf": (totals["ours"][0] / totals["ours"][1])
            / (totals["hf"][0] / totals["hf"][1]),
            "ratio_per_round": ratios}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
