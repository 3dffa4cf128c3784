"""`distillery sft`: style- and length-controlled SFT on TRL's SFTTrainer (issue 12).

Public API: `SFTRecipe` (the recipe's `sft:` section) and `run_sft(cfg) -> Path` (the final model
directory). Files: config (the recipe), trl_args (SFTConfig pass-through), data (sources ->
instances), style (style and length control), checks (fail-fast tokenizer/template checks),
trainer (SFTTrainer subclass and callbacks), train (run_sft).
"""

from distill.sft.config import LengthConfig, LoraSettings, SFTRecipe, SFTSource, StyleConfig


def run_sft(cfg: SFTRecipe):
    """Train per `cfg` and return the final model directory (see distill/sft/train.py)."""
    from distill.sft.train import run_sft as _run

    return _run(cfg)


__all__ = ["LengthConfig", "LoraSettings", "SFTRecipe", "SFTSource", "StyleConfig", "run_sft"]
