"""Budget forcing (s1, Muennighoff et al. 2025, arXiv:2501.19393 §3.1) and accuracy-vs-tokens curves.

Maximum: the model thinks for at most B tokens; when it runs out, the end-of-thinking delimiter
`</think>` is appended and the model continues (with a small limit) to give its current best
answer. Minimum / extension: when the model closes its thinking early, the delimiter is removed
and "Wait" appended, up to `num_waits` times, so it keeps reflecting (s1's "budget forcing";
their Table 3 gets AIME24 50% -> 57% from it).

    samples = force_budget(generator, prompts, budget, sampling, seeds=...)   # one per prompt
    curve = budget_sweep(generator, problems, budgets=[256, 512, 1024])       # accuracy vs tokens

Every Sample's reasoning_tokens counts the tokens generated while thinking plus the inserted
"Wait" tokens, and never exceeds B: each thinking call is limited to what is left of B.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from evals.config import SamplingParams
from evals.generation import (THINK_CLOSE, THINK_OPEN, Generator, Prompt, Sample, opens_thinking,
                              sample_seed)
from evals.metrics import pass_at_1
from evals.types import MATH_PROMPT, Problem


class _Trace:
    """One prompt's state: what it has thought so far and how many tokens that cost."""

    def __init__(self, rendered: str, seed: int, waits: int):
        self.forced_open = not opens_thinking(rendered)
        self.base = rendered + (THINK_OPEN + "\n" if self.forced_open else "")
        self.seed, self.waits_left = seed, waits
        self.thought, self.used, self.calls = "", 0, 0
        self.forced = ""  # text appended by us after thinking (`</think>`, the answer prefix)
        self.prompt_tokens: int | None = None
        self.thinking = True


def _think_step(generator: Generator, traces: list[_Trace], budget: int, sampling: SamplingParams,
                wait_text: str, wait_tokens: int) -> None:
    """One thinking call for every trace still thinking, grouped by the tokens each has left."""
    active = [t for t in traces if t.thinking]
    for left in sorted({budget - t.used for t in active}):
        group = [t for t in active if budget - t.used == left]
        outs = generator.generate([t.base + t.thought for t in group], 1,
                                  replace(sampling, max_new_tokens=left),
                                  seeds=[[sample_seed(t.seed, "think", t.calls)] for t in group],
                                  stop=(THINK_CLOSE,))
        for t, (s,) in zip(group, outs):
            t.calls += 1
            t.used += s.completion_tokens
            t.thought += s.text
            if t.prompt_tokens is None:
                t.prompt_tokens = s.prompt_tokens
            ended_early = s.finish_reason == "stop"  # closed its thinking, or EOS inside it
            room = budget - t.used - wait_tokens
            if ended_early and t.waits_left > 0 and room >= 1:
                if t.thought.endswith(THINK_CLOSE):
                    t.thought = t.thought[:-len(THINK_CLOSE)]
                t.thought += wait_text
                t.used += wait_tokens
                t.waits_left -= 1
                continue
            t.thinking = False
            if not t.thought.endswith(THINK_CLOSE):  # out of budget (or EOS): force the end
                t.forced = "\n" + THINK_CLOSE + "\n\n"


def force_budget(generator: Generator, prompts: Sequence[Prompt], budget: int,
                 sampling: SamplingParams, *, seeds: Sequence[int] | None = None,
                 num_waits: int = 0, answer_max_tokens: int = 64, answer_prefix: str = "",
                 wait_text: str = "Wait") -> list[Sample]:
    """One budget-forced sample per prompt: think for at most `budget` tokens (extended with
    `wait_text` up to `num_waits` times), then `</think>` + `answer_prefix` and an answer of at
    most `answer_max_tokens`. A template that does not open `<think>` gets it appended, and the
    sample's text then starts with it. Needs a backend that can continue raw text (not openai)."""
    if generator.backend == "openai":
        raise ValueError("budget forcing continues raw prompt text; the openai backend (chat "
                         "messages only) cannot do it")
    if budget < 1 or answer_max_tokens < 1 or num_waits < 0:
        raise ValueError(f"force_budget: need budget >= 1, answer_max_tokens >= 1, num_waits >= 0 "
                         f"(got {budget}, {answer_max_tokens}, {num_waits})")
    if seeds is None:
        seeds = [sample_seed(sampling.seed, i) for i in range(len(prompts))]
    traces = [_Trace(generator.render(p), s, num_waits) for p, s in zip(prompts, list(seeds))]
    wait_tokens = generator.count_tokens(wait_text) or 1
    while any(t.thinking for t in traces):
        _think_step(generator, traces, budget, sampling, wait_text, wait_tokens)
    for t in traces:
        t.forced += answer_prefix
    answers = generator.generate([t.base + t.thought + t.forced for t in traces], 1,
                                 replace(sampling, max_new_tokens=answer_max_tokens),
                                 seeds=[[sample_seed(t.seed, "answer")] for t in traces])
    samples = []
    for t, (a,) in zip(traces, answers):
        forced_tokens = (generator.count_tokens(t.forced) or 0) if t.forced else 0
        text = (THINK_OPEN + "\n" if t.forced_open else "") + t.thought + t.forced + a.text
        samples.append(Sample(text, a.finish_reason, t.prompt_tokens or a.prompt_tokens,
                              t.used + forced_tokens + a.completion_tokens, reasoning_tokens=t.used,
                              think_opened=not t.forced_open))
    return samples


def budget_curve(rows: Sequence[dict]) -> list[dict]:
    """Accuracy-vs-tokens points from budget-forced sample rows (`budget`, `problem_id`,
    `correct`, `reasoning_tokens`, `completion_tokens`): pass@1 (mean over problems of the
    per-problem mean) with its standard error, and the mean tokens actually spent."""
    points = []
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        by_problem: dict[str, list[bool]] = {}
        for r in at:
            by_problem.setdefault(r["problem_id"], []).append(bool(r["correct"]))
        accuracy, se = pass_at_1(list(by_problem.values()))
        points.append({
            "budget": budget, "accuracy": accuracy, "accuracy_se": se,
            "mean_reasoning_tokens": sum(r["reasoning_tokens"] or 0 for r in at) / len(at),
            "mean_completion_tokens": sum(r["completion_tokens"] for r in at) / len(at),
            "num_samples": len(at)})
    return points


def budget_sweep(generator: Generator, problems: Sequence[Problem], budgets: Sequence[int], *,
                 sampling: SamplingParams | None = None, k: int = 1,
                 prompt_fn: Callable[[Problem], Prompt] | None = None, num_waits: int = 0,
                 answer_max_tokens: int = 64) -> list[dict]:
    """Budget-force k samples per problem at each budget, verify them (`verifiers.verify` with
    each problem's kind) and return the `budget_curve` points. The eval runner does the same
    with caching and a VerifierPool; this is the direct, in-process form."""
    from verifiers import verify

    sampling = sampling or SamplingParams()
    prompt_fn = prompt_fn or (lambda p: [{"role": "user",
                                          "content": MATH_PROMPT.format(question=p.question)}])
    rows = []
    for budget in budgets:
        prompts = [prompt_fn(p) for p in problems for _ in range(k)]
        seeds = [sample_seed(sampling.seed, p.id, j, budget) for p in problems for j in range(k)]
        samples = force_budget(generator, prompts, budget, sampling, seeds=seeds,
                               num_waits=num_waits, answer_max_tokens=answer_max_tokens)
        for i, s in enumerate(samples):
            p = problems[i // k]
            response = (THINK_OPEN + "\n" if s.think_opened else "") + s.text
            rows.append({"budget": budget, "problem_id": p.id,
                         "reasoning_tokens": s.reasoning_tokens,
                         "completion_tokens": s.completion_tokens,
                         "correct": verify(p.kind, response, p.reference).correct})
    return budget_curve(rows)
