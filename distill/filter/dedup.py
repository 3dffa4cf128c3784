"""Exact and near-duplicate samples: a normalised-text hash and MinHash with LSH banding.

    h = text_hash(completion)                          # exact: equal after normalisation
    sig = minhash(completion, shingle=5, num_perm=64)  # near: stored as hex with the verdict
    Deduper(cfg).check(scope_key, h, sig) -> None | (kind, first_key, similarity)

Normalisation: Unicode NFKC, lower case, runs of whitespace to one space. MinHash (Broder 1997)
over the set of word `shingle`-grams: for each of `num_perm` hash functions h_i(x) = (a_i x + b_i)
mod (2^61 - 1), truncated to 32 bits (datasketch's family, seeded), the signature holds the
minimum over the shingles; the share of equal positions in two signatures estimates the Jaccard
similarity of their shingle sets. LSH (bands x rows) finds candidate pairs without comparing all
pairs; a candidate is a duplicate when its estimate reaches `threshold`. The first sample seen
is kept and later ones are marked, so the input order decides.
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib

import numpy as np

from distill.filter.config import DedupConfig

_PRIME = np.uint64((1 << 61) - 1)
_MASK = np.uint64(0xFFFFFFFF)


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def text_hash(text: str) -> str:
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).hexdigest()


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams of the normalised text (the whole text when it has fewer than n words)."""
    words = normalise(text).split(" ")
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


_PERMS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _perms(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if (num_perm, seed) not in _PERMS:
        rng = np.random.RandomState(seed)
        a = rng.randint(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
        b = rng.randint(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
        _PERMS[(num_perm, seed)] = (a, b)
    return _PERMS[(num_perm, seed)]


def minhash(text: str, shingle: int = 5, num_perm: int = 64, seed: int = 1) -> str:
    """The MinHash signature of `text`'s word shingles, as hex (num_perm 32-bit values)."""
    hv = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingles(text, shingle)),
                     dtype=np.uint64)
    a, b = _perms(num_perm, seed)
    with np.errstate(over="ignore"):  # a * x wraps modulo 2^64, as in datasketch
        values = ((hv[:, None] * a[None, :] + b[None, :]) % _PRIME) & _MASK
    return values.min(axis=0).astype("<u4").tobytes().hex()


def similarity(sig_a: str, sig_b: str) -> float:
    """Estimated Jaccard similarity: the share of equal signature positions."""
    a = np.frombuffer(bytes.fromhex(sig_a), dtype="<u4")
    b = np.frombuffer(bytes.fromhex(sig_b), dtype="<u4")
    return float(np.mean(a == b))


class Deduper:
    """Remembers the samples kept so far; `check` says whether a new one duplicates one."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.rows = cfg.num_perm // cfg.bands
        self._exact: dict[tuple, str] = {}
        self._buckets: dict[tuple, list[tuple[str, str]]] = {}

    def check(self, scope: str, key: str, digest: str, sig: str | None):
        """None if (scope, digest, sig) is new (and remember it), else (kind, first_key, sim)."""
        if self.cfg.exact:
            first = self._exact.get((scope, digest))
            if first is not None:
                return "duplicate_exact", first, 1.0
        bands = []
        if self.cfg.near and sig is not None:
            width = 8 * self.rows  # hex characters per band
            bands = [(scope, i, sig[i * width:(i + 1) * width]) for i in range(self.cfg.bands)]
            best = None
            for band in bands:
                for other_key, other_sig in self._buckets.get(band, ()):
                    sim = similarity(sig, other_sig)
                    if sim >= self.cfg.threshold and (best is None or sim > best[2]):
                        best = ("duplicate_near", other_key, sim)
            if best is not None:
                return best
        self._exact.setdefault((scope, digest), key)
        for band in bands:
            self._buckets.setdefault(band, []).append((key, sig))
        return None
