"""Reading teacher samples: files, shards and field maps, one normalised sample at a time.

    for item in iter_samples(cfg):        # Sample(...) or BadRow(where, error), in input order
        ...

Inputs are JSONL files, Parquet files, `datasets.save_to_disk` directories, or directories of
JSONL/Parquet files (a `distillery generate` RowStore: part-00000.jsonl, ...), read row by row
so an input larger than memory streams. A row becomes one Sample per generation: the sample-row
contract (shared/DESIGN.md: id, problem_id, sample_index, prompt, completion, reasoning,
answer_text, finish_reason, completion_tokens, reference, kind, teacher) with `fields` renaming
columns; other shapes are recognised:
- `messages` (chat turns ending with the assistant's; Mixture-of-Thoughts, `distillery data
  synth`): the last assistant turn is the completion, the turns before it the prompt;
- `generations` (a list of completions per problem; OpenR1-Math), with list-valued
  `correct` / `finish_reason` / `completion_tokens` indexed alongside;
- `reasoning` + `answer_text` without a completion: joined into an R1 completion.
Missing ids are derived: problem_id from the problem text's hash, sample_index by order of
appearance within the problem, id = "{problem_id}#{sample_index}". A row that cannot become a
sample (bad JSON, no completion, no reference, unknown kind, duplicate id) is a BadRow naming the
file and line; reading goes on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from verifiers import KINDS
from verifiers.format import split_think

_PARQUET = (".parquet", ".pq")
_JSONL = (".jsonl", ".ndjson", ".json")
# Columns tried, in order, when the field map does not name one.
_DEFAULTS = {"problem": ("problem", "question", "Question"), "reference": ("reference", "answer"),
             "correct": ("correct",), "source": ("source",), "style": ("style",)}
_PER_GENERATION = ("correct", "finish_reason", "completion_tokens", "reasoning", "answer_text",
                   "style")


@dataclass
class BadRow:
    where: str
    error: str


@dataclass
class Sample:
    """One normalised teacher sample (the contract's fields plus where it was read)."""

    id: str
    problem_id: str
    sample_index: int
    where: str
    prompt: list[dict]
    problem: str
    completion: str
    reasoning: str
    answer_text: str
    closed: bool
    finish_reason: str | None
    completion_tokens: int
    tokens_estimated: bool
    reference: object
    kind: str
    source: str
    style: str
    given_correct: bool | None = None
    teacher: object = None
    think_opened: bool = False  # the prompt itself opened `<think>` (the completion starts inside it)


def input_files(paths: list[str]) -> list[Path]:
    """The files (or datasets directories) the inputs name, in order; errors name the input."""
    if not paths:
        raise ValueError("filter: no inputs (set `inputs:` in the recipe or pass --in)")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such input file or directory")
        if path.is_dir() and not (path / "dataset_info.json").exists() \
                and not (path / "dataset_dict.json").exists():
            inner = sorted(p for p in path.iterdir() if p.suffix.lower() in _JSONL + _PARQUET)
            if not inner:
                raise ValueError(f"{path}: directory holds no .jsonl or .parquet files")
            files += inner
        else:
            if path.is_file() and path.suffix.lower() not in _JSONL + _PARQUET:
                raise ValueError(f"{path}: unsupported input type {path.suffix!r}; use .jsonl, "
                                 ".parquet or a directory of them")
            files.append(path)
    return files


def iter_file_rows(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    """(location, row) for every row of one file; a row that is no JSON object is a BadRow."""
    if path.is_dir():
        import datasets

        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            split = "train" if "train" in data else next(iter(data))
            data, path = data[split], path / split
        for i, row in enumerate(data):
            yield f"{path}: row {i + 1}", row
    elif path.suffix.lower() in _PARQUET:
        import pyarrow.parquet as pq

        i = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                i += 1
                yield f"{path}: row {i}", row
    else:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except (ValueError, UnicodeDecodeError) as e:
                    yield where, BadRow(where, f"not a JSON row ({str(e)[:120]})")
                    continue
                yield where, row if isinstance(row, dict) else BadRow(
                    where, f"expected a JSON object, got {type(row).__name__}")


class SampleReader:
    """Turns input rows into Samples with a field map (see the module docstring)."""

    def __init__(self, fields: dict[str, str], kind: str, prompt_template: str,
                 think_in_prompt: bool = False):
        self.fields, self.kind = fields, kind
        self.prompt_template, self.think_in_prompt = prompt_template, think_in_prompt
        self._counts: dict[str, int] = {}  # problem_id -> samples seen (derived sample_index)
        self._seen: dict[str, str] = {}  # id -> where, to report duplicate ids

    def _get(self, row: dict, name: str):
        if name in self.fields:
            return row.get(self.fields[name])
        for column in _DEFAULTS.get(name, (name,)):
            if row.get(column) is not None:
                return row[column]
        return None

    def samples(self, where: str, row: dict) -> list[Sample | BadRow]:
        try:
            return self._samples(where, row)
        except _Bad as e:
            return [BadRow(where, str(e))]

    def _samples(self, where: str, row: dict) -> list[Sample | BadRow]:
        prompt, problem, completion = self._prompt(row), self._get(row, "problem"), None
        completion = self._get(row, "completion")
        messages = row.get("messages") if "completion" not in self.fields else None
        if completion is None and isinstance(messages, list) and messages:
            last = messages[-1]
            if not isinstance(last, dict) or last.get("role") != "assistant":
                raise _Bad("`messages` does not end with an assistant turn")
            completion, prompt = last.get("content"), prompt or messages[:-1]
        if prompt is None and problem is not None:
            prompt = [{"role": "user", "content": self.prompt_template.replace("{problem}",
                                                                               str(problem))}]
        if problem is None and prompt:
            users = [m.get("content") for m in prompt if isinstance(m, dict)
                     and m.get("role") == "user"]
            problem = users[-1] if users else None
        if not prompt or problem is None:
            raise _Bad("no prompt or problem text (map one with `fields`)")
        generations = self._get(row, "generations")
        if generations is not None:
            if not isinstance(generations, list):
                raise _Bad(f"`generations` is {type(generations).__name__}, not a list")
            return [self._one(f"{where} generation {i}", row, prompt, str(problem), text, i)
                    for i, text in enumerate(generations)]
        return [self._one(where, row, prompt, str(problem), completion, None)]

    def _prompt(self, row: dict) -> list[dict] | None:
        prompt = self._get(row, "prompt")
        if prompt is None:
            return None
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
            return prompt
        raise _Bad("`prompt` is neither text nor a list of chat messages")

    def _one(self, where: str, row: dict, prompt: list[dict], problem: str, completion,
             gen: int | None) -> Sample | BadRow:
        def get(name):
            value = self._get(row, name)
            if gen is not None and name in _PER_GENERATION and isinstance(value, list):
                return value[gen] if gen < len(value) else None
            return value

        reasoning, answer = get("reasoning"), get("answer_text")
        if completion is None and reasoning is not None and answer is not None:
            completion = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        if completion is None:
            return BadRow(where, "no completion (no `completion`, `messages`, `generations` or "
                                 "`reasoning` + `answer_text`; map one with `fields`)")
        if not isinstance(completion, str):
            return BadRow(where, f"completion is {type(completion).__name__}, not text")
        kind = get("kind") or self.kind
        if kind not in KINDS:
            return BadRow(where, f"unknown verifier kind {kind!r}; known: {sorted(KINDS)}")
        reference = get("reference")
        if reference is None and kind != "format":
            return BadRow(where, "no reference (gold answer or tests; map one with `fields`)")
        # generate's rows say per row whether the template opened `<think>` in the prompt;
        # other inputs rely on the recipe-wide `hygiene.think_in_prompt`
        opened = row.get("think_opened")
        opened = opened if isinstance(opened, bool) else self.think_in_prompt
        r, a, closed = split_think(completion, opened)
        problem_id = get("problem_id")
        problem_id = str(problem_id) if problem_id is not None else \
            "p-" + hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]
        index = get("sample_index") if gen is None else gen
        count = self._counts.get(problem_id, 0)
        self._counts[problem_id] = count + 1
        index = int(index) if isinstance(index, (int, float)) else count
        sample_id = get("id") if gen is None else None
        sample_id = str(sample_id) if sample_id is not None else f"{problem_id}#{index}"
        if sample_id in self._seen:
            return BadRow(where, f"duplicate id {sample_id!r} (first at {self._seen[sample_id]})")
        self._seen[sample_id] = where
        tokens = get("completion_tokens")
        estimated = not isinstance(tokens, int) or isinstance(tokens, bool)
        given = get("correct")
        return Sample(
            id=sample_id, problem_id=problem_id, sample_index=index, where=where, prompt=prompt,
            problem=problem, completion=completion, reasoning=r or "", answer_text=a,
            closed=closed, finish_reason=get("finish_reason"),
            # ~4 characters per token for English BPE vocabularies when the row has no count
            completion_tokens=max(1, round(len(completion) / 4)) if estimated else tokens,
            tokens_estimated=estimated, reference=reference, kind=kind,
            source=str(get("source") or Path(where.split(":")[0]).name),
            style=str(get("style") or _style(prompt)), teacher=get("teacher"),
            given_correct=bool(given) if isinstance(given, (bool, int)) else None,
            think_opened=opened)


def _style(prompt: list[dict]) -> str:
    """DeepSeek-V3's two sample types (§5.1): with a system prompt asking for reflection
    (`reflective`) or the bare problem (`plain`); a `style` column overrides this."""
    return "reflective" if any(m.get("role") == "system" for m in prompt) else "plain"


class _Bad(Exception):
    pass


def iter_samples(paths: list[str], reader: SampleReader) -> Iterator[Sample | BadRow]:
    """Every Sample (or BadRow) of the inputs, in order."""
    for path in input_files(paths):
        for where, row in iter_file_rows(path):
            if isinstance(row, BadRow):
                yield row
            else:
                yield from reader.samples(where, row)
