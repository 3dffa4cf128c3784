"""Benchmark loaders for the real dataset schemas, from local files or local HF dataset directories.

    load_benchmark(name, path=None, *, field_map=None, seed=0, limit=None) -> Benchmark
    format_prompt(benchmark, problem) -> str          the user message text
    shuffle_choices(problem, repeat, seed) -> (choices, gold_letter, permutation)
    with_repeat(problem, repeat, seed) -> Problem     a GPQA problem with repeat `repeat`'s order

Names and schemas (verification-and-eval.md §2.7); column spellings in brackets are also accepted:
    gsm8k      question, answer (rationale ending in `#### 72`; the gold is after the last `####`,
               commas stripped)
    math500    problem, answer (+ solution, subject, level, unique_id)
    aime24/25  problem [Problem], answer [Answer] (+ id [ID]); integer answers lose padding (`004`)
    amc        problem, answer (+ id); AI-MO's dump stores answers as floats (`142.0` -> `142`)
    gpqa       Question, Correct Answer, Incorrect Answer 1..3 (+ Record ID), GPQA's CSV or JSONL
    jsonl      any JSONL/Parquet/HF dir; field_map {question: col, reference: col[, id: col]}
    synthetic:<task>?n=100&split=test&seed=0&difficulty=2   evals/tasks.py; `path` unused
    lcb, humaneval, mbpp   code benchmarks (LiveCodeBench code_generation_lite, HumanEval, MBPP),
               scored by the sandboxed code verifier: evals/code_benchmarks.py
A `field_map` renames the schema fields above to the file's columns for any benchmark.

Files: .jsonl/.ndjson, .json (an array of rows, or JSONL), .parquet, .csv, or a directory saved by
`datasets.save_to_disk` (a DatasetDict must hold one split or a "test" split). Nothing is fetched.

Default k (samples per problem) is kept CPU-friendly; the DeepSeek-R1 README uses 64 for every
sampled benchmark and open-r1 uses AIME 64, MATH-500 4, GPQA-D 8 (§2.4). Ours: gsm8k 1 (1,319
problems), math500 4 (as open-r1), aime24/aime25 16 and amc 8 (30 and 83 problems: one problem
is 3.3 points, so fewer than ~16 samples leaves pass@1 too noisy), gpqa 4 (simple-evals'
n_repeats=4, §2.5), jsonl and synthetic 1. Set `k` in the eval config for the published protocol.

`revision` is the first 16 hex digits of the sha256 of the source bytes (a directory: every file's
relative path and bytes, in sorted order; synthetic: the generated problems).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import itertools
import json
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from evals.types import CHOICE_PROMPT, MATH_PROMPT, Benchmark, Problem

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class _Schema:
    fields: dict[str, tuple[str, ...]]  # schema field -> accepted column spellings, first preferred
    required: tuple[str, ...]
    kind: str
    default_k: int
    template: str
    make: Callable[[str, dict, str], Problem]  # (benchmark name, fields, location) -> Problem


def _number_answer(value) -> str:
    """AIME/AMC golds: `004` -> `4`, `142.0` -> `142`; anything else as text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return str(int(text))
    if re.fullmatch(r"[-+]?\d+\.0+", text):
        return str(int(float(text)))
    return text


def _gsm8k(name: str, row: dict, where: str) -> Problem:
    rationale = str(row["answer"])
    if "####" not in rationale:
        raise ValueError(f"{where}: field 'answer' has no '#### <answer>' line: {rationale[-80:]!r}")
    gold = rationale.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise ValueError(f"{where}: field 'answer' has nothing after '####'")
    return Problem("", str(row["question"]), gold, "math", None, {"rationale": rationale})


def _math500(name: str, row: dict, where: str) -> Problem:
    meta = {k: row[k] for k in ("solution", "subject", "level") if row.get(k) is not None}
    return Problem("", str(row["problem"]), str(row["answer"]).strip(), "math", None, meta)


def _competition(name: str, row: dict, where: str) -> Problem:
    meta = {k: row[k] for k in ("solution", "url", "year") if row.get(k) is not None}
    return Problem("", str(row["problem"]), _number_answer(row["answer"]), "math", None, meta)


def _gpqa(name: str, row: dict, where: str) -> Problem:
    options = [str(row[k]).strip() for k in ("correct", "incorrect1", "incorrect2", "incorrect3")]
    if len(set(options)) != len(options):
        raise ValueError(f"{where}: two options have the same text; the gold would be ambiguous")
    meta = {"options": options, **{k: row[k] for k in ("subdomain", "domain") if row.get(k)}}
    return Problem("", str(row["question"]).strip(), "", "choice", None, meta)


def _custom(name: str, row: dict, where: str) -> Problem:
    return Problem("", str(row["question"]), str(row["reference"]).strip(), "math", None, {})


_COMPETITION = {"problem": ("problem", "Problem"), "answer": ("answer", "Answer"), "id": ("id", "ID"),
                "solution": ("solution", "Solution"), "url": ("url",), "year": ("year",)}
SCHEMAS: dict[str, _Schema] = {
    "gsm8k": _Schema({"question": ("question",), "answer": ("answer",)}, ("question", "answer"),
                     "math", 1, MATH_PROMPT, _gsm8k),
    "math500": _Schema({"problem": ("problem",), "answer": ("answer",), "solution": ("solution",),
                        "subject": ("subject",), "level": ("level",), "id": ("unique_id",)},
                       ("problem", "answer"), "math", 4, MATH_PROMPT, _math500),
    "aime24": _Schema(_COMPETITION, ("problem", "answer"), "math", 16, MATH_PROMPT, _competition),
    "aime25": _Schema(_COMPETITION, ("problem", "answer"), "math", 16, MATH_PROMPT, _competition),
    "amc": _Schema(_COMPETITION, ("problem", "answer"), "math", 8, MATH_PROMPT, _competition),
    "gpqa": _Schema({"question": ("Question",), "correct": ("Correct Answer",),
                     "incorrect1": ("Incorrect Answer 1",), "incorrect2": ("Incorrect Answer 2",),
                     "incorrect3": ("Incorrect Answer 3",), "id": ("Record ID",),
                     "subdomain": ("Subdomain",), "domain": ("High-level domain",)},
                    ("question", "correct", "incorrect1", "incorrect2", "incorrect3"),
                    "choice", 4, CHOICE_PROMPT, _gpqa),
    "jsonl": _Schema({"question": ("question",), "reference": ("reference", "answer"), "id": ("id",)},
                     ("question", "reference"), "math", 1, MATH_PROMPT, _custom),
}
SYNTHETIC_DEFAULT_K = 1
KNOWN = (*SCHEMAS, "lcb", "humaneval", "mbpp", "synthetic:<task>")


# ---------------------------------------------------------------- reading files

def read_rows(path: Path, prefer_split: str = "test") -> list[tuple[str, dict]]:
    """(location, row) pairs from .jsonl/.json/.parquet/.csv or a `datasets` save_to_disk dir (of
    a DatasetDict: its only split, else `prefer_split`); the location names the file and the
    1-based line or row. The one table reader of the suite (benchmarks, problems, SFT data)."""
    path = Path(path)
    if path.is_dir():
        return _read_hf_dir(path, prefer_split)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
        if suffix == ".json" and text.lstrip().startswith("["):
            rows = json.loads(text)
            return [(f"{path}: row {i + 1}", _as_dict(r, f"{path}: row {i + 1}")) for i, r in enumerate(rows)]
        out = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            where = f"{path}: line {i + 1}"
            try:
                out.append((where, _as_dict(json.loads(line), where)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
        return out
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{path}: row {i + 1}", r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:  # GPQA's CSV has multi-line cells
            return [(f"{path}: row {i + 1}", dict(r)) for i, r in enumerate(csv.DictReader(f))]
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .parquet, "
                     ".csv or a datasets.save_to_disk directory")


def _as_dict(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _read_hf_dir(path: Path, prefer_split: str) -> list[tuple[str, dict]]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise ValueError(f"{path}: not a datasets.save_to_disk directory ({e})") from None
    if isinstance(data, datasets.DatasetDict):
        splits = list(data)
        if len(splits) != 1 and prefer_split not in data:
            raise ValueError(f"{path}: a DatasetDict with splits {splits} and no {prefer_split!r} "
                             f"split; name one split directory ({path}/<split>)")
        split = splits[0] if len(splits) == 1 else prefer_split
        data, path = data[split], path / split
    return [(f"{path}: row {i + 1}", r) for i, r in enumerate(data)]


def _revision(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _columns(schema: _Schema, field_map: dict | None, name: str) -> dict[str, tuple[str, ...]]:
    columns = dict(schema.fields)
    for key, column in (field_map or {}).items():
        if key not in columns:
            raise ValueError(f"{name}: field_map key {key!r} is not a field of this benchmark; "
                             f"use one of {sorted(columns)}")
        columns[key] = (column,)
    return columns


def _pick(row: dict, names: tuple[str, ...]):
    for n in names:
        if n in row and row[n] is not None:
            return n, row[n]
    return None, None


# ---------------------------------------------------------------- public API

def load_benchmark(name: str, path: str | None = None, *, field_map: dict | None = None, seed: int = 0,
                   limit: int | None = None) -> Benchmark:
    """Load and check a whole benchmark before anything is generated (see the module docstring)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if name.startswith("synthetic:"):
        if path is not None or field_map:
            warnings.warn(f"{name}: path and field_map are ignored for synthetic benchmarks", stacklevel=2)
        bench = _synthetic(name, seed)
    elif name in SCHEMAS:
        bench = _load_file(name, path, field_map, seed)
    elif name in ("lcb", "humaneval", "mbpp"):
        from evals.code_benchmarks import load_code_benchmark
        bench = load_code_benchmark(name, path, field_map)
    else:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(KNOWN)}")
    if limit is not None:
        bench.problems = bench.problems[:limit]
    return bench


def benchmark_source(name: str, path: str | None) -> Path:
    """The local file or datasets directory of a benchmark; nothing is ever downloaded."""
    if path is None:
        raise ValueError(f"benchmark {name!r} needs a path (a local file or datasets directory; "
                         "nothing is downloaded)")
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory (benchmark {name})")
    return source


def _load_file(name: str, path: str | None, field_map: dict | None, seed: int) -> Benchmark:
    schema = SCHEMAS[name]
    source = benchmark_source(name, path)
    columns = _columns(schema, field_map, name)
    problems, seen = [], set()
    for index, (where, row) in enumerate(read_rows(source)):
        fields = {}
        for key, names in columns.items():
            column, value = _pick(row, names)
            if column is None and key in schema.required:
                spelled = " or ".join(repr(n) for n in names)
                raise ValueError(f"{where}: missing field {spelled} (the row has {sorted(row)})")
            if column is not None:
                if key in schema.required and not str(value).strip():
                    raise ValueError(f"{where}: field {column!r} is empty")
                fields[key] = value
        problem = schema.make(name, fields, where)
        source_id = str(fields.get("id", index))
        pid = f"{name}-{source_id}"
        if pid in seen:  # duplicate ids in the source: keep every row, keyed by its position
            pid = f"{pid}@{index}"
        seen.add(pid)
        problem.id = pid
        problem.meta.update(source=str(source), row=index, source_id=source_id)
        if schema.kind == "choice":
            problem = with_repeat(problem, 0, seed)
        problems.append(problem)
    if not problems:
        raise ValueError(f"{source}: no problems in the file (benchmark {name})")
    return Benchmark(name, problems, schema.template, schema.kind, schema.default_k, _revision(source))


def parse_synthetic(name: str, seed: int = 0) -> dict:
    """"synthetic:arithmetic?n=200&split=test&seed=0&difficulty=2" -> generate() arguments.
    Defaults: n=100, split=test (evaluation is on held-out problems), seed = the loader's seed,
    difficulty=2."""
    from evals.tasks import TASKS

    task, _, query = name[len("synthetic:"):].partition("?")
    if task not in TASKS:
        raise ValueError(f"{name!r}: unknown synthetic task {task!r}; choose one of {sorted(TASKS)}")
    args = {"task": task, "n": 100, "split": "test", "seed": seed, "difficulty": 2}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in ("n", "split", "seed", "difficulty"):
            raise ValueError(f"{name!r}: unknown option {key!r}; use n, split, seed, difficulty")
        try:
            args[key] = value if key == "split" else int(value)
        except ValueError:
            raise ValueError(f"{name!r}: {key} must be an integer, got {value!r}") from None
    return args


def _synthetic(name: str, seed: int) -> Benchmark:
    from evals.tasks import generate

    args = parse_synthetic(name, seed)
    try:
        problems = generate(**args)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None
    canonical = (f"synthetic:{args['task']}?n={args['n']}&split={args['split']}&seed={args['seed']}"
                 f"&difficulty={args['difficulty']}")
    content = json.dumps([[p.id, p.question, p.reference] for p in problems]).encode()
    return Benchmark(canonical, problems, MATH_PROMPT, "math", SYNTHETIC_DEFAULT_K,
                     hashlib.sha256(content).hexdigest()[:16])


def shuffle_choices(problem: Problem, repeat: int, seed: int) -> tuple[list[str], str, list[int]]:
    """The option order for one (question, repeat): choices as presented, the gold letter, and the
    permutation (presented position i shows original option permutation[i]; original 0 is the
    correct answer). Deterministic in (seed, problem.id, repeat). Each question gets its own
    shuffled list of all orderings, and repeat r takes the r-th, so the first n! repeats (24 for
    GPQA's four options) never repeat an order; later repeats draw a fresh random order."""
    options = problem.meta["options"]
    n = len(options)
    if not 2 <= n <= len(LETTERS):
        raise ValueError(f"{problem.id}: {n} options; multiple choice needs 2..{len(LETTERS)}")
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0, got {repeat}")
    orders = list(itertools.permutations(range(n))) if n <= 6 else []
    if repeat < len(orders):
        random.Random(f"choices|{seed}|{problem.id}").shuffle(orders)
        perm = list(orders[repeat])
    else:
        perm = list(range(n))
        random.Random(f"choices|{seed}|{problem.id}|{repeat}").shuffle(perm)
    return [options[j] for j in perm], LETTERS[perm.index(0)], perm


def with_repeat(problem: Problem, repeat: int, seed: int) -> Problem:
    """A copy of a multiple-choice problem presented in repeat `repeat`'s order, with the gold letter
    as reference and the permutation, repeat and seed in meta."""
    choices, gold, perm = shuffle_choices(problem, repeat, seed)
    out = copy.deepcopy(problem)
    out.choices, out.reference = choices, gold
    out.meta.update(permutation=perm, repeat=repeat, shuffle_seed=seed)
    return out


def format_prompt(benchmark: Benchmark, problem: Problem) -> str:
    """The user message: the benchmark's template filled with the question (and lettered choices)."""
    if benchmark.kind == "choice":
        if not problem.choices:
            raise ValueError(f"{problem.id}: a multiple-choice problem without choices")
        choices = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(problem.choices))
        return benchmark.prompt_template.format(question=problem.question, choices=choices)
    return benchmark.prompt_template.format(question=problem.question)
