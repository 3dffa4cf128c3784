"""Rewards on what a completion says: accuracy, think format, language consistency, repetition.

Each is a callable class (picklable, as TRL's own rewards are) following TRL's contract
`f(prompts, completions, completion_ids, **columns) -> list[float | None]`; `__name__` is the
name TRL logs under `rewards/<name>/mean`.

    accuracy     ours: 1.0 / 0.0 from `verifiers` (the text after `</think>` only; the row's
                 `kind` picks math / choice / code, code runs in the sandbox); None when the gold
                 cannot be parsed. TRL's accuracy_reward / reasoning_accuracy_reward judge with
                 plain Math-Verify (first match, no answer-span policy).
    think_format ours (verifiers.format.verify_format): one think block, then a non-empty answer.
                 TRL's think_format_reward demands `<think>` at the start of the completion, which
                 is 0 for every completion of a template that already put `<think>` in the prompt
                 (open-r1 #560); here `think_in_prompt` says which case holds.
    language     ours: DeepSeek-R1 §2.3.2, the proportion of target-language words in the CoT
                 (verifiers.format.language_mixing on the reasoning).
    repetition   TRL's formula (get_repetition_penalty_reward: (1 - unique/total token n-grams)
                 x max_penalty), applied to wrong answers only as in Yeo et al. 2025 App. C.2;
                 correct answers get 0, unjudgeable ones None.
"""

from __future__ import annotations

from trl.rewards import get_repetition_penalty_reward

from distill.rewards.judge import Judge, completion_text
from verifiers.format import language_mixing, split_think, verify_format


def _judged(judge: Judge, completions, reference, kind) -> list[bool | None]:
    if reference is None:
        raise ValueError("this reward needs a 'reference' column (the gold answer or tests)")
    return judge(completions, reference, kind)


class Accuracy:
    """1.0 if the verifier accepts the answer, 0.0 if not, None when the gold is unreadable."""

    __name__ = "accuracy"

    def __init__(self, judge: Judge):
        self.judge = judge

    def __call__(self, completions, reference=None, kind=None, **kwargs) -> list[float | None]:
        return [None if c is None else float(c) for c in _judged(self.judge, completions, reference, kind)]


class ThinkFormat:
    """1.0 for `<think>reasoning</think>answer` (or `reasoning</think>answer` when the prompt
    opened the block), else 0.0. require_reasoning: an empty think block scores 0."""

    __name__ = "think_format"

    def __init__(self, think_in_prompt: bool = False, require_reasoning: bool = True):
        self.think_in_prompt, self.require_reasoning = think_in_prompt, require_reasoning

    def __call__(self, completions, **kwargs) -> list[float]:
        return [float(verify_format(completion_text(c), think_in_prompt=self.think_in_prompt,
                                    require_reasoning=self.require_reasoning).correct)
                for c in completions]


class LanguageConsistency:
    """Share of words in the target language's script in the reasoning (the whole completion
    when it has no think block). target: per-row `language` column if present, else `target`."""

    __name__ = "language"

    def __init__(self, target: str = "en", think_in_prompt: bool = False):
        language_mixing("", target)  # unknown target -> ValueError now, not mid-training
        self.target, self.think_in_prompt = target, think_in_prompt

    def __call__(self, completions, language=None, **kwargs) -> list[float]:
        out = []
        for i, c in enumerate(completions):
            text = completion_text(c)
            reasoning, _, _ = split_think(text, self.think_in_prompt)
            target = language[i] if language is not None and language[i] else self.target
            out.append(language_mixing(text if reasoning is None else reasoning, target))
        return out


class WrongRepetition:
    """TRL's token n-gram repetition penalty, on wrong answers only. Defaults: 40-token n-grams
    (Yeo et al. App. C.2 use 40-token n-grams) and max_penalty -1.0 (TRL/open-r1's default)."""

    __name__ = "repetition"

    def __init__(self, judge: Judge, ngram_size: int = 40, max_penalty: float = -1.0):
        if ngram_size < 1:
            raise ValueError(f"ngram_size={ngram_size} must be >= 1")
        self.judge = judge
        self.penalty = get_repetition_penalty_reward(ngram_size=ngram_size, max_penalty=max_penalty)

    def __call__(self, completions, completion_ids, reference=None, kind=None,
                 **kwargs) -> list[float | None]:
        correct = _judged(self.judge, completions, reference, kind)
        penalties = self.penalty(completion_ids=completion_ids)
        return [None if c is None else (0.0 if c else float(p)) for c, p in zip(correct, penalties)]

