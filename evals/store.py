"""The one append-only row store: JSONL rows keyed by a function, flushed one row at a time.

    store = RowStore(out / "samples", key=lambda r: (r["problem_id"], r["sample_index"]),
                     shard_rows=10_000)            # a directory of part-00000.jsonl, ...
    todo = [k for k in wanted if k not in store]    # resume: only what is not written yet
    store.append(rows)                              # each row written and flushed on its own

Used by `distillery eval` (samples.jsonl), `generate` (sharded samples) and `filter` (verdict
rows). A path ending in `.jsonl` is one file; anything else is a directory of numbered shards, new
rows going to the last shard until it holds `shard_rows` rows.

Crash safety: rows are appended with one `write` + `flush` each (and `fsync` with `durable=True`),
so a `kill -9` can cut at most the last line of the shard being written. Opening the store drops
such a cut tail (with a warning: its row is simply redone) and truncates the file back to the last
complete row; a corrupt line anywhere else is an error naming the file and line, never silently
skipped. A key seen twice keeps the first row (a row is never written twice by this class).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Iterator

SHARD_PATTERN = re.compile(r"^part-(\d{5})\.jsonl$")


def read_jsonl_repairing(path: Path) -> list[dict]:
    """Rows of one JSONL file; an incomplete last line (a killed writer) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        warnings.warn(f"{path}: dropping an incomplete last row ({len(data) - end} bytes, a run "
                      "was killed while writing it); it will be redone", stacklevel=3)
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = []
    for lineno, line in enumerate(data[:end].split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON row ({e}); delete that line to "
                             "resume (its row is redone)") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


class RowStore:
    """Append-only keyed JSONL rows in one file or a directory of shards (see the module doc)."""

    def __init__(self, path: str | os.PathLike, key: Callable[[dict], tuple], *,
                 shard_rows: int | None = None, durable: bool = False):
        self.path = Path(path)
        self.key = key
        self.durable = durable
        self.sharded = self.path.suffix != ".jsonl"
        if shard_rows is not None and shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        self.shard_rows = shard_rows
        self.rows: dict[tuple, dict] = {}
        self._shard_index, self._shard_count = 0, 0
        for file in self.files():
            file_rows = read_jsonl_repairing(file)
            for row in file_rows:
                self.rows.setdefault(self._key(row, file), row)
            self._shard_index, self._shard_count = self._number(file), len(file_rows)

    def files(self) -> list[Path]:
        """The store's files in write order."""
        if not self.sharded:
            return [self.path] if self.path.exists() else []
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if SHARD_PATTERN.match(p.name))

    def _number(self, file: Path) -> int:
        match = SHARD_PATTERN.match(file.name)
        return int(match.group(1)) if match else 0

    def _key(self, row: dict, where) -> tuple:
        try:
            return self.key(row)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: row lacks its key field {e}: {str(row)[:200]}") from e

    def __contains__(self, key: tuple) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows.values())

    def get(self, key: tuple) -> dict | None:
        return self.rows.get(key)

    def _target(self) -> Path:
        if not self.sharded:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path
        self.path.mkdir(parents=True, exist_ok=True)
        if self.shard_rows is not None and self._shard_count >= self.shard_rows:
            self._shard_index, self._shard_count = self._shard_index + 1, 0
        return self.path / f"part-{self._shard_index:05d}.jsonl"

    def append(self, rows: list[dict]) -> int:
        """Write each row whose key is new, one flushed line each; returns how many were written."""
        written = 0
        for row in rows:
            key = self._key(row, "row to append")
            if key in self.rows:
                continue
            line = json.dumps(row, ensure_ascii=False) + "\n"
            with open(self._target(), "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            self.rows[key] = row
            self._shard_count += 1
            written += 1
        return written
