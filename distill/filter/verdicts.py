"""Pass 1: every sample measured and verified once, its verdict row appended to the store.

    bad = collect_verdicts(cfg, store, index, timings)   # returns the BadRows seen

Samples stream from the inputs in batches of `verify.batch_rows`; a batch's new samples
(ids not yet in the store) get their hygiene measures, text hash, MinHash signature and
decontamination hits here, and their verdicts from `verifiers.VerifierPool` (one `map` per kind
in the batch). Each verdict row is appended and flushed on its own (evals/store.py RowStore), so
a killed run loses at most the batch in flight and a re-run verifies only what is missing.

A verdict's `status`: "ok" (correct or not), "unverifiable" (the reference cannot be parsed:
marked, not counted wrong), or "error" (the verifier timed out, crashed or raised: that row is
marked and the run goes on). Neither of the last two counts toward a pass rate.
"""

from __future__ import annotations

import time
from collections import defaultdict

from tqdm.auto import tqdm

from distill.filter.config import FilterConfig
from distill.filter.decontam import BenchmarkIndex
from distill.filter.dedup import minhash, text_hash
from distill.filter.hygiene import measure
from distill.filter.inputs import BadRow, Sample, SampleReader, iter_samples
from evals.store import RowStore

_ERROR_PREFIXES = ("timeout", "worker crashed", "verifier error", "memory limit", "internal error",
                   "unpicklable input")


def status_of(reason: str) -> str:
    """ok / unverifiable / error from a Verdict reason (verifiers' wording)."""
    if reason.startswith("reference unparseable") or reason.startswith(
            "verifier error: ValueError: code reference"):  # verifiers/code.py parse_tests
        return "unverifiable"
    return "error" if reason.startswith(_ERROR_PREFIXES) else "ok"


def make_reader(cfg: FilterConfig) -> SampleReader:
    return SampleReader(cfg.fields, cfg.kind, cfg.prompt_template, cfg.hygiene.think_in_prompt)


def _record(seq: int, s: Sample, cfg: FilterConfig, hits: list[dict]) -> dict:
    """The verdict row without its verdict (filled in after verification)."""
    return {
        "id": s.id, "seq": seq, "problem_id": s.problem_id, "sample_index": s.sample_index,
        "where": s.where, "source": s.source, "kind": s.kind, "style": s.style,
        "completion_tokens": s.completion_tokens, "tokens_estimated": s.tokens_estimated,
        "reasoning_chars": len(s.reasoning), "contamination": hits,
    }


def _verify_batch(batch: list[tuple[int, Sample]], cfg: FilterConfig, pool, records: dict,
                  timings: dict) -> None:
    """Fill records[id]["verdict"] for one batch: given correctness or one pool.map per kind."""
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for _, s in batch:
        if cfg.verify.use_given and s.given_correct is not None:
            records[s.id]["verdict"] = {"correct": s.given_correct, "score": float(s.given_correct),
                                        "extracted": None, "reason": "given", "status": "ok"}
        else:
            by_kind[s.kind].append(s)
    start = time.perf_counter()
    for kind, samples in by_kind.items():
        options = cfg.verify.options.get(kind, {})
        verdicts = pool.map(kind, [s.completion for s in samples],
                            [s.reference for s in samples], **options)
        for s, v in zip(samples, verdicts):
            records[s.id]["verdict"] = {"correct": bool(v.correct), "score": float(v.score),
                                        "extracted": v.extracted, "reason": v.reason,
                                        "status": status_of(v.reason)}
    timings["verify"] += time.perf_counter() - start
    timings["verified_samples"] += len(batch)


def collect_verdicts(cfg: FilterConfig, store: RowStore, index: BenchmarkIndex,
                     timings: dict) -> tuple[dict[str, int], list[BadRow]]:
    """Run pass 1 over the inputs (see the module docstring). Returns every sample id of this
    run's inputs with its position (stored rows of samples no longer in the inputs are left
    out; positions are this run's, so edited inputs are ordered as they are now) and the bad
    rows."""
    from verifiers import VerifierPool

    bad: list[BadRow] = []
    order: dict[str, int] = {}
    hits_by_problem: dict[str, list[dict]] = {}
    bar = tqdm(desc="filter: verify", unit="row", disable=not cfg.progress, mininterval=0.5,
               smoothing=0.05)
    pool = None
    try:
        seq, batch = 0, []
        samples = iter_samples(cfg.inputs, make_reader(cfg))
        while True:
            start = time.perf_counter()
            item = next(samples, None)
            timings["read"] += time.perf_counter() - start
            if isinstance(item, BadRow):
                bad.append(item)
                bar.update(1)
                continue
            if item is not None:
                order[item.id] = seq
                if (item.id,) not in store:
                    batch.append((seq, item))
                else:
                    bar.update(1)
                seq += 1
                if len(batch) < cfg.verify.batch_rows:
                    continue
            if batch:
                if pool is None:
                    t = time.perf_counter()
                    pool = VerifierPool(workers=cfg.verify.workers, timeout_s=cfg.verify.timeout_s,
                                        progress=False)
                    timings["pool_start"] += time.perf_counter() - t
                _run_batch(batch, cfg, pool, store, index, hits_by_problem, timings)
                bar.update(len(batch))
                batch = []
            if item is None:
                break
    finally:
        bar.close()
        if pool is not None:
            timings["verifier_stats"] = dict(pool.stats)
            pool.close()
    return order, bad


def _run_batch(batch, cfg, pool, store, index, hits_by_problem, timings) -> None:
    t0 = time.perf_counter()
    for _, s in batch:
        if s.problem_id not in hits_by_problem:
            hits_by_problem[s.problem_id] = index.hits(s.problem)
    t1 = time.perf_counter()
    records = {s.id: _record(seq, s, cfg, hits_by_problem[s.problem_id]) for seq, s in batch}
    for _, s in batch:
        records[s.id]["hygiene"] = measure(s, cfg.hygiene)
    t2 = time.perf_counter()
    for _, s in batch:
        records[s.id]["hash"] = text_hash(s.completion)
        records[s.id]["minhash"] = (minhash(s.completion, cfg.dedup.shingle, cfg.dedup.num_perm)
                                    if cfg.dedup.near else None)
    timings["decontam"] += t1 - t0
    timings["hygiene"] += t2 - t1
    timings["dedup_signatures"] += time.perf_counter() - t2
    _verify_batch(batch, cfg, pool, records, timings)
    start = time.perf_counter()
    store.append([records[s.id] for _, s in batch])
    timings["store"] += time.perf_counter() - start
