"""Crafted sample rows for the filter tests (the sample-row contract of shared/DESIGN.md)."""

from __future__ import annotations

import json
from pathlib import Path


def sample(pid: str, index: int, answer: str, reference: str = "5", *, reasoning: str | None = None,
           tokens: int | None = None, kind: str = "math", style: str | None = None,
           finish_reason: str = "stop", problem: str | None = None, **extra) -> dict:
    """One sample row; `answer` goes into \\boxed{} for math (raw for other kinds)."""
    reasoning = reasoning if reasoning is not None else f"Working on problem {pid}, attempt {index}."
    answer_text = f"The answer is \\boxed{{{answer}}}." if kind == "math" else answer
    row = {"id": f"{pid}/{index}", "problem_id": pid, "sample_index": index,
           "prompt": [{"role": "user", "content": problem or f"Problem {pid}: what is it?"}],
           "completion": f"<think>\n{reasoning}\n</think>\n\n{answer_text}",
           "finish_reason": finish_reason, "reference": reference, "kind": kind,
           "teacher": {"backend": "test", "model": "crafted", "seed": index}}
    if tokens is not None:
        row["completion_tokens"] = tokens
    if style is not None:
        row["style"] = style
    row.update(extra)
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
