"""`run_filter(cfg) -> Path`: teacher samples -> verdicts -> decisions -> SFT set, RL prompts, report.

    out/
      config.yaml        the resolved FilterConfig
      verdicts/          RowStore shards, one verdict row per sample (resume point)
      fingerprint.yaml   the settings the stored verdict rows depend on
      sft.jsonl, sft/    the SFT set (JSONL and datasets.save_to_disk)
      rl_prompts.jsonl   problems in the pass-rate band, for GRPO
      rejected.jsonl     rejected samples and bad input rows, with their reasons
      contamination.jsonl, summary.json, report.md, *.png
      timing.json        rows/s and where the time went

Pass 1 (distill/filter/verdicts.py) streams the inputs through the verifier pool into the
verdict store; pass 2 (decide.py, select.py) decides from the stored rows; pass 3 (outputs.py)
streams the inputs again into the output files. Re-running with the same `out` resumes pass 1
where it stopped and redoes passes 2 and 3, so `kill -9` then a re-run gives the same files as
one uninterrupted run. Thresholds and selection settings may change between runs (they act in
pass 2); settings that change a stored verdict row may not (a ValueError says which).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import yaml

from distill.filter.config import FilterConfig
from distill.filter.decide import decide
from distill.filter.decontam import BenchmarkIndex
from distill.filter.outputs import write_dataset, write_outputs
from distill.filter.report import summarize, write_report
from distill.filter.verdicts import collect_verdicts, make_reader
from distill.filter.writers import write_json_atomic
from evals.store import RowStore
from recipes.config import config_to_dict, save_config

STORE_SHARD_ROWS = 50_000


def _fingerprint(cfg: FilterConfig) -> dict:
    """The settings a stored verdict row depends on (measures, signatures, hits, verdicts)."""
    h, d = cfg.hygiene, cfg.dedup
    return config_to_dict({
        "fields": cfg.fields, "kind": cfg.kind, "prompt_template": cfg.prompt_template,
        "verify_options": cfg.verify.options, "use_given": cfg.verify.use_given,
        "language": h.language, "repetition_n": h.repetition_n, "min_line_chars": h.min_line_chars,
        "think_in_prompt": h.think_in_prompt, "near": d.near, "shingle": d.shingle,
        "num_perm": d.num_perm, "benchmarks": cfg.decontam.benchmarks, "ngram": cfg.decontam.ngram,
    })


def _check_fingerprint(out: Path, cfg: FilterConfig, store: RowStore) -> None:
    path, current = out / "fingerprint.yaml", _fingerprint(cfg)
    if path.exists() and len(store):
        stored = yaml.safe_load(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if changed:
            raise ValueError(f"{out}: its verdict store was made with other settings ({', '.join(changed)}"
                             f"); use a new `out` or delete {out / 'verdicts'} to redo every verdict")
    save_config(current, path)  # atomic, and no `model` import before verification starts


def _check_kinds(cfg: FilterConfig) -> None:
    """Kinds are checked here, not in FilterConfig: verifiers.KINDS may gain kinds at run time."""
    from verifiers import KINDS

    for kind, where in [(cfg.kind, "kind")] + [(k, f"verify.options.{k}") for k in cfg.verify.options]:
        if kind not in KINDS:
            raise ValueError(f"filter: {where}: unknown verifier kind {kind!r}; known: {sorted(KINDS)}")


def run_filter(cfg: FilterConfig) -> Path:
    """Run (or resume) the filter; returns the output directory (see the module docstring)."""
    _check_kinds(cfg)
    out = Path(cfg.out)
    timings: dict = defaultdict(float)
    start = time.perf_counter()
    index = BenchmarkIndex.load(cfg.decontam.benchmarks, cfg.decontam.ngram)
    timings["decontam_index"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    store = RowStore(out / "verdicts", key=lambda r: (r["id"],), shard_rows=STORE_SHARD_ROWS)
    _check_fingerprint(out, cfg, store)
    order, bad = collect_verdicts(cfg, store, index, timings)
    records = {i: {**store.get((i,)), "seq": seq} for i, seq in order.items()}
    if not records:
        first = f" (first: {bad[0].where}: {bad[0].error})" if bad else ""
        raise ValueError(f"filter: no usable samples in {cfg.inputs}{first}")
    t = time.perf_counter()
    decisions, problems = decide(list(records.values()), cfg)
    timings["decide"] = time.perf_counter() - t
    t = time.perf_counter()
    counts = write_outputs(cfg, out, make_reader(cfg), decisions, problems, records)
    timings["write_jsonl"] = time.perf_counter() - t
    t = time.perf_counter()
    if cfg.output.dataset:
        write_dataset(out / "sft.jsonl", out / "sft")
    timings["write_dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = summarize(records, decisions, problems, bad, counts, cfg)
    write_report(out, summary, records, decisions, problems, bad, plots=cfg.output.plots)
    timings["report"] = time.perf_counter() - t
    total = time.perf_counter() - start
    verified = int(timings.pop("verified_samples", 0))
    write_json_atomic(out / "timing.json", {
        "seconds": round(total, 3), "samples": len(records), "verified_this_run": verified,
        "rows_per_s": round(len(records) / total, 2) if total else None,
        "breakdown_s": {k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()},
    })
    return out
