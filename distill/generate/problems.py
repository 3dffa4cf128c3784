"""Problems for teacher generation (and for the filter and GRPO stages): one loader, any source.

    problems = load_problems("data/numina.parquet")                       # schema detected
    problems = load_problems("data/mine.jsonl", {"problem": "q", "reference": "gold", "id": "uid"})
    problems = load_problems("synthetic:arithmetic?n=200")                # train split by default
    problems = load_problems("gsm8k:data/gsm8k_test.jsonl")               # an evals benchmark

Returns `evals.types.Problem`s (id, question, reference, kind, choices, meta).

Sources: a JSONL / JSON / Parquet / CSV file or a `datasets.save_to_disk` directory (read by
`evals.benchmarks`' reader); `synthetic:<task>?n=..&split=..&seed=..&difficulty=..` (split
defaults to train here: generation makes training data); `<benchmark>:<path>` for any
`evals.benchmarks` name (gsm8k, math500, aime24, aime25, amc, gpqa), loaded as eval loads it.

Public schemas load without a field map (the first row's columns pick one):
    NuminaMath / OpenR1-Math / MATH / AIME   problem [Problem], answer [Answer]; without an
                                             answer column the last \\boxed{} of `solution`
    GSM8K                                    question, answer (the gold after the last `####`)
    code (APPS, TACO, CodeContests-style)    question [problem], and tests in input_output /
                                             test_cases / tests (the verifiers' code reference)
    plain                                    question, reference [answer]
A field map names the file's columns for our fields: problem (alias question), reference (alias
answer, tests), id, kind (a column holding math / choice / code); fields it leaves out are
detected as above. `kind` in the call sets one kind for every row.

Ids: the id column (id, ID, unique_id, problem_id, task_id) when the file has one, else `p-` and
the first 12 hex digits of the sha256 of the problem text, so ids survive reordering the file.
A row without an id, or two rows with the same id, is an error naming both rows (`dedupe=True`
keeps the first of rows whose problem text repeats, with a warning, instead).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from evals.types import Problem

FIELDS = ("problem", "reference", "id", "kind")
ALIASES = {"question": "problem", "answer": "reference", "tests": "reference"}
KINDS = ("math", "choice", "code")
ID_COLUMNS = ("id", "ID", "unique_id", "problem_id", "task_id")
TEST_COLUMNS = ("input_output", "test_cases", "tests", "public_tests")


def load_problems(spec: str, field_map: dict | None = None, *, kind: str | None = None,
                  limit: int | None = None, dedupe: bool = False, seed: int = 0) -> list[Problem]:
    """Load and check every problem of `spec` (see the module doc); errors name the row."""
    if not spec:
        raise ValueError("problems: name a file, a datasets directory, a 'synthetic:<task>' spec "
                         "or '<benchmark>:<path>'")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"problems: kind {kind!r} is not one of {KINDS}")
    if limit is not None and limit < 1:
        raise ValueError(f"problems: limit must be >= 1, got {limit}")
    if spec.startswith("synthetic:"):
        problems = _synthetic(spec, seed)
    elif _benchmark_prefix(spec):
        name, path = spec.split(":", 1)
        from evals.benchmarks import load_benchmark

        problems = load_benchmark(name, path, field_map=field_map, seed=seed).problems
    else:
        problems = _from_file(Path(spec), field_map, kind, dedupe)
    if kind is not None:
        for p in problems:
            p.kind = kind
    return problems[:limit] if limit is not None else problems


def _benchmark_prefix(spec: str) -> bool:
    from evals.benchmarks import SCHEMAS

    name = spec.split(":", 1)[0]
    return ":" in spec and name in SCHEMAS and name != "jsonl"


def _synthetic(spec: str, seed: int) -> list[Problem]:
    from evals.benchmarks import load_benchmark

    task, _, query = spec.partition("?")
    if not re.search(r"(^|&)split=", query):
        spec = f"{task}?{query + '&' if query else ''}split=train"
    return load_benchmark(spec, seed=seed).problems


# -- files ---------------------------------------------------------------------------------------

def _columns(first: dict, field_map: dict | None, source: Path) -> dict[str, str | None]:
    """Our field -> the file's column: the field map's, else the schema's (detected from the
    first row's columns; a `kind` column is used when present)."""
    has = first.keys()
    tests = next((c for c in TEST_COLUMNS if c in has), None)
    columns: dict[str, str | None] = {
        "problem": next((c for c in ("problem", "Problem", "question") if c in has), None),
        "reference": tests or next((c for c in ("answer", "Answer", "reference", "solution")
                                    if c in has), None),
        "id": next((c for c in ID_COLUMNS if c in has), None),
        "kind": "kind" if "kind" in has else None}
    for key, column in (field_map or {}).items():
        ours = ALIASES.get(key, key)
        if ours not in FIELDS:
            raise ValueError(f"{source}: field_map key {key!r} is not one of "
                             f"{list(FIELDS)} (or the aliases {sorted(ALIASES)})")
        columns[ours] = column
    if columns["problem"] is None or columns["reference"] is None:
        raise ValueError(f"{source}: cannot tell the schema from the columns {sorted(has)}; give "
                         "a field_map, e.g. {problem: question, reference: answer, id: uid}")
    return columns


def _reference(row: dict, column: str, where: str) -> tuple[str, str]:
    """(reference text, kind) for one row's reference column."""
    value = row[column]
    if column in TEST_COLUMNS or isinstance(value, (dict, list)):
        text = value if isinstance(value, str) else json.dumps(value)
        return text, "code"
    text = str(value).strip()
    if column == "solution" or (column == "answer" and "####" in text):
        text = _gold_from_solution(text, where)
    return text, "math"


def _gold_from_solution(text: str, where: str) -> str:
    """GSM8K's `#### 72`, else the last \\boxed{...} (balanced braces) of a MATH solution."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    start = text.rfind("\\boxed{")
    if start < 0:
        raise ValueError(f"{where}: the solution has no \\boxed{{}} answer and no answer column; "
                         "give a field_map naming the reference column")
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    raise ValueError(f"{where}: unbalanced braces in the solution's \\boxed{{}}")


def _from_file(source: Path, field_map: dict | None, kind: str | None,
               dedupe: bool) -> list[Problem]:
    from evals.benchmarks import read_rows  # the one reader of JSONL/Parquet/CSV/datasets dirs

    if not source.exists():
        raise FileNotFoundError(f"problems: {source}: no such file or directory")
    rows = read_rows(source)
    if not rows:
        raise ValueError(f"{source}: no problems in the file")
    columns = _columns(rows[0][1], field_map, source)
    problems, first_row = [], {}
    for index, (where, row) in enumerate(rows):
        problem = _problem(row, columns, where, kind)
        if problem.meta["id_from"] == "hash" and problem.id in first_row and dedupe:
            warnings.warn(f"{where}: same problem text as {first_row[problem.id]}; dropped",
                          stacklevel=3)
            continue
        if problem.id in first_row:
            hint = " (the same problem text; dedupe: true keeps the first)" \
                if problem.meta["id_from"] == "hash" else ""
            raise ValueError(f"{where}: duplicate problem id {problem.id!r}, first at "
                             f"{first_row[problem.id]}{hint}")
        first_row[problem.id] = where
        problem.meta.update(source=str(source), row=index)
        problems.append(problem)
    return problems


def _problem(row: dict, columns: dict, where: str, kind: str | None) -> Problem:
    def field(name: str, required: bool = True):
        column = columns[name]
        value = row.get(column) if column else None
        if required and (value is None or not str(value).strip()):
            state = "empty" if column in row else "missing"
            raise ValueError(f"{where}: {state} field {column!r} ({name}); the row has "
                             f"{sorted(row)}")
        return value

    question = str(field("problem")).strip()
    reference, detected = ("", "math")
    if columns["reference"] is not None:
        field("reference")
        reference, detected = _reference(row, columns["reference"], where)
    row_kind = field("kind") if columns["kind"] else None
    row_kind = str(row_kind).strip() if row_kind is not None else (kind or detected)
    if row_kind not in KINDS:
        raise ValueError(f"{where}: kind {row_kind!r} is not one of {KINDS}")
    if columns["id"] is not None:
        pid, id_from = str(field("id")).strip(), "column"
    else:
        pid = "p-" + hashlib.sha256(question.encode()).hexdigest()[:12]
        id_from = "hash"
    return Problem(pid, question, reference, row_kind, None, {"id_from": id_from})
