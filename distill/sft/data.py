"""SFT data: read each source (JSONL, Parquet or a `datasets` directory), map its columns onto
one shape, and mix the sources by weight.

One shape for every source, an `Instance`: the conversation before the final assistant turn
(system prompt apart), and that turn split into `reasoning` (inside `<think>`, None when there is
none) and `answer` (after `</think>`). Style and length control (distill/sft/style.py) turn
instances into training conversations.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from distill.sft.config import SFTSource

_THINK = re.compile(r"^\s*<think>\n?(.*?)\n?</think>\s*(.*)$", re.DOTALL)


@dataclass
class Instance:
    """One training example before styling. `turns` end with the user turn the answer replies to."""

    system: str | None
    turns: list[dict]
    reasoning: str | None
    answer: str
    source: str


def split_reasoning(text: str) -> tuple[str | None, str]:
    """'<think>\\nR\\n</think>\\n\\nA' -> (R, A); text without a think block -> (None, text)."""
    match = _THINK.match(text)
    if not match:
        if "<think>" in text or "</think>" in text:
            raise ValueError("unbalanced <think> ... </think> in an assistant turn")
        return None, text
    return match.group(1), match.group(2)


def read_rows(path: str) -> list[dict]:
    """Rows of a .jsonl/.json file, a .parquet file, or a `datasets` save_to_disk directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"sft data {path}: no such file or directory")
    if p.is_dir():
        import datasets

        try:
            data = datasets.load_from_disk(str(p))
        except FileNotFoundError as e:
            raise ValueError(f"sft data {path}: not a `datasets` directory ({e})") from e
        if isinstance(data, datasets.DatasetDict):
            if "train" not in data:
                raise ValueError(f"sft data {path}: dataset has no 'train' split ({list(data)})")
            data = data["train"]
        return list(data)
    if p.suffix == ".parquet":
        import datasets

        return list(datasets.Dataset.from_parquet(str(p)))
    rows = []
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"sft data {path}: line {i}: invalid JSON ({e})") from e
            if not isinstance(row, dict):
                raise ValueError(f"sft data {path}: line {i}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise ValueError(f"sft data {path}: no rows")
    return rows


def _column(row: dict, source: SFTSource, name: str, where: str):
    column = source.fields.get(name, name)
    if column not in row:
        raise ValueError(f"{where}: missing column '{column}' (for {name}); the row has "
                         f"{sorted(row)}; map columns with sft.data[].fields")
    return row[column]


def _text(value, where: str, column: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: column '{column}' must be a string, got {type(value).__name__}")
    return value


def to_instance(row: dict, source: SFTSource, where: str) -> Instance:
    """Map one row by the source's field map (see SFTSource)."""
    fields = source.fields
    system = None
    if "system" in fields:
        system = _column(row, source, "system", where) or None
    if "prompt" in fields or "response" in fields or "reasoning" in fields:
        prompt = _text(_column(row, source, "prompt", where), where, fields.get("prompt", "prompt"))
        turns = [{"role": "user", "content": prompt}]
        if "response" in fields:
            response = _text(_column(row, source, "response", where), where, fields["response"])
            reasoning, answer = _split(response, where)
        else:
            reasoning = _text(_column(row, source, "reasoning", where), where, fields["reasoning"])
            answer = _text(_column(row, source, "answer", where), where, fields.get("answer", "answer"))
        return Instance(system, turns, reasoning, answer, source.path)
    return _from_messages(_column(row, source, "messages", where), system, source, where)


def _split(text: str, where: str):
    try:
        return split_reasoning(text)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def _from_messages(messages, system, source, where) -> Instance:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: messages must be a non-empty list of chat turns")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: each message needs role system/user/assistant and a "
                             f"string content, got {m!r}"[:300])
    if messages[0]["role"] == "system":
        system = system or messages[0]["content"]
        messages = messages[1:]
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ValueError(f"{where}: messages must end with a user turn and the assistant's reply")
    reasoning, answer = _split(messages[-1]["content"], where)
    return Instance(system, [dict(m) for m in messages[:-1]], reasoning, answer, source.path)


def load_source(source: SFTSource, rng: random.Random) -> list[Instance]:
    """The source's instances, cut to max_samples, then scaled by weight (repeats + a sample)."""
    rows = read_rows(source.path)
    if source.max_samples is not None:
        rows = rows[: source.max_samples]
    instances = [to_instance(r, source, f"sft data {source.path}: row {i + 1}")
                 for i, r in enumerate(rows)]
    for inst in instances:
        inst.system = inst.system or source.system_prompt
    whole, frac = divmod(source.weight, 1.0)
    mixed = instances * int(whole)
    mixed += rng.sample(instances, round(frac * len(instances)))
    return mixed


def load_sources(sources: list[SFTSource], seed: int) -> list[Instance]:
    """All sources mixed by weight, shuffled with the recipe seed."""
    if not sources:
        raise ValueError("sft.data: no data sources given")
    rng = random.Random(seed)
    instances = [inst for source in sources for inst in load_source(source, rng)]
    if not instances:
        raise ValueError("sft.data: the sources and weights select no samples")
    rng.shuffle(instances)
    return instances
