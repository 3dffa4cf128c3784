"""A tiny teacher checkpoint (random DeepSeek-V3 + byte tokenizer with the R1 chat template) and
problem files, shared by the generate and serve tests."""

from __future__ import annotations

import json
from pathlib import Path

TINY = dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, first_k_dense_replace=1,
            intermediate_size=96, num_attention_heads=2, q_lora_rank=32, kv_lora_rank=32,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
            moe_intermediate_size=32, num_experts_per_tok=2, n_group=2, topk_group=1,
            num_nextn_predict_layers=1, max_position_embeddings=512)


def make_teacher(path: Path, seed: int = 0) -> Path:
    import torch

    from model import ModelConfig, Transformer
    from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer

    tok = build_byte_tokenizer()
    config = ModelConfig(**TINY, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    Transformer(config).save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def read_rows(samples_dir: Path) -> dict[tuple, dict]:
    rows = {}
    for shard in sorted(samples_dir.glob("part-*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            key = (row["problem_id"], row["sample_index"])
            assert key not in rows, f"duplicate row {key} in {shard}"
            rows[key] = row
    return rows
