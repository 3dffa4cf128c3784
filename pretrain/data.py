"""Packed batches over token shards: documents concatenated in a seeded order, cut into rows.

The stream of a split is an endless concatenation of its documents: epoch e in the order
`rng((seed, e)).permutation(N)` for train, in stored order for val (so the held-out loss does not
depend on the seed). Row n is tokens [n*T, (n+1)*T) of that stream. A document may run on into the
next row (and across an epoch boundary the next epoch simply begins).

position_ids count tokens from each document's start, also when a row begins in the middle of one:
the model (model/transformer.py `document_ids`) reads a document boundary wherever a position does
not continue the previous one, confines attention to documents and drops cross-document targets.
A position at row start is always a boundary for the model anyway; continuing it keeps the
tokens' RoPE phases equal to where they were in the document. Positions are bounded by the longest
document, not by seq_len.

Data parallel: global batch k holds rows [k*B*w, (k+1)*B*w); rank r takes rows k*B*w + r + j*w for
j < B, so interleaving the ranks' rows gives exactly the single-process batch of B*w rows.

The loader's position is one integer, the global row count; `state_dict()` is the same on every
rank and also names the epoch, the document (index into that epoch's order) and the offset in it.
"""

from __future__ import annotations

import numpy as np
import torch

from pretrain.shards import ShardSet

STATE_VERSION = 1


class PackedLoader:
    """An endless iterator of {"input_ids", "labels", "position_ids"}: (B, T) int64 tensors.

    labels equal input_ids: the model shifts them itself and ignores targets across documents.
    """

    def __init__(self, shards: ShardSet, batch_size: int, seq_len: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, split: str = "train"):
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"PackedLoader: batch_size and seq_len must be >= 1, got "
                             f"{batch_size} and {seq_len}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"PackedLoader: rank {rank} is not in a world of size {world_size}")
        self.shards, self.split = shards, split
        self.docs = shards.split(split)
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        if split == "val" and self.docs.num_documents == 0:
            raise ValueError(f"{shards.out_dir}: no validation documents; build the shards with "
                             "val_fraction > 0")
        self._lengths = self.docs.doc_lengths
        self._starts = self.docs.doc_starts
        self.epoch_tokens = int(self._lengths.sum())
        # A train batch must not repeat a document; val batches may wrap (it loops by design).
        need = batch_size * world_size * seq_len if split == "train" else seq_len
        if self.epoch_tokens < need:
            what = (f"batch_size {batch_size} x world_size {world_size} x seq_len {seq_len}"
                    if split == "train" else f"one row of seq_len {seq_len}")
            raise ValueError(f"{shards.out_dir}: the {split} split holds {self.epoch_tokens} "
                             f"tokens but one batch needs {need} ({what}); add data or shrink "
                             "the batch")
        self.rows_emitted = 0  # global rows, all ranks together
        self._orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        B, T, w = self.batch_size, self.seq_len, self.world_size
        rows = self.rows_emitted + self.rank + w * np.arange(B, dtype=np.int64)  # (B,)
        stream = (rows[:, None] * T + np.arange(T, dtype=np.int64)).ravel()  # (B*T,)
        docs, offsets = self._locate(stream)
        tokens = self.docs.gather(self._starts[docs] + offsets)
        self.rows_emitted += B * w
        input_ids = torch.from_numpy(tokens.astype(np.int64).reshape(B, T))
        return {"input_ids": input_ids, "labels": input_ids.clone(),
                "position_ids": torch.from_numpy(offsets.reshape(B, T))}

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(document order, cumulative token ends in that order) of one epoch; cached."""
        if epoch not in self._orders:
            n = len(self._lengths)
            if self.split == "val":
                order = np.arange(n)
            else:
                order = np.random.default_rng((self.seed, epoch)).permutation(n)
            self._orders[epoch] = (order, np.cumsum(self._lengths[order]))
        return self._orders[epoch]

    def _locate(self, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Document id and offset inside it for each stream position (vectorised per epoch)."""
        epochs = stream // self.epoch_tokens
        in_epoch = stream - epochs * self.epoch_tokens
        docs = np.empty_like(stream)
        offsets = np.empty_like(stream)
        for epoch in np.unique(epochs).tolist():
            hit = epochs == epoch
            order, ends = self._order(epoch)
            k = np.searchsorted(ends, in_epoch[hit], side="right")  # skips empty documents
            docs[hit] = order[k]
            offsets[hit] = in_epoch[hit] - (ends[k] - self._lengths[order[k]])
        first = int(epochs.min())
        for stale in [e for e in self._orders if e < first]:
            del self._orders[stale]
        return docs, offsets

    def _cursor(self) -> dict:
        """Where the next global row begins: epoch, index into its order, offset in the document."""
        stream = self.rows_emitted * self.seq_len
        epoch = stream // self.epoch_tokens
        order, ends = self._order(epoch)
        k = int(np.searchsorted(ends, stream - epoch * self.epoch_tokens, side="right"))
        offset = stream - epoch * self.epoch_tokens - int(ends[k] - self._lengths[order[k]])
        return {"epoch": int(epoch), "document_cursor": k, "document_offset": int(offset)}

    def state_dict(self) -> dict:
        """Plain ints and strings (JSON- and torch.save-able); identical on every rank."""
        return {"version": STATE_VERSION, "split": self.split, "seed": self.seed,
                "seq_len": self.seq_len, "shards": self.shards.fingerprint,
                "rows_emitted": self.rows_emitted, **self._cursor()}

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` left off. batch_size and world_size may differ; what defines the
        stream (shards, split, seed, seq_len) may not."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r}, expected "
                             f"{STATE_VERSION}")
        mine = {"split": self.split, "seed": self.seed, "seq_len": self.seq_len,
                "shards": self.shards.fingerprint}
        changed = [f"{k} {state.get(k)!r} -> {v!r}" for k, v in mine.items() if state.get(k) != v]
        if changed:
            raise ValueError(f"loader state does not fit this loader ({'; '.join(changed)}); the "
                             f"shards are {self.shards.out_dir}")
        previous, self.rows_emitted = self.rows_emitted, int(state["rows_emitted"])
        cursor = self._cursor()
        saved = {k: state.get(k) for k in cursor}
        if saved != cursor:
            self.rows_emitted = previous
            raise ValueError(f"inconsistent loader state: rows_emitted {self.rows_emitted} is at "
                             f"{cursor}, the state says {saved}")
