"""Decontamination: training problems sharing a word n-gram with a benchmark question.

    index = BenchmarkIndex.load(["math500=data/math500.jsonl", "synthetic:linear?n=200"], n=8)
    hits = index.hits(problem_text)   # [{benchmark, benchmark_id, overlap, shared_ngrams}]

The s1 / open-r1 rule: lower-cased word 8-grams (a word = a run of letters and digits), any one
shared n-gram flags the problem. Each hit names the benchmark, its problem id, the overlapping
text (the longest run of consecutive shared n-grams, as words of the training problem) and how
many n-grams are shared. Benchmarks are evals benchmark names with a path (`name=path`, loaded
by `evals.benchmarks.load_benchmark`), synthetic names, or plain files whose rows carry a
`problem`/`question`/`Question`/`prompt` column.
"""

from __future__ import annotations

import re
from pathlib import Path

from distill.filter.inputs import BadRow, input_files, iter_file_rows

_WORD = re.compile(r"\w+")
_QUESTION_COLUMNS = ("problem", "question", "Question", "prompt")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _questions(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """(benchmark label, [(problem id, question)]) for one benchmark spec."""
    from evals.benchmarks import SCHEMAS, load_benchmark

    if spec.startswith("synthetic:"):
        bench = load_benchmark(spec)
        return bench.name, [(p.id, p.question) for p in bench.problems]
    name, sep, path = spec.partition("=")
    if sep and name in SCHEMAS:
        bench = load_benchmark(name, path or None)
        return bench.name, [(p.id, p.question) for p in bench.problems]
    if sep:
        raise ValueError(f"decontam benchmark {spec!r}: unknown benchmark {name!r}; use one of "
                         f"{sorted(SCHEMAS)} with =PATH, synthetic:<task>, or a file path")
    out = []
    for file in input_files([spec]):
        for where, row in iter_file_rows(file):
            if isinstance(row, BadRow):
                raise ValueError(f"decontam benchmark {where}: {row.error}")
            column = next((c for c in _QUESTION_COLUMNS if isinstance(row.get(c), str)), None)
            if column is None:
                raise ValueError(f"decontam benchmark {where}: no question column (one of "
                                 f"{_QUESTION_COLUMNS})")
            out.append((str(row.get("id", where)), row[column]))
    return Path(spec).name, out


class BenchmarkIndex:
    def __init__(self, n: int = 8):
        self.n = n
        self._index: dict[str, tuple[str, str]] = {}  # n-gram -> (benchmark, problem id)
        self.sizes: dict[str, int] = {}

    @classmethod
    def load(cls, specs: list[str], n: int = 8) -> "BenchmarkIndex":
        index = cls(n)
        for spec in specs:
            label, questions = _questions(spec)
            index.add(label, questions)
        return index

    def add(self, benchmark: str, questions: list[tuple[str, str]]) -> None:
        self.sizes[benchmark] = self.sizes.get(benchmark, 0) + len(questions)
        for pid, question in questions:
            w = words(question)
            for i in range(len(w) - self.n + 1):
                self._index.setdefault(" ".join(w[i:i + self.n]), (benchmark, pid))

    def __bool__(self) -> bool:
        return bool(self._index)

    def hits(self, text: str) -> list[dict]:
        """One hit per benchmark problem sharing an n-gram with `text` (see the module doc); an
        n-gram found in several benchmark problems is credited to the first one indexed."""
        if not self._index:
            return []
        w = words(text)
        found: dict[tuple[str, str], list[int]] = {}
        for i in range(len(w) - self.n + 1):
            owner = self._index.get(" ".join(w[i:i + self.n]))
            if owner is not None:
                found.setdefault(owner, []).append(i)
        hits = []
        for (benchmark, pid), starts in found.items():
            best_start, best_len, run_start = starts[0], 1, starts[0]
            for prev, cur in zip(starts, starts[1:]):
                if cur != prev + 1:
                    run_start = cur
                if cur - run_start + 1 > best_len:
                    best_start, best_len = run_start, cur - run_start + 1
            overlap = " ".join(w[best_start:best_start + best_len + self.n - 1])
            hits.append({"benchmark": benchmark, "benchmark_id": pid, "overlap": overlap,
                         "shared_ngrams": len(starts)})
        return hits
