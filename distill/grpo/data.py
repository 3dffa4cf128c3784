"""The GRPO prompt set: rows from `distillery filter` (or any file, or a synthetic task family)
turned into TRL's conversational prompt dataset with the columns the rewards read.

    load_prompts(spec: DataSpec) -> datasets.Dataset
        columns: prompt (chat messages), reference (str; code tests as JSON text), kind,
        problem_id, and where present pass_rate, language, length_budget

Columns are found by our names, then common spellings (prompt | problem | question,
reference | answer), or by `spec.fields` (our name -> the file's column). A row without a prompt
or a reference is an error naming the file and line, before any model is loaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from distill.grpo.config import DataSpec, LengthBudget

SPELLINGS = {"prompt": ("prompt", "problem", "question"), "reference": ("reference", "answer"),
             "kind": ("kind",), "problem_id": ("problem_id", "id"), "pass_rate": ("pass_rate",),
             "language": ("language",)}
BUDGET_TEXT = {"exact": "Think for {n} tokens.", "max": "Think for maximum {n} tokens."}


def _read(spec: DataSpec) -> list[tuple[str, dict]]:
    if spec.path.startswith("synthetic:"):
        from evals.benchmarks import format_prompt, load_benchmark

        bench = load_benchmark(spec.path)
        return [(f"{spec.path}: problem {i}", {"prompt": format_prompt(bench, p), "reference": p.reference,
                                               "kind": p.kind, "problem_id": p.id})
                for i, p in enumerate(bench.problems)]
    from evals.benchmarks import _read_rows  # the one reader of JSONL / Parquet / CSV / HF dirs

    path = Path(spec.path)
    if not path.exists():
        raise FileNotFoundError(f"data.path: {path} does not exist")
    return _read_rows(path)


def _column(row: dict, ours: str, spec: DataSpec, where: str, required: bool):
    if ours in spec.fields:
        theirs = spec.fields[ours]
        if theirs not in row:
            raise ValueError(f"{where}: data.fields maps {ours} to '{theirs}', which the row lacks "
                             f"(columns: {sorted(row)})")
        return row[theirs]
    for name in SPELLINGS.get(ours, (ours,)):
        if name in row and row[name] is not None:
            return row[name]
    if required:
        raise ValueError(f"{where}: no '{ours}' column (looked for {list(SPELLINGS[ours])}; columns: "
                         f"{sorted(row)}); map one with data.fields, e.g. {{{ours}: your_column}}")
    return None


def _messages(prompt, spec: DataSpec, where: str) -> list[dict]:
    if isinstance(prompt, str):
        text = spec.prompt_template.format(question=prompt) if spec.prompt_template else prompt
        system = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
        return system + [{"role": "user", "content": text}]
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in
            ("system", "user", "assistant") for m in prompt):
        raise ValueError(f"{where}: prompt must be text or chat messages "
                         "[{role: system|user|assistant, content: str}, ...]")
    if prompt[-1]["role"] != "user":
        raise ValueError(f"{where}: the last prompt message must be the user's, got {prompt[-1]['role']}")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def add_budget(messages: list[dict], n: int, mode: str) -> list[dict]:
    """The L1 prompt: the last user turn gets " Think for N tokens." (or "maximum N")."""
    last = dict(messages[-1])
    last["content"] = f"{last['content'].rstrip()} {BUDGET_TEXT[mode].format(n=n)}"
    return messages[:-1] + [last]


def _budgets(count: int, lb: LengthBudget) -> list[int]:
    rng = random.Random(f"length-budget:{lb.seed}")
    return [rng.randint(lb.min_tokens, lb.max_tokens) for _ in range(count)]


def prompt_rows(spec: DataSpec) -> list[dict]:
    """The normalised rows (see the module docstring), pass-rate band and limit applied."""
    unknown = set(spec.fields) - set(SPELLINGS)
    if unknown:
        raise ValueError(f"data.fields: unknown column(s) {sorted(unknown)}; ours are {sorted(SPELLINGS)}")
    rows = []
    for where, row in _read(spec):
        pass_rate = _column(row, "pass_rate", spec, where, required=spec.pass_rate is not None)
        if spec.pass_rate is not None and not spec.pass_rate[0] <= float(pass_rate) <= spec.pass_rate[1]:
            continue
        reference = _column(row, "reference", spec, where, required=True)
        out = {"prompt": _messages(_column(row, "prompt", spec, where, required=True), spec, where),
               "reference": reference if isinstance(reference, str) else json.dumps(reference),
               "kind": _column(row, "kind", spec, where, required=False) or "math",
               "problem_id": str(_column(row, "problem_id", spec, where, required=False) or where)}
        for optional in ("pass_rate", "language"):
            value = _column(row, optional, spec, where, required=False)
            if value is not None:
                out[optional] = value
        rows.append(out)
        if spec.limit is not None and len(rows) >= spec.limit:
            break
    if not rows:
        band = f" in the pass_rate band {spec.pass_rate}" if spec.pass_rate else ""
        raise ValueError(f"data.path {spec.path}: no prompts{band}")
    if spec.length_budget is not None:
        for row, n in zip(rows, _budgets(len(rows), spec.length_budget)):
            row["prompt"] = add_budget(row["prompt"], n, spec.length_budget.mode)
            row["length_budget"] = n
    return rows


def load_prompts(spec: DataSpec):
    """The prompt set as a `datasets.Dataset` (what GRPOTrainer takes)."""
    from datasets import Dataset

    rows = prompt_rows(spec)
    columns = sorted({k for r in rows for k in r})
    missing = [c for c in columns if any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"data.path {spec.path}: column(s) {missing} present in some rows only")
    return Dataset.from_list(rows)
