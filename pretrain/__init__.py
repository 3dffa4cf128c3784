"""Pretraining: tokenizer, data shards, training loop, checkpoints, distributed."""
