"""Dedup (exact + MinHash near duplicates) against brute-force Jaccard; decontamination finds
planted 8-gram overlaps and nothing in clean text."""

from __future__ import annotations

import json
import random

import pytest

from distill.filter import FilterConfig, run_filter
from distill.filter.config import DedupConfig
from distill.filter.decontam import BenchmarkIndex
from distill.filter.dedup import Deduper, minhash, shingles, similarity, text_hash
from tests.distill.filter_helpers import read_jsonl, sample, write_jsonl

VOCAB = [f"word{i}" for i in range(400)]


def _text(seed: int, n: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _edit(text: str, every: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = text.split()
    for i in range(0, len(words), every):
        words[i] = rng.choice(VOCAB)
    return " ".join(words)


def _jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


@pytest.mark.parametrize("every", [200, 40, 15, 6])
def test_minhash_estimates_jaccard(every):
    a = _text(1)
    b = _edit(a, every)
    est = similarity(minhash(a, num_perm=256), minhash(b, num_perm=256))
    assert est == pytest.approx(_jaccard(a, b), abs=0.1)  # sd sqrt(J(1-J)/256) <= 0.031


def test_exact_duplicates_ignore_case_and_whitespace():
    assert text_hash("The  Answer\nis 5") == text_hash("the answer is 5 ")
    assert text_hash("the answer is 5") != text_hash("the answer is 6")


def test_deduper_flags_planted_near_duplicates_only():
    cfg = DedupConfig(threshold=0.8)
    originals = [_text(s) for s in range(30)]
    near = [_edit(t, 100, seed=i) for i, t in enumerate(originals[:10])]  # 2 words changed
    far = [_edit(t, 12, seed=i) for i, t in enumerate(originals[10:20])]  # 17 words changed
    d = Deduper(cfg)
    for i, t in enumerate(originals):
        assert d.check("", f"o{i}", text_hash(t), minhash(t)) is None
    for i, t in enumerate(near):
        assert _jaccard(t, originals[i]) >= 0.9  # the planted pair really is near
        hit = d.check("", f"n{i}", text_hash(t), minhash(t))
        assert hit is not None and hit[0] == "duplicate_near" and hit[1] == f"o{i}"
    for i, t in enumerate(far):
        assert _jaccard(t, originals[10 + i]) < 0.5
        assert d.check("", f"f{i}", text_hash(t), minhash(t)) is None
    assert d.check("", "x", text_hash(originals[3].upper()), None)[:2] == ("duplicate_exact", "o3")
    assert d.check("other", "y", text_hash(originals[3]), minhash(originals[3])) is None  # scope


def test_dedup_in_a_run_keeps_the_first_and_ignores_copies_of_rejected(tmp_path):
    long = _text(7, 120)
    rows = [sample("a", 0, "5", reasoning=long), sample("a", 1, "5", reasoning=_edit(long, 100)),
            sample("a", 2, "5", reasoning=long.upper()),
            sample("b", 0, "4", reasoning=_text(8, 120)), sample("b", 1, "5", reasoning=_text(8, 120))]
    cfg = FilterConfig(inputs=[str(write_jsonl(tmp_path / "s.jsonl", rows))], out=str(tmp_path / "o"),
                       progress=False)
    cfg.verify.workers, cfg.output.plots, cfg.output.dataset = 1, False, False
    out = run_filter(cfg)
    assert [r["id"] for r in read_jsonl(out / "sft.jsonl")] == ["a/0", "b/1"]
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert rejected["a/1"]["reject_reason"] == "duplicate_near" and rejected["a/1"]["duplicate_of"] == "a/0"
    assert rejected["a/2"]["reject_reason"] == "duplicate_exact"
    assert rejected["b/0"]["reject_reason"] == "incorrect"  # b/1 copies it but b/0 was rejected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duplicates"] == {"exact": 1, "near": 1}


BENCH_Q = ("A train leaves the station at noon traveling at sixty miles per hour toward a city "
           "that is three hundred miles away")


def test_decontam_finds_a_planted_8gram_and_nothing_in_clean_text():
    index = BenchmarkIndex(8)
    index.add("bench", [("b1", BENCH_Q), ("b2", "Completely unrelated question about prime numbers")])
    planted = "Consider this: a train leaves the station at noon, traveling at sixty miles. Find x."
    hits = index.hits(planted)
    # 11 shared words in a row ("a train ... sixty miles"): 11 - 8 + 1 = 4 shared 8-grams
    assert hits == [{"benchmark": "bench", "benchmark_id": "b1", "shared_ngrams": 4,
                     "overlap": "a train leaves the station at noon traveling at sixty miles"}]
    seven = "so a train leaves the station at noon and then something else happens"
    assert index.hits(seven) == []  # 7 shared words only ("a train leaves the station at noon")
    assert index.hits("What is the sum of the first ten positive integers squared?") == []


def test_decontam_in_a_run_reports_every_hit(tmp_path):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"id": "t1", "problem": BENCH_Q},
                                                   {"id": "t2", "problem": "Find all primes p such "
                                                    "that p squared plus two is also a prime number"}])
    rows = [sample("a", 0, "5", problem=BENCH_Q.upper() + "?"),
            sample("b", 0, "5", problem="Find every prime q for which q squared plus two is prime"),
            sample("c", 0, "5", problem="Find all primes p such that p squared plus two is also "
                                        "a prime number"),
            sample("d", 0, "5", problem="How many edges does a cube have?")]
    cfg = FilterConfig(inputs=[str(write_jsonl(tmp_path / "s.jsonl", rows))], out=str(tmp_path / "o"),
                       progress=False)
    cfg.verify.workers, cfg.output.plots, cfg.output.dataset = 1, False, False
    cfg.decontam.benchmarks = [str(bench), "synthetic:arithmetic?n=5&split=test"]
    out = run_filter(cfg)
    assert [r["id"] for r in read_jsonl(out / "sft.jsonl")] == ["b/0", "d/0"]
    hits = read_jsonl(out / "contamination.jsonl")
    assert [(h["problem_id"], h["benchmark"], h["benchmark_id"]) for h in hits] == [
        ("a", "bench.jsonl", "t1"), ("c", "bench.jsonl", "t2")]
    assert hits[0]["overlap"] == " ".join(BENCH_Q.lower().split())
    report = (out / "report.md").read_text()
    assert hits[1]["overlap"] in report and "bench.jsonl" in report


def test_decontam_loads_evals_benchmark_names_with_a_path(tmp_path):
    math500 = write_jsonl(tmp_path / "math500.jsonl", [
        {"problem": BENCH_Q, "answer": "5", "unique_id": "test/algebra/1.json"}])
    index = BenchmarkIndex.load([f"math500={math500}"], 8)
    (hit,) = index.hits("Note that " + BENCH_Q)
    assert hit["benchmark"] == "math500" and hit["benchmark_id"] == "math500-test/algebra/1.json"
    with pytest.raises(ValueError, match="unknown benchmark 'mth500'"):
        BenchmarkIndex.load([f"mth500={math500}"], 8)
