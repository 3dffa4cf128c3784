"""Distillation: teacher generation, filtering, SFT, GRPO, rewards, the CLI and recipe runner."""
