"""Synthetic teacher samples for the filter benchmarks, with what is wrong with each known.

    rows = teacher_samples(n_problems, k, error_rate, seed)          # math only, R1 traces
    rows = mixed_samples(n, seed)                                    # math, choice, code, noise

Each row follows the sample-row contract (shared/DESIGN.md) and carries `planted`: None for a
clean sample, else what was planted ("wrong_answer" from evals/solutions.py's planted error,
"truncated", "language", "repetition", "duplicate", ...).
"""

from __future__ import annotations

import random

from evals.solutions import r1_trace
from evals.tasks import TASKS, generate
from evals.types import MATH_PROMPT


def teacher_samples(n_problems: int, k: int, error_rate: float, seed: int = 0,
                    difficulty: int = 3) -> list[dict]:
    """k R1-style traces per problem over every synthetic family; a trace is wrong (a planted,
    propagated error: evals.solutions) with probability error_rate."""
    rows = []
    per_task = max(1, n_problems // len(TASKS))
    for task in sorted(TASKS):
        for p in generate(task, per_task, split="train", seed=seed, difficulty=difficulty):
            for i in range(k):
                rng = random.Random(f"{p.id}|{i}|{seed}")
                planted = rng.random() < error_rate
                text, _ = r1_trace(p, rng, planted)
                rows.append({
                    "id": f"{p.id}#{i}", "problem_id": p.id, "sample_index": i,
                    "prompt": [{"role": "user", "content": MATH_PROMPT.format(question=p.question)}],
                    "completion": text, "finish_reason": "stop", "reference": p.reference,
                    "kind": "math", "source": task,
                    "teacher": {"backend": "synthetic", "model": "evals.solutions", "seed": seed},
                    "planted": "wrong_answer" if planted else None})
    return rows


def _noise(row: dict, rng: random.Random) -> dict:
    """Break one hygiene rule of a clean row."""
    row = dict(row)
    kind = rng.choice(["truncated", "language", "repetition", "duplicate"])
    text = row["completion"]
    if kind == "truncated":
        row["completion"], row["finish_reason"] = text[: len(text) // 2], "length"
    elif kind == "language":
        row["completion"] = text.replace("<think>\n", "<think>\n" + "这是一个很长的中文推理过程" * 20 + "\n", 1)
    elif kind == "repetition":
        loop = "Let me check the first step again and recompute it from scratch. " * 30
        row["completion"] = text.replace("</think>", loop + "\n</think>", 1)
    else:
        row["completion"] = text.replace("\n\n", "\n \n", 1)  # equal after normalisation
    row["planted"] = kind
    return row


def _choice(i: int, rng: random.Random) -> dict:
    letters = "ABCD"
    gold = rng.choice(letters)
    said = gold if rng.random() < 0.7 else rng.choice(letters)
    question = f"Which option is correct in question {i}? (A) {i} (B) {i + 1} (C) {i + 2} (D) {i + 3}"
    steps = " ".join(f"Option {c} gives {i * (n + 2)} when checked." for n, c in enumerate(letters))
    return {"id": f"choice-{i}#0", "problem_id": f"choice-{i}", "sample_index": 0,
            "prompt": [{"role": "user", "content": question}], "finish_reason": "stop",
            "completion": f"<think>\nLet me look at each option. {steps}\n</think>\n\nAnswer: {said}",
            "reference": gold, "kind": "choice", "source": "choice",
            "planted": None if said == gold else "wrong_answer"}


def _code(i: int, rng: random.Random) -> dict:
    a = rng.randint(1, 9)
    right = rng.random() < 0.7
    body = f"print(int(input()) * {a if right else a + 1})"
    return {"id": f"code-{i}#0", "problem_id": f"code-{i}", "sample_index": 0,
            "prompt": [{"role": "user", "content": f"Read n and print n times {a}."}],
            "completion": f"<think>\nMultiply the input by {a}.\n</think>\n\n```python\n{body}\n```",
            "finish_reason": "stop", "kind": "code", "source": "code",
            "reference": {"inputs": ["3\n", "5\n"], "outputs": [f"{3 * a}\n", f"{5 * a}\n"]},
            "planted": None if right else "wrong_answer"}


def mixed_samples(n: int, seed: int = 0, code_share: float = 0.03, choice_share: float = 0.1,
                  noise_share: float = 0.1) -> list[dict]:
    """n samples: math R1 traces (4 per problem, 20% planted errors), multiple choice, code with
    tests, and a share of clean rows broken by one hygiene rule or duplicated."""
    rng = random.Random(seed)
    n_code, n_choice = int(n * code_share), int(n * choice_share)
    n_math = n - n_code - n_choice
    math = teacher_samples(n_math // 4 + len(TASKS), 4, 0.2, seed)[:n_math]
    rows = math + [_choice(i, rng) for i in range(n_choice)] + [_code(i, rng) for i in range(n_code)]
    clean = [i for i, r in enumerate(rows) if r["planted"] is None and r["kind"] == "math"]
    for i in rng.sample(clean, min(len(clean) // 2, int(n * noise_share))):
        noisy = _noise(rows[i], rng)
        if noisy["planted"] == "duplicate":  # overwrite another row with a copy of this one
            j = rng.choice([j for j in range(n_math) if j != i and rows[j]["planted"] is None])
            noisy.update(id=rows[i]["id"] + "-copy", sample_index=rows[i]["sample_index"] + 100)
            rows[j] = noisy
        else:
            rows[i] = noisy
    rng.shuffle(rows)
    return rows
