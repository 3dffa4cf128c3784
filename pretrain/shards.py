"""Token shards on disk: a corpus tokenized once into raw memmaps with document boundaries.

Layout of `out_dir`:

    manifest.json             inputs, dtype, per-shard counts and checksums; `complete` last
    train-00000.bin, ...      tokens, raw little-endian uint16 (vocab <= 2^16) or uint32
    train-00000.idx, ...      int64 start offset of every document in the matching .bin
    val-00000.bin / .idx      the held-out documents, same format

Documents are never split across shards. Each document's split is a pure function of
(`seed`, its ordinal in the corpus stream), so the choice is deterministic and a resumed build
makes the same choice without having seen the rest of the corpus.

Built once, reused: a complete manifest whose inputs match is returned as is; a manifest with other
inputs is an error (a directory never mixes two corpora or tokenizers). Resumable: each shard is
written under a temporary name and renamed when complete, then the manifest, which lists the
completed shards, is replaced atomically; a killed build re-reads the corpus, skips (without
tokenizing) the documents already in completed shards and continues from there (DESIGN: long work
is resumable and writes atomically).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
import xxhash
from tqdm.auto import tqdm

from pretrain.corpus import expand_sources, iter_documents

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
TOKENIZE_BATCH = 256  # documents per tokenizer call: amortises the call overhead


def _shard_committed(path: Path) -> None:
    """Called after each shard is renamed into place (tests patch it to simulate a crash)."""


# -- reading ---------------------------------------------------------------------------------------


class Shard:
    """One .bin/.idx pair. Files are opened lazily as read-only memmaps."""

    def __init__(self, out_dir: Path, entry: dict, dtype: np.dtype):
        self.name, self.split = entry["name"], entry["split"]
        self.bin_path = out_dir / f"{self.name}.bin"
        self.idx_path = out_dir / f"{self.name}.idx"
        self.num_tokens, self.num_documents = entry["num_tokens"], entry["num_documents"]
        self.entry, self.dtype = entry, dtype

    def check(self, verify: bool) -> None:
        """Sizes against the manifest; with `verify`, the content checksums too."""
        for path, size, key in ((self.bin_path, self.num_tokens * self.dtype.itemsize, "bin_xxh3"),
                                (self.idx_path, self.num_documents * 8, "idx_xxh3")):
            if not path.is_file():
                raise ValueError(f"{path}: shard file is missing (listed in {MANIFEST}); "
                                 "rebuild the shards into a fresh directory")
            found = path.stat().st_size
            if found != size:
                raise ValueError(f"{path}: truncated or corrupt shard: {found} bytes on disk, "
                                 f"{MANIFEST} says {size}; rebuild the shards into a fresh "
                                 "directory")
            if verify and _file_checksum(path) != self.entry[key]:
                raise ValueError(f"{path}: checksum mismatch (corrupt shard); "
                                 "rebuild the shards into a fresh directory")

    @cached_property
    def tokens(self) -> np.ndarray:
        if self.num_tokens == 0:  # an empty file cannot be memory-mapped
            return np.zeros(0, self.dtype)
        return np.memmap(self.bin_path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))

    @cached_property
    def starts(self) -> np.ndarray:
        if self.num_documents == 0:
            return np.zeros(0, np.int64)
        return np.memmap(self.idx_path, dtype="<i8", mode="r", shape=(self.num_documents,))


class ShardSplit:
    """The documents of one split, addressed as one token array across its shards in order."""

    def __init__(self, name: str, shards: list[Shard]):
        self.name, self.shards = name, shards
        self.num_tokens = sum(s.num_tokens for s in shards)
        self.num_documents = sum(s.num_documents for s in shards)
        self._token_base = np.cumsum([0] + [s.num_tokens for s in shards])  # (S+1,)

    @cached_property
    def doc_starts(self) -> np.ndarray:
        """(N,) int64: where each document starts in the split's token address space."""
        parts = []
        for shard, base in zip(self.shards, self._token_base):
            starts = np.asarray(shard.starts, dtype=np.int64)
            if len(starts) and (starts[0] != 0 or np.any(np.diff(starts) < 0)
                                or starts[-1] > shard.num_tokens):
                raise ValueError(f"{shard.idx_path}: corrupt document index (offsets must start "
                                 f"at 0, not decrease and stay <= {shard.num_tokens})")
            parts.append(starts + base)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @cached_property
    def doc_lengths(self) -> np.ndarray:
        """(N,) int64 tokens per document."""
        ends = np.concatenate([np.append(s.starts[1:], s.num_tokens) + base
                               for s, base in zip(self.shards, self._token_base)
                               if s.num_documents] or [np.zeros(0, np.int64)])
        return ends.astype(np.int64) - self.doc_starts

    def document(self, i: int) -> np.ndarray:
        """Tokens of document i of this split (a copy, in the shard dtype)."""
        if not 0 <= i < self.num_documents:
            raise IndexError(f"document {i} out of range: the {self.name} split has "
                             f"{self.num_documents}")
        start = int(self.doc_starts[i])
        return self.gather(np.arange(start, start + int(self.doc_lengths[i])))

    def gather(self, addresses: np.ndarray) -> np.ndarray:
        """Tokens at the given split addresses, read from the memmaps one shard at a time."""
        addresses = np.asarray(addresses, dtype=np.int64)
        shard_of = np.searchsorted(self._token_base, addresses, side="right") - 1
        out = np.empty(addresses.shape, dtype=self.shards[0].dtype if self.shards else np.uint32)
        flat_out, flat_addr = out.reshape(-1), addresses.reshape(-1)
        flat_shard = shard_of.reshape(-1)
        by_shard = np.argsort(flat_shard, kind="stable")  # one pass per shard touched
        cuts = np.flatnonzero(np.diff(flat_shard[by_shard])) + 1
        for group in np.split(by_shard, cuts) if len(by_shard) else []:
            s = flat_shard[group[0]]
            flat_out[group] = self.shards[s].tokens[flat_addr[group] - self._token_base[s]]
        return out


class ShardSet:
    """A complete shard directory: `train` and `val` splits plus the manifest.

    `num_tokens` / `num_documents` count both splits; per split use `.train.num_tokens` etc.
    """

    def __init__(self, out_dir: Path, manifest: dict):
        self.out_dir, self.manifest = out_dir, manifest
        self.dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        self.vocab_size: int = manifest["inputs"]["vocab_size"]
        shards = [Shard(out_dir, entry, self.dtype) for entry in manifest["shards"]]
        self.train = ShardSplit("train", [s for s in shards if s.split == "train"])
        self.val = ShardSplit("val", [s for s in shards if s.split == "val"])
        checksums = [e["bin_xxh3"] for e in manifest["shards"]]
        self.fingerprint = xxhash.xxh3_64_hexdigest(
            json.dumps([manifest["inputs"], checksums], sort_keys=True).encode())

    @property
    def shards(self) -> list[Shard]:
        return self.train.shards + self.val.shards

    @property
    def num_tokens(self) -> int:
        return self.train.num_tokens + self.val.num_tokens

    @property
    def num_documents(self) -> int:
        return self.train.num_documents + self.val.num_documents

    def split(self, name: str) -> ShardSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {SPLITS}")
        return getattr(self, name)

    def document(self, i: int, split: str = "train") -> np.ndarray:
        return self.split(split).document(i)


def load_shards(out_dir: str | os.PathLike, verify: bool = False) -> ShardSet:
    """Open a complete shard directory; file sizes always checked, checksums when `verify`."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise ValueError(f"{out / MANIFEST}: no shard manifest; build the shards first "
                         "(pretrain.shards.build_shards)")
    if not manifest.get("complete"):
        raise ValueError(f"{out / MANIFEST}: the shard build is unfinished "
                         f"({len(manifest['shards'])} shards done); call build_shards with the "
                         "same inputs to resume it")
    shard_set = ShardSet(out, manifest)
    for shard in shard_set.shards:
        shard.check(verify)
    return shard_set


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: unreadable shard manifest ({err})") from err
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: shard format version {version!r}, this code reads "
                         f"{FORMAT_VERSION}; rebuild the shards into a fresh directory")
    return manifest


def _file_checksum(path: Path) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


# -- building --------------------------------------------------------------------------------------


def build_shards(sources: list[str], tokenizer, out_dir: str | os.PathLike,
                 text_field: str = "text", shard_tokens: int = 2**24, append_eos: bool = True,
                 prepend_bos: bool = True, val_fraction: float = 0.0, seed: int = 0) -> ShardSet:
    """Tokenize `sources` into shards under `out_dir`, or return the shards already built there.

    tokenizer: an HF tokenizer; called as `tokenizer(texts, add_special_tokens=False)`.
    shard_tokens: a shard is closed once it holds at least this many tokens (whole documents).
    val_fraction: the expected share of documents held out in the `val` split, chosen by `seed`.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise ValueError("build_shards: no sources given")
    if shard_tokens < 1:
        raise ValueError(f"build_shards: shard_tokens must be >= 1, got {shard_tokens}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"build_shards: val_fraction must lie in [0, 1), got {val_fraction}")
    if seed < 0:
        raise ValueError(f"build_shards: seed must be >= 0, got {seed}")
    out = Path(out_dir)
    inputs = _inputs(sources, tokenizer, text_field, shard_tokens, append_eos, prepend_bos,
                     val_fraction, seed)
    manifest = _read_manifest(out)
    if manifest is not None:
        changed = sorted(k for k in inputs.keys() | manifest["inputs"].keys()
                         if inputs.get(k) != manifest["inputs"].get(k))
        if changed:
            raise ValueError(f"{out / MANIFEST}: shards there were built from other inputs "
                             f"(differs: {', '.join(changed)}); pick another out_dir for these "
                             "inputs (a shard directory never mixes corpora)")
        if manifest.get("complete"):
            return load_shards(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"format_version": FORMAT_VERSION, "complete": False, "inputs": inputs,
                    "dtype": inputs["dtype"], "shards": []}
        _write_json_atomic(out / MANIFEST, manifest)
    _Builder(out, manifest, tokenizer, text_field).run(sources)
    return load_shards(out)


def tokenizer_hash(tokenizer) -> str:
    """Hash of the tokenizer's definition (tokenizer.json content, or the vocab for slow ones)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        # Call-time settings that transformers toggles on the backend; not part of the vocab.
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    return xxhash.xxh3_128_hexdigest(json.dumps(spec, sort_keys=True).encode())


def _inputs(sources, tokenizer, text_field, shard_tokens, append_eos, prepend_bos, val_fraction,
            seed) -> dict:
    """Everything the shard bytes depend on; a stored manifest must match it exactly."""
    vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    bos = tokenizer.bos_token_id if prepend_bos else None
    eos = tokenizer.eos_token_id if append_eos else None
    if prepend_bos and bos is None:
        raise ValueError("build_shards: prepend_bos=True but the tokenizer has no bos token")
    if append_eos and eos is None:
        raise ValueError("build_shards: append_eos=True but the tokenizer has no eos token")
    return {
        "sources": [_source_info(s) for s in expand_sources(sources)],
        "text_field": text_field,
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "vocab_size": vocab_size,
        "dtype": "uint16" if vocab_size <= 2**16 else "uint32",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "shard_tokens": shard_tokens,
        "val_fraction": val_fraction,
        "seed": seed,
    }


def _source_info(source) -> dict:
    path = Path(source).resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_dir():  # a local HF dataset directory: every file under it
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"path": str(path), "files": [[str(p.relative_to(path)), p.stat().st_size,
                                              p.stat().st_mtime_ns] for p in files]}
    raise ValueError(f"{source}: corpus source not found")


def _is_val(ordinal: int, seed: int, val_fraction: float) -> bool:
    """A per-document coin with P(val) = val_fraction, fixed by (seed, ordinal)."""
    if val_fraction == 0:
        return False
    return xxhash.xxh3_64_intdigest(str(ordinal).encode(), seed=seed) < val_fraction * 2**64


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]


class _SplitWriter:
    """Accumulates one split's documents and writes them out shard by shard."""

    def __init__(self, out: Path, split: str, dtype: np.dtype, shard_tokens: int, done: list):
        self.out, self.split, self.dtype, self.shard_tokens = out, split, dtype, shard_tokens
        self.index = len(done)
        self.next_ordinal = done[-1]["next_ordinal"] if done else 0  # first doc not yet written
        self.docs: list[np.ndarray] = []
        self.num_tokens = 0

    def add(self, ordinal: int, tokens: np.ndarray) -> dict | None:
        self.docs.append(tokens)
        self.num_tokens += len(tokens)
        self.next_ordinal = ordinal + 1
        return self.flush() if self.num_tokens >= self.shard_tokens else None

    def flush(self) -> dict | None:
        """Write the buffered documents as the next shard; returns its manifest entry."""
        if not self.docs:
            return None
        name = f"{self.split}-{self.index:05d}"
        tokens = np.concatenate(self.docs).astype(self.dtype, copy=False)
        starts = np.cumsum([0] + [len(d) for d in self.docs[:-1]]).astype("<i8")
        entry = {"name": name, "split": self.split, "num_tokens": len(tokens),
                 "num_documents": len(self.docs), "next_ordinal": self.next_ordinal,
                 "bin_xxh3": xxhash.xxh3_64_hexdigest(tokens.tobytes()),
                 "idx_xxh3": xxhash.xxh3_64_hexdigest(starts.tobytes())}
        for suffix, array in ((".bin", tokens), (".idx", starts)):
            final = self.out / f"{name}{suffix}"
            tmp = final.with_name(final.name + ".tmp")
            with open(tmp, "wb") as f:
                array.tofile(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        self.index += 1
        self.docs, self.num_tokens = [], 0
        return entry


class _Builder:
    def __init__(self, out: Path, manifest: dict, tokenizer, text_field: str):
        self.out, self.manifest = out, manifest
        self.tokenizer, self.text_field = tokenizer, text_field
        inputs = manifest["inputs"]
        self.dtype = np.dtype(inputs["dtype"]).newbyteorder("<")
        self.prefix = np.array([] if inputs["bos_token_id"] is None else [inputs["bos_token_id"]],
                               np.int64)
        self.suffix = np.array([] if inputs["eos_token_id"] is None else [inputs["eos_token_id"]],
                               np.int64)
        done = {split: [e for e in manifest["shards"] if e["split"] == split] for split in SPLITS}
        for entry in manifest["shards"]:  # resuming: the completed shards must be intact
            Shard(out, entry, self.dtype).check(verify=False)
        self.writers = {split: _SplitWriter(out, split, self.dtype, inputs["shard_tokens"],
                                            done[split]) for split in SPLITS}

    def run(self, sources) -> None:
        inputs = self.manifest["inputs"]
        seed, val_fraction = inputs["seed"], inputs["val_fraction"]
        pending, num_docs = [], 0
        bar = tqdm(desc=f"shards {self.out.name}", unit="doc", disable=None)
        for ordinal, (source, row, text) in enumerate(iter_documents(sources, self.text_field)):
            num_docs += 1
            split = "val" if _is_val(ordinal, seed, val_fraction) else "train"
            if ordinal < self.writers[split].next_ordinal:
                continue  # already in a completed shard (a resumed build)
            pending.append((ordinal, split, source, row, text))
            if len(pending) == TOKENIZE_BATCH:
                self._write_batch(pending)
                bar.update(len(pending))
                pending = []
        self._write_batch(pending)
        bar.update(len(pending))
        bar.close()
        if num_docs == 0:
            raise ValueError(f"build_shards: the sources hold no documents: {list(sources)}")
        for writer in self.writers.values():
            self._commit(writer.flush())
        self._finish(num_docs)

    def _write_batch(self, pending: list) -> None:
        if not pending:
            return
        ids = _tokenize(self.tokenizer, [p[-1] for p in pending])
        lengths = np.fromiter(map(len, ids), np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), np.int64, count=int(lengths.sum()))
        limit = np.iinfo(self.dtype).max
        if flat.size and (flat.max() > limit or flat.min() < 0):
            bad = next(i for i, row in enumerate(ids) if row and (max(row) > limit or min(row) < 0))
            _, _, source, row, _ = pending[bad]
            raise ValueError(f"{source} row {row}: token id outside 0..{limit} "
                             f"({self.dtype.name} shards); the tokenizer's vocab size is wrong")
        ends = np.cumsum(lengths)
        for (ordinal, split, *_), end, n in zip(pending, ends, lengths):
            doc = np.concatenate([self.prefix, flat[end - n:end], self.suffix]).astype(self.dtype)
            self._commit(self.writers[split].add(ordinal, doc))

    def _commit(self, entry: dict | None) -> None:
        """Record a completed shard in the manifest (atomically), then call the hook."""
        if entry is None:
            return
        self.manifest["shards"].append(entry)
        _write_json_atomic(self.out / MANIFEST, self.manifest)
        _shard_committed(self.out / f"{entry['name']}.bin")

    def _finish(self, num_docs: int) -> None:
        shards = self.manifest["shards"]
        totals = {split: {"num_documents": sum(e["num_documents"] for e in shards
                                               if e["split"] == split),
                          "num_tokens": sum(e["num_tokens"] for e in shards if e["split"] == split)}
                  for split in SPLITS}
        if totals["train"]["num_documents"] == 0:
            raise ValueError(f"build_shards: all {num_docs} documents went to validation; "
                             "lower val_fraction")
        if self.manifest["inputs"]["val_fraction"] > 0 and totals["val"]["num_documents"] == 0:
            warnings.warn(f"build_shards: val_fraction={self.manifest['inputs']['val_fraction']} "
                          f"selected none of {num_docs} documents; the val split is empty",
                          stacklevel=3)
        self.manifest.update(complete=True, splits=totals,
                             created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_json_atomic(self.out / MANIFEST, self.manifest)
