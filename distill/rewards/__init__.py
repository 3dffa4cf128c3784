"""GRPO rewards under TRL's contract `f(prompts, completions, completion_ids, **columns) ->
list[float | None]`, with `verifiers` as the judge of correctness.

    from distill.rewards import REWARDS, RewardSpec, RewardContext, Judge, build_rewards

REWARDS (registry.py) names each reward, the columns it reads and where its formula comes from;
quality.py holds accuracy / think format / language / repetition, length.py the length rewards
(cosine, DAPO overlong, Kimi, LCPO), judge.py the cached verifier judge they share.
"""

from distill.rewards.judge import Judge, completion_text
from distill.rewards.registry import (REWARDS, RewardContext, RewardInfo, RewardSpec, build_reward,
                                      build_rewards, check_columns, required_columns)

__all__ = ["REWARDS", "RewardInfo", "RewardSpec", "RewardContext", "Judge", "completion_text",
           "build_reward", "build_rewards", "check_columns", "required_columns"]
