"""The reward registry: recipe names -> reward classes, the columns each needs, and where its
formula comes from (TRL as is, TRL's formula with our judge, or ours where TRL has none).

    rewards:                       # recipe section grpo.rewards
      - {name: accuracy, weight: 1.0}
      - {name: kimi, weight: 0.5, args: {warmup_steps: 10}}
    funcs, weights = build_rewards(specs, RewardContext(judge, think_in_prompt, G, max_len))

Arguments that describe the run (the judge, whether the template opens `<think>`, the group size,
the completion limit) come from the context, so a recipe cannot contradict the trainer; the
rest are the reward's own keyword arguments, checked against its signature.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from distill.rewards.judge import Judge
from distill.rewards.length import Cosine, Kimi, LcpoExact, LcpoMax, Overlong
from distill.rewards.quality import Accuracy, LanguageConsistency, ThinkFormat, WrongRepetition


class RewardInfo(NamedTuple):
    cls: type
    columns: tuple[str, ...]  # dataset columns the reward reads (after the recipe's field map)
    origin: str  # "trl" | "trl formula, our judge" | "ours"


REWARDS: dict[str, RewardInfo] = {
    "accuracy": RewardInfo(Accuracy, ("reference",), "ours (verifiers judge)"),
    "think_format": RewardInfo(ThinkFormat, (), "ours (TRL's regex fails when <think> is in the prompt)"),
    "language": RewardInfo(LanguageConsistency, (), "ours (DeepSeek-R1 §2.3.2)"),
    "repetition": RewardInfo(WrongRepetition, ("reference",), "trl formula, our judge, wrong answers only"),
    "cosine": RewardInfo(Cosine, ("reference",), "trl formula, our judge, + exceed reward"),
    "overlong": RewardInfo(Overlong, (), "trl"),
    "kimi": RewardInfo(Kimi, ("reference",), "ours (Kimi k1.5 §2.3.3)"),
    "lcpo_exact": RewardInfo(LcpoExact, ("reference", "length_budget"), "ours (L1)"),
    "lcpo_max": RewardInfo(LcpoMax, ("reference", "length_budget"), "ours (L1)"),
}

# Filled from the run, never from the recipe's args.
CONTEXT_ARGS = ("judge", "think_in_prompt", "num_generations")


@dataclass
class RewardSpec:
    """One reward in a recipe: a registry name, its weight in the summed reward, its own args."""

    name: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.name not in REWARDS:
            raise ValueError(f"unknown reward {self.name!r}{_suggest(self.name, list(REWARDS))}; "
                             f"known: {sorted(REWARDS)}")


@dataclass
class RewardContext:
    judge: Judge
    think_in_prompt: bool
    num_generations: int
    max_completion_length: int


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reward_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The recipe-settable keyword arguments of a reward (its signature minus the context)."""
    params = inspect.signature(REWARDS[name].cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and k not in CONTEXT_ARGS}


def build_reward(spec: RewardSpec, ctx: RewardContext):
    """One reward callable from its spec; bad args are a ValueError naming the reward."""
    allowed = reward_arguments(spec.name)
    for key in spec.args:
        if key in CONTEXT_ARGS:
            raise ValueError(f"reward {spec.name}: '{key}' is set by the run, not in args")
        if key not in allowed:
            raise ValueError(f"reward {spec.name}: unknown arg '{key}'{_suggest(key, list(allowed))}; "
                             f"it takes {sorted(allowed)}")
    params = inspect.signature(REWARDS[spec.name].cls.__init__).parameters
    kwargs = dict(spec.args)
    context = {"judge": ctx.judge, "think_in_prompt": ctx.think_in_prompt,
               "num_generations": ctx.num_generations}
    kwargs.update({k: v for k, v in context.items() if k in params})
    if "max_len" in params and "max_len" not in kwargs:
        kwargs["max_len"] = ctx.max_completion_length
    try:
        return REWARDS[spec.name].cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"reward {spec.name}: {e}") from None


def build_rewards(specs: list[RewardSpec], ctx: RewardContext) -> tuple[list, list[float]]:
    """The reward callables and their weights, in recipe order (TRL's reward_funcs/reward_weights)."""
    if not specs:
        raise ValueError("grpo.rewards is empty: list at least one reward, e.g. {name: accuracy}")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"reward(s) listed twice: {dupes}; give each reward once with its weight")
    return [build_reward(s, ctx) for s in specs], [float(s.weight) for s in specs]


def required_columns(specs: list[RewardSpec]) -> dict[str, tuple[str, ...]]:
    """reward name -> the dataset columns it reads."""
    return {s.name: REWARDS[s.name].columns for s in specs}


def check_columns(specs: list[RewardSpec], columns: list[str], where: str = "dataset") -> None:
    """ValueError naming each reward whose columns the dataset lacks."""
    missing = {name: [c for c in cols if c not in columns]
               for name, cols in required_columns(specs).items()}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        parts = "; ".join(f"reward {k} needs column(s) {v}" for k, v in missing.items())
        raise ValueError(f"{where} has columns {sorted(columns)}: {parts} "
                         "(map your columns with data.fields, e.g. {reference: answer})")


__all__ = ["REWARDS", "RewardInfo", "RewardSpec", "RewardContext", "build_reward", "build_rewards",
           "check_columns", "required_columns", "reward_arguments"]
