"""Tiny in-process policies for the GRPO tests: a character-level tokenizer over digits (with
our chat template) and a 2-layer Qwen2 saved as a local HF directory. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.tokenizer import RESERVED_TOKENS, SPECIAL_TOKENS, wrap_tokenizer

CHARS = list("0123456789\n")


def digit_tokenizer():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<unk>", *RESERVED_TOKENS, *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in RESERVED_TOKENS[len(SPECIAL_TOKENS):]])
    return wrap_tokenizer(tok)


def tiny_policy(directory: Path, seed: int = 0, hidden: int = 32) -> Path:
    """A random 2-layer Qwen2 + the digit tokenizer in `directory`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = digit_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=128, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return Path(directory)


def copy_task(path: Path, digits: str = "0123", repeat: int = 8) -> Path:
    """Prompt: a digit; gold: the same digit. JSONL in the filter's RL prompt-set layout."""
    rows = [{"problem_id": f"d{d}-{i}", "problem": d, "reference": d, "kind": "math", "pass_rate": 0.5}
            for i in range(repeat) for d in digits]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
