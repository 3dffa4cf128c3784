"""Length rewards, all measured in tokens of the policy's tokenizer (`completion_ids`).

    cosine      TRL's formula (get_cosine_scaled_reward: Yeo et al. 2025 CosFn, clamped at max_len
                so the periodic cosine cannot reward very long answers), with our verifiers as the
                judge instead of plain Math-Verify, plus the paper's exceed reward r_e for
                completions within `exceed_margin` tokens of max_len (Yeo et al. §4 / the
                demystify-long-cot repo: t + 16 >= T). Defaults are the paper's: correct 2 -> 1,
                wrong -10 -> 0, exceed -10.
    overlong    TRL's get_soft_overlong_punishment as is (DAPO Eq. 13, token lengths).
    kimi        ours (Kimi k1.5 §2.3.3), per prompt group: lambda = 0.5 - (len - min) / (max - min),
                correct -> lambda, wrong -> min(0, lambda); all 0 when the group's lengths agree.
                open-r1's version counts characters over the whole batch; TRL has none.
    lcpo_exact  ours (L1, Aggarwal & Welleck 2025): r = c - alpha |n_gold - n_y|, alpha 0.0003.
    lcpo_max    ours (L1-Max, paper form): r = c * clip(alpha (n_gold - n_y) + delta, 0, 1),
                alpha 0.0003, delta 0.5.
LCPO rewards contain the correctness term c, so a recipe uses them instead of `accuracy`; n_gold
is the row's `length_budget` column (the N of "Think for N tokens.", see distill/grpo/data.py).
Every reward that needs correctness returns None where the gold cannot be read.
"""

from __future__ import annotations

import math

from trl.rewards import get_soft_overlong_punishment

from distill.rewards.judge import Judge
from distill.rewards.quality import _judged


class Cosine:
    """CosFn(t, T, a, b) = a + 0.5 (b - a)(1 + cos(pi min(t, T) / T)); correct: a=min_value_correct
    (at T), b=max_value_correct (at 0); wrong: a=max_value_wrong (at T), b=min_value_wrong (at 0).
    exceed_reward: given when t + exceed_margin >= T; None turns it off (TRL's clamp only)."""

    __name__ = "cosine"

    def __init__(self, judge: Judge, max_len: int, min_value_wrong: float = -10.0,
                 max_value_wrong: float = 0.0, min_value_correct: float = 1.0,
                 max_value_correct: float = 2.0, exceed_reward: float | None = -10.0,
                 exceed_margin: int = 16):
        if max_len <= 0:
            raise ValueError(f"max_len={max_len} must be positive")
        self.judge, self.max_len = judge, max_len
        self.wrong = (max_value_wrong, min_value_wrong)  # (value at T, value at 0)
        self.right = (min_value_correct, max_value_correct)
        self.exceed_reward, self.exceed_margin = exceed_reward, exceed_margin

    def __call__(self, completions, completion_ids, reference=None, kind=None,
                 **kwargs) -> list[float | None]:
        correct = _judged(self.judge, completions, reference, kind)
        out: list[float | None] = []
        for c, ids in zip(correct, completion_ids):
            t = len(ids)
            if c is None:
                out.append(None)
            elif self.exceed_reward is not None and t + self.exceed_margin >= self.max_len:
                out.append(float(self.exceed_reward))
            else:
                at_end, at_start = self.right if c else self.wrong
                cosine = math.cos(math.pi * min(t / self.max_len, 1.0))
                out.append(at_end + 0.5 * (at_start - at_end) * (1.0 + cosine))
        return out


class Overlong:
    """DAPO soft overlong punishment via TRL. cache: L_cache; DAPO uses 4096 of L_max 20480,
    so the default is max_len // 5 (at least 1)."""

    __name__ = "overlong"

    def __init__(self, max_len: int, cache: int | None = None):
        cache = max(1, max_len // 5) if cache is None else cache
        if not 0 < cache <= max_len:
            raise ValueError(f"overlong: cache={cache} must be in (0, max_len={max_len}]")
        self.max_len, self.cache = max_len, cache
        self.punish = get_soft_overlong_punishment(max_completion_len=max_len, soft_punish_cache=cache)

    def __call__(self, completion_ids, **kwargs) -> list[float]:
        return [float(r) for r in self.punish(completion_ids=completion_ids)]


def groups(n: int, group_size: int, prompts=None) -> list[range]:
    """Consecutive index ranges of one prompt's group (TRL repeats each prompt group_size times in
    a row). Checks the count divides and, when prompts are given, that each group shares one."""
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} completions do not split into groups of num_generations={group_size}")
    out = [range(s, s + group_size) for s in range(0, n, group_size)]
    if prompts is not None:
        for g in out:
            if any(prompts[i] != prompts[g[0]] for i in g):
                raise ValueError("a group-level reward got a group whose prompts differ: the batch is "
                                 "not laid out as num_generations consecutive samples per prompt")
    return out


class Kimi:
    """Kimi k1.5 length penalty per prompt group. warmup_steps: 0.0 for every sample before that
    global step (the report first trains without it)."""

    __name__ = "kimi"

    def __init__(self, judge: Judge, num_generations: int, warmup_steps: int = 0):
        self.judge, self.num_generations, self.warmup_steps = judge, num_generations, warmup_steps

    def __call__(self, prompts, completions, completion_ids, reference=None, kind=None,
                 trainer_state=None, **kwargs) -> list[float | None]:
        correct = _judged(self.judge, completions, reference, kind)
        lengths = [len(ids) for ids in completion_ids]
        out: list[float | None] = [None] * len(lengths)
        warm = trainer_state is not None and trainer_state.global_step < self.warmup_steps
        for g in groups(len(lengths), self.num_generations, prompts):
            lo, hi = min(lengths[i] for i in g), max(lengths[i] for i in g)
            for i in g:
                if correct[i] is None:
                    continue
                if hi == lo or warm:
                    out[i] = 0.0
                    continue
                lam = 0.5 - (lengths[i] - lo) / (hi - lo)
                out[i] = lam if correct[i] else min(0.0, lam)
        return out


def _budgets(length_budget, n: int) -> list[float]:
    if length_budget is None:
        raise ValueError("LCPO rewards need a 'length_budget' column (set data.length_budget in "
                         "the recipe to add 'Think for N tokens.' prompts)")
    if len(length_budget) != n:
        raise ValueError(f"{len(length_budget)} length budgets for {n} completions")
    return [float(b) for b in length_budget]


class LcpoExact:
    """L1-Exact: c - alpha |n_gold - n_y|."""

    __name__ = "lcpo_exact"

    def __init__(self, judge: Judge, alpha: float = 0.0003):
        self.judge, self.alpha = judge, alpha

    def __call__(self, completions, completion_ids, reference=None, kind=None,
                 length_budget=None, **kwargs) -> list[float | None]:
        budgets = _budgets(length_budget, len(completion_ids))
        correct = _judged(self.judge, completions, reference, kind)
        return [None if c is None else float(c) - self.alpha * abs(n - len(ids))
                for c, n, ids in zip(correct, budgets, completion_ids)]


class LcpoMax:
    """L1-Max (paper form): c * clip(alpha (n_gold - n_y) + delta, 0, 1)."""

    __name__ = "lcpo_max"

    def __init__(self, judge: Judge, alpha: float = 0.0003, delta: float = 0.5):
        self.judge, self.alpha, self.delta = judge, alpha, delta

    def __call__(self, completions, completion_ids, reference=None, kind=None,
                 length_budget=None, **kwargs) -> list[float | None]:
        budgets = _budgets(length_budget, len(completion_ids))
        correct = _judged(self.judge, completions, reference, kind)
        return [None if c is None else float(c) * min(1.0, max(0.0, self.alpha * (n - len(ids)) + self.delta))
                for c, n, ids in zip(correct, budgets, completion_ids)]
