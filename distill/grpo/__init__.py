"""`distillery grpo`: TRL's GRPOTrainer with our rewards (distill.rewards), the prompt set from
`distillery filter` or any dataset, DAPO dynamic sampling, batch guards and per-step metrics.

    from distill.grpo import GRPORecipe, run_grpo
    final_dir = run_grpo(load_config(GRPORecipe, "recipes/grpo/tiny.yaml", section="grpo"))

config.py (the recipe), data.py (prompts), guards.py (checks before training), dynamic.py
(dynamic sampling trainer), metrics.py (metrics.jsonl, plots), rollout.py (engine rollouts),
run.py (run_grpo).
"""

from distill.grpo.config import (DataSpec, DynamicSampling, GRPORecipe, JudgeSpec, LengthBudget,
                                 LoraSpec, PolicySpec)


def run_grpo(cfg: GRPORecipe):
    """See distill.grpo.run.run_grpo (imported lazily: it pulls in torch and TRL's trainer)."""
    from distill.grpo.run import run_grpo as _run

    return _run(cfg)


__all__ = ["GRPORecipe", "PolicySpec", "DataSpec", "LengthBudget", "LoraSpec", "DynamicSampling",
           "JudgeSpec", "run_grpo"]
