"""`distillery model init | info | generate`: make, inspect and sample from a checkpoint."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from distill.cli import add_config_arguments, add_group
from model import ModelConfig


RANDOM_MARKER = "init_config.yaml"  # written by `model init` only: pretraining saves a fresh directory


@dataclass
class ModelInitConfig:
    """What `distillery model init` reads: the architecture plus how to initialise it.

    model: ModelConfig fields (transformers' DeepseekV3Config names plus our training fields);
        ModelConfig validates them itself (`from_config_dict`).
    seed: RNG seed for the random initialisation.
    dtype: float32 or bfloat16 weights on disk (the router bias stays float32).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    dtype: str = "float32"


def register(subparsers) -> None:
    group = add_group(subparsers, "model", "build, inspect and sample from DeepSeek-V3-style checkpoints")
    init = group.add_parser("init", help="randomly initialise a model from a size config")
    add_config_arguments(init, required=True, example="model.hidden_size=128",
                         config="distill.cli.model:ModelInitConfig")
    init.add_argument("--out", required=True, help="output checkpoint directory")
    init.set_defaults(func=_init)

    info = group.add_parser("info", help="parameters, FLOPs/token, KV bytes/token, layer layout")
    info.add_argument("path", help="checkpoint directory")
    info.add_argument("--seq-len", type=int, default=None, help="sequence length for FLOPs/token")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)

    convert = group.add_parser("convert", help="rewrite a checkpoint as FP8 (official DeepSeek-V3 "
                                               "block format) or as bf16")
    convert.add_argument("path", help="checkpoint directory (FP8 or not)")
    convert.add_argument("--to", required=True, choices=["fp8", "bf16", "fp32"])
    convert.add_argument("--out", required=True, help="output checkpoint directory")
    convert.set_defaults(func=_convert)

    gen = group.add_parser("generate", help="sample from a checkpoint with the in-repo engine")
    gen.add_argument("path", help="checkpoint directory")
    gen.add_argument("--prompt", required=True, action="append", help="prompt text (repeatable)")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.6, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--mtp", action="store_true", help="MTP self-speculative decoding")
    gen.set_defaults(func=_generate)


def _init(args) -> int:
    import torch

    from model import Transformer
    from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer
    from recipes.config import load_config, save_config

    cfg = load_config(ModelInitConfig, args.config, args.overrides)
    if cfg.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"{args.config}: dtype must be float32 or bfloat16, got {cfg.dtype!r}")
    tokenizer = build_byte_tokenizer()
    config = cfg.model
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"{args.config}: model.vocab_size={config.vocab_size} is smaller than the "
                         f"tokenizer's {len(tokenizer)} tokens")
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = Transformer(config).to(getattr(torch, cfg.dtype))
    out = Path(args.out)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    save_config(cfg, out / RANDOM_MARKER)
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def _info(args) -> int:
    from model.accounting import account
    from model.checkpoint import read_config

    config = read_config(args.path)
    acc = account(config, args.seq_len)
    layout = ["dense" if i < (config.first_k_dense_replace or 0) else "moe"
              for i in range(config.num_hidden_layers)] + ["mtp"] * config.num_mtp_modules
    if args.json:
        print(json.dumps({**acc.as_dict(), "layers": layout}))
        return 0
    experts = (f"{config.n_routed_experts} routed (top-{config.num_experts_per_tok}, "
               f"{config.n_group} groups, top-{config.topk_group}) + {config.n_shared_experts} shared")
    rows = [
        ("parameters (total)", f"{acc.total_params:,}"),
        ("  main model", f"{acc.main_params:,}"),
        ("  MTP modules", f"{acc.mtp_params:,}"),
        ("active per token", f"{acc.active_params:,}"),
        (f"train FLOPs/token (T={acc.seq_len})", f"{acc.flops_per_token:,.0f}"),
        ("KV cache bytes/token (bf16)", f"{acc.kv_bytes_per_token:,}"),
        ("layers", " ".join(layout)),
        ("experts", experts),
        ("attention", f"MLA, {config.num_attention_heads} heads, q_lora {config.q_lora_rank}, "
                      f"kv_lora {config.kv_lora_rank}, rope {config.qk_rope_head_dim}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _generate(args) -> int:
    from transformers import AutoTokenizer

    from model import Transformer
    from model.engine import Engine

    model = Transformer.from_pretrained(args.path)
    tokenizer = AutoTokenizer.from_pretrained(args.path)
    if (Path(args.path) / RANDOM_MARKER).is_file():
        print(f"note: {args.path} is a randomly initialised model (`distillery model init`), never "
              "trained: expect random text. A trained one: `distillery run recipes/quickstart.yaml`"
              " or `distillery pretrain`.")
    if args.chat:
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                                 add_generation_prompt=True, tokenize=True)
                   for p in args.prompt]
        prompts = [list(p["input_ids"]) if hasattr(p, "keys") else list(p) for p in prompts]
    else:
        prompts = [tokenizer.encode(p) for p in args.prompt]
    engine = Engine(model, tokenizer)
    result = engine.generate(prompts, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                             eos_token_ids=[tokenizer.eos_token_id], stop_strings=args.stop,
                             seed=args.seed, use_mtp=args.mtp)
    for prompt, tokens, reason in zip(args.prompt, result.tokens, result.finish_reason):
        print(f"--- {prompt!r} -> ({len(tokens)} tokens, {reason})")
        print(tokenizer.decode(tokens))
    stats = f"{result.num_generated} tokens in {result.elapsed_s:.2f}s ({result.tokens_per_s:.1f} tok/s)"
    if args.mtp:
        stats += f", MTP acceptance {result.acceptance_rate:.1%}"
    print(stats)
    return 0


def _convert(args) -> int:
    import shutil

    import torch

    from model import Transformer
    from model.checkpoint import save_checkpoint

    src, out = Path(args.path), Path(args.out)
    if out.resolve() == src.resolve():
        raise ValueError("--out must differ from the source checkpoint")
    model = Transformer.from_pretrained(src)  # FP8 weights are dequantized on load
    if args.to == "bf16":
        model.to(torch.bfloat16)  # the router bias stays fp32
    save_checkpoint(model, out, fp8=args.to == "fp8")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    print(f"wrote {out} ({args.to})")
    return 0
