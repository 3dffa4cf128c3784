"""Reading a text corpus: JSONL, Parquet, plain text and local HF dataset directories, one way.

Both `distillery tokenizer` and the shard builder (`pretrain/shards.py`) read their text here, so a
corpus is split into the same documents, in the same order, with the same errors, for both.

A source is a path: a file, a local HF dataset directory (`datasets.save_to_disk` output), a plain
directory (its supported files, recursively, in sorted order) or a glob pattern (`data/*.jsonl`,
sorted). Relative paths are relative to the working directory. Per format, a document is:

    .jsonl / .ndjson   one JSON object per line; its `text_field` string, or, when that field is
                       absent, a chat row's `messages` contents joined with "\\n". Blank lines are
                       skipped; the row index is the 0-based line number (error messages say
                       `line N`, 1-based).
    .parquet           one row; the `text_field` column (or a `messages` column), read in batches.
    .txt               the whole file is one document: paragraph breaks stay inside the text, so
                       packing sees where the author ended a document, not where a paragraph did.
    HF dataset dir     one row of `datasets.load_from_disk(dir)`. A DatasetDict (several splits) is
                       refused: name the split directory (`dir/train`) so no test split leaks in.

Bad input raises `CorpusError` (a ValueError) naming the file, and the line or row where there is
one: a missing path, an empty file, bytes that are not UTF-8, invalid JSON, a missing field or a
field that is not text, an unknown extension.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

JSONL_EXTENSIONS = (".jsonl", ".ndjson")
SUPPORTED_EXTENSIONS = (*JSONL_EXTENSIONS, ".parquet", ".txt")
_HF_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class CorpusError(ValueError):
    """Bad corpus input; the message names the file (and line or row)."""


def expand_sources(sources: Iterable[str | Path]) -> list[Path]:
    """The files and HF dataset directories that `sources` name, in reading order."""
    if isinstance(sources, (str, Path)):
        raise CorpusError(f"sources must be a list of paths, got the single path {str(sources)!r}")
    out: list[Path] = []
    for source in sources:
        text = str(source)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise CorpusError(f"{text}: no file matches this pattern")
            out.extend(p for m in matches for p in _expand_path(m))
        else:
            out.extend(_expand_path(Path(text)))
    return out


def _expand_path(path: Path) -> list[Path]:
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if _is_hf_dataset(path):
        return [path]
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise CorpusError(f"{path}: unknown corpus file type {path.suffix or '(no extension)'!r}; "
                              f"expected one of {', '.join(SUPPORTED_EXTENSIONS)} or an HF dataset directory")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)
    if not files:
        kinds = "/".join(SUPPORTED_EXTENSIONS)
        raise CorpusError(f"{path}: directory holds no HF dataset and no {kinds} files")
    return files


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _HF_DATASET_MARKERS)


def iter_documents(sources: Iterable[str | Path], text_field: str = "text") -> Iterator[tuple[str, int, str]]:
    """Yield `(source_path, row_index, text)` for every document of every source, in order.

    `row_index` is 0-based within its source: the line for JSONL, the row for Parquet and HF
    datasets, 0 for a .txt file. Every path and extension is checked before the first file is
    read, so a typo fails early rather than after an hour of reading.
    """
    for path in expand_sources(sources):
        suffix = path.suffix.lower()
        if path.is_dir():
            yield from _read_hf_dataset(path, text_field)
        elif suffix in JSONL_EXTENSIONS:
            yield from _read_jsonl(path, text_field)
        elif suffix == ".parquet":
            yield from _read_parquet(path, text_field)
        else:
            assert suffix == ".txt", path  # expand_sources lets only supported files through
            yield from _read_txt(path)


def iter_corpus_texts(
    sources: Iterable[str | Path], text_field: str = "text", max_chars: int | None = None
) -> Iterator[str]:
    """The documents' texts; with `max_chars`, stop once that many characters have been yielded
    (the last text is cut to fit), so a tokenizer can be trained on a prefix of a large corpus."""
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"max_chars must be positive or None, got {max_chars}")
    remaining = max_chars
    for _, _, text in iter_documents(sources, text_field):
        if remaining is not None:
            text = text[:remaining]
            remaining -= len(text)
        yield text
        if remaining == 0:
            return


def _document_text(row: dict, text_field: str, where: str) -> str:
    """The text of one JSON object / table row: `text_field`, else a chat row's joined contents."""
    if text_field in row and text_field != "messages":
        value = row[text_field]
        if not isinstance(value, str):
            raise CorpusError(f"{where}: field {text_field!r} is {type(value).__name__}, expected a string")
        return value
    if "messages" in row:
        return _join_messages(row["messages"], where)
    keys = ", ".join(map(repr, list(row)[:10])) or "none"
    raise CorpusError(f"{where}: no field {text_field!r} (and no 'messages'); the row has {keys}. "
                      f"Set text_field to the column that holds the text.")


def _join_messages(messages: Any, where: str) -> str:
    if not isinstance(messages, (list, tuple)):
        raise CorpusError(f"{where}: 'messages' is {type(messages).__name__}, expected a list of chat turns")
    parts = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, (list, tuple)):  # OpenAI-style content parts: keep the text ones
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise CorpusError(f"{where}: messages[{i}] has no string 'content'")
        parts.append(content)
    return "\n".join(parts)


def _read_jsonl(path: Path, text_field: str) -> Iterator[tuple[str, int, str]]:
    seen = False
    with open(path, "rb") as f:
        for index, raw in enumerate(f):
            where = f"{path}: line {index + 1}"
            try:
                line = raw.decode("utf-8-sig" if index == 0 else "utf-8")  # tolerate a BOM
            except UnicodeDecodeError as e:
                bad = f"byte {raw[e.start]:#04x} at column {e.start + 1}"
                raise CorpusError(f"{where}: not UTF-8 ({bad})") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
            if not isinstance(row, dict):
                raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
            seen = True
            yield str(path), index, _document_text(row, text_field, where)
    if not seen:
        raise CorpusError(f"{path}: empty file (no JSON rows)")


def _read_txt(path: Path) -> Iterator[tuple[str, int, str]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = f"byte {data[e.start]:#04x} at offset {e.start}"
        raise CorpusError(f"{path}: line {line}: not UTF-8 ({bad})") from e
    if not text.strip():
        raise CorpusError(f"{path}: empty file")
    yield str(path), 0, text


def _read_parquet(path: Path, text_field: str) -> Iterator[tuple[str, int, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise CorpusError(f"{path}: not a readable Parquet file ({e})") from e
    names = table.schema_arrow.names
    column = text_field if text_field in names and text_field != "messages" else "messages"
    if column not in names:
        raise CorpusError(f"{path}: no column {text_field!r} (and no 'messages'); columns are {names}. "
                          f"Set text_field to the column that holds the text.")
    if table.metadata.num_rows == 0:
        raise CorpusError(f"{path}: empty file (no rows)")
    index = 0
    for batch in table.iter_batches(columns=[column], batch_size=1024):
        for value in batch.column(0).to_pylist():
            yield str(path), index, _document_text({column: value}, text_field, f"{path}: row {index}")
            index += 1


def _read_hf_dataset(path: Path, text_field: str) -> Iterator[tuple[str, int, str]]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:  # a half-written or foreign directory
        raise CorpusError(f"{path}: not a loadable HF dataset directory ({e})") from e
    if isinstance(data, datasets.DatasetDict):
        splits = ", ".join(str(path / s) for s in data)
        raise CorpusError(f"{path}: a DatasetDict with splits {list(data)}; "
                          f"name one split directory: {splits}")
    names = data.column_names
    column = text_field if text_field in names and text_field != "messages" else "messages"
    if column not in names:
        raise CorpusError(f"{path}: no column {text_field!r} (and no 'messages'); columns are {names}. "
                          f"Set text_field to the column that holds the text.")
    if len(data) == 0:
        raise CorpusError(f"{path}: empty dataset (no rows)")
    index = 0
    for batch in data.select_columns([column]).iter(batch_size=1024):
        for value in batch[column]:
            yield str(path), index, _document_text({column: value}, text_field, f"{path}: row {index}")
            index += 1
