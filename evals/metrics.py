"""Evaluation metrics the way DeepSeek-R1 reports them: k samples per problem, pass@1 as a mean,
unbiased pass@k, majority vote over verified-equivalent answers, and length/format statistics.

    pass_at_k(n, c, k)                    Codex estimator for one problem
    mean_pass_at_k(counts, k)             its mean over problems; every problem needs >= k samples
    pass_at_1(correct)                    (mean, standard error over problems) of per-problem c/n
    majority_vote(answers, equivalent)    winning cluster of equivalent answers (maj@k / cons@k)
    length_stats(values)                  mean, median, p90
    response_stats(samples)               truncation, format adherence and EOS rates

Pitfalls these avoid (docs/verification-and-eval.md §2.1, §2.6): lighteval's PassAtK silently used
fewer samples than n (lighteval #771, open-r1 #655), so here a problem with fewer than k samples is
an error; its MajAtN voted on raw strings, so `1/2` and `\\frac{1}{2}` split the vote, so here the
vote is over clusters of answers that a verifier calls equivalent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from verifiers.answers import split_think

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


# -- pass@k -------------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c are correct (Chen et al. 2021,
    arXiv:2107.03374 §2.1): 1 - C(n-c, k) / C(n, k), computed as the product
    1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pass_at_k: {name} must be an int, got {type(value).__name__}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(f"pass_at_k: fewer samples than k (n={n} < k={k}); generate at least "
                         f"k samples per problem (lighteval #771 reported this silently)")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (n, c) per problem; ValueError when any n < k."""
    if not counts:
        raise ValueError("mean_pass_at_k: no problems")
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))


def mean_and_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and its standard error (sample std with ddof=1 over sqrt(count)); se None below 2."""
    if len(values) == 0:
        raise ValueError("mean_and_se: no values")
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None
    return float(x.mean()), se


def pass_at_1(correct: Sequence[Sequence[bool]]) -> tuple[float, float | None]:
    """DeepSeek-R1's pass@1 (arXiv:2501.12948 §3): per problem the mean correctness p_i over its
    k samples, then the mean over problems, with the standard error of that mean over problems
    (the sampling noise within a problem is folded into p_i)."""
    if any(len(c) == 0 for c in correct):
        raise ValueError("pass_at_1: a problem has no samples")
    return mean_and_se([sum(map(bool, c)) / len(c) for c in correct])


# -- majority vote ------------------------------------------------------------------------------

@dataclass
class Vote:
    """The result of a majority vote. winner: index (into the answers) of the first member of the
    winning cluster, None when no answer was extracted. clusters: member indices per cluster, in
    first-seen order."""

    winner: int | None
    count: int
    clusters: list[list[int]]


def math_equivalent(answer: str, other: str) -> bool:
    """Default equivalence: the math verifier reads `answer` as a boxed prediction of `other`."""
    from verifiers import verify

    return verify("math", "\\boxed{" + answer + "}", other).correct


def majority_vote(answers: Sequence[str | None],
                  equivalent: Callable[[str, str], bool] | None = None) -> Vote:
    """maj@k / cons@k: cluster the extracted answers by `equivalent(answer, representative)`
    (the math verifier by default), each cluster represented by its first member; the biggest
    cluster wins and ties go to the cluster seen first. None (no answer extracted) never votes.
    Identical strings are equivalent without asking the verifier."""
    equivalent = equivalent or math_equivalent
    clusters: list[list[int]] = []
    by_text: dict[str, int] = {}  # stripped answer text -> cluster index
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        text = answer.strip()
        found = by_text.get(text)
        if found is None:
            found = next((j for j, members in enumerate(clusters)
                          if equivalent(text, answers[members[0]].strip())), None)
        if found is None:
            found = len(clusters)
            clusters.append([])
        clusters[found].append(i)
        by_text[text] = found
    if not clusters:
        return Vote(None, 0, [])
    best = max(range(len(clusters)), key=lambda j: (len(clusters[j]), -j))  # first seen on ties
    return Vote(clusters[best][0], len(clusters[best]), clusters)


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int,
             equivalent: Callable[[str, str], bool] | None = None) -> bool:
    """maj@k over the first k samples: correct iff the winning cluster's answer is correct (its
    first member's verdict; members are equivalent, so they share it). No answer: incorrect."""
    if k > len(answers):
        raise ValueError(f"maj_at_k: fewer samples than k ({len(answers)} < {k})")
    vote = majority_vote(answers[:k], equivalent)
    return vote.winner is not None and bool(correct[vote.winner])


# -- lengths and format -------------------------------------------------------------------------

def length_stats(values: Iterable[float | None]) -> dict[str, float] | None:
    """{mean, median, p90} of the known values (None skipped); None when there are none."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return None
    return {"mean": float(x.mean()), "median": float(np.median(x)),
            "p90": float(np.percentile(x, 90))}


def split_response(completion: str, think_opened: bool = False) -> tuple[str, str, bool]:
    """(reasoning, answer_text, think_closed). The verifiers' split (verifiers.answers), so what
    the report counts as reasoning is what the verifier skipped: an unclosed block has no answer."""
    reasoning, answer, closed = split_think(completion, think_in_prompt=think_opened)
    return reasoning or "", answer, closed


def format_ok(completion: str, think_opened: bool = False) -> bool:
    """R1 format: exactly one `<think>...</think>` block at the start (the prompt may have opened
    it), followed by a non-empty answer."""
    text = (THINK_OPEN if think_opened else "") + completion
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return False
    if stripped.count(THINK_OPEN) != 1 or stripped.count(THINK_CLOSE) != 1:
        return False
    return bool(stripped.split(THINK_CLOSE, 1)[1].strip())


def is_truncated(completion: str, finish_reason: str, think_opened: bool = False) -> bool:
    """Cut by the token limit, or the reasoning never closed (no answer can be read)."""
    return finish_reason == "length" or not split_response(completion, think_opened)[2]


def response_stats(rows: Sequence[dict]) -> dict[str, float]:
    """Rates over sample rows (`completion`, `finish_reason`, `think_opened`): truncation,
    format adherence, and EOS (the model ended by itself: finish_reason "stop")."""
    if not rows:
        raise ValueError("response_stats: no samples")
    num = len(rows)
    truncated = sum(is_truncated(r["completion"], r["finish_reason"], r.get("think_opened", False))
                    for r in rows)
    formatted = sum(format_ok(r["completion"], r.get("think_opened", False)) for r in rows)
    eos = sum(r["finish_reason"] == "stop" for r in rows)
    return {"truncation_rate": truncated / num, "format_adherence": formatted / num,
            "eos_rate": eos / num}


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself (pass@n / maj@n are the headline cons@n numbers)."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if n >= 1 and ks[-1] != n:
        ks.append(n)
    return ks
