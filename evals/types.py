"""Shapes shared by the benchmark loaders, the synthetic task families and the eval runner."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Problem:
    """One evaluation or training problem.

    id: stable across runs (benchmark name + source row, or task family + split + seed + index).
    question: the problem text, without any prompt template.
    reference: the gold answer (LaTeX or plain for math, a letter for choice, tests for code).
    kind: the verifier kind (`verifiers.verify`): "math", "choice" or "code".
    choices: for multiple choice, the option texts in presented order (after shuffling).
    meta: anything else (subject, level, difficulty, source file and row, permutation, ...).
    """

    id: str
    question: str
    reference: str
    kind: str = "math"
    choices: list[str] | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    """A loaded benchmark: its problems and how to evaluate them.

    prompt_template: a str.format template with {question} (and {choices} for multiple choice);
        DeepSeek's recommended math instruction by default.
    default_k: samples per problem when the eval config does not say.
    revision: a content hash of the source file(s), recorded in results.json.
    """

    name: str
    problems: list[Problem]
    prompt_template: str
    kind: str = "math"
    default_k: int = 1
    revision: str = ""


MATH_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
CHOICE_PROMPT = ("{question}\n\n{choices}\n\nPlease reason step by step, and finish with a line "
                 "of the form 'Answer: X', where X is one of the letters above.")
