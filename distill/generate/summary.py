"""The closing summary of a generate run (printed, and saved as summary.json), and the export of
the sample rows to Parquet or a `datasets` directory.

Summary fields: rows (in the store) against expected (problems x n) and missing; tokens (prompt,
completion, reasoning sums) and completion/reasoning length stats; finish_reasons; truncation_rate
(cut by the token limit, or the reasoning never closed), unclosed_think, format_adherence; this
run's throughput (new rows, elapsed_s, samples_per_s, tokens_per_s) and failures by cause
(http_429, http_5xx, http_4xx, timeout, connection, bad_response, budget), with retries.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from evals.metrics import length_stats, response_stats


def summarize(rows: list[dict], expected: int, run: dict) -> dict:
    """`run`: {new_rows, new_tokens, elapsed_s, failures (cause -> count), retries}."""
    reasons = Counter(r["finish_reason"] for r in rows)
    elapsed = run["elapsed_s"]
    summary = {
        "rows": len(rows), "expected_rows": expected, "missing_rows": max(0, expected - len(rows)),
        "tokens": {"prompt": sum(r["prompt_tokens"] for r in rows),
                   "completion": sum(r["completion_tokens"] for r in rows),
                   "reasoning": sum(r["reasoning_tokens"] or 0 for r in rows)},
        "completion_tokens": length_stats(r["completion_tokens"] for r in rows),
        "reasoning_tokens": length_stats(r["reasoning_tokens"] for r in rows),
        "finish_reasons": dict(sorted(reasons.items())),
        "unclosed_think": sum(not r["think_closed"] for r in rows),
        "truncation_rate": None, "format_adherence": None,
        "run": {"new_rows": run["new_rows"], "elapsed_s": round(elapsed, 3),
                "samples_per_s": run["new_rows"] / elapsed if elapsed > 0 else None,
                "tokens_per_s": run["new_tokens"] / elapsed if elapsed > 0 else None,
                "failures": dict(sorted(run["failures"].items())),
                "failed_samples": sum(run["failures"].values()),
                "retries": run.get("retries", 0)},
    }
    if rows:
        stats = response_stats(rows)
        summary["truncation_rate"] = stats["truncation_rate"]
        summary["format_adherence"] = stats["format_adherence"]
    return summary


def format_summary(s: dict) -> str:
    """A few lines for the terminal."""
    run = s["run"]
    lines = [f"rows {s['rows']}/{s['expected_rows']} ({s['missing_rows']} missing), "
             f"this run {run['new_rows']} in {run['elapsed_s']:.1f}s",
             f"tokens: prompt {s['tokens']['prompt']:,}, completion {s['tokens']['completion']:,}"
             f", reasoning {s['tokens']['reasoning']:,}",
             f"finish reasons: {s['finish_reasons']}, unclosed <think>: {s['unclosed_think']}"]
    if s["truncation_rate"] is not None:
        lines.append(f"truncation rate {s['truncation_rate']:.1%}, "
                     f"format adherence {s['format_adherence']:.1%}")
    if run["samples_per_s"] is not None and run["new_rows"]:
        lines.append(f"throughput {run['samples_per_s']:.2f} samples/s, "
                     f"{run['tokens_per_s']:.1f} tokens/s")
    if run["failed_samples"]:
        lines.append(f"FAILED {run['failed_samples']} samples {run['failures']} "
                     f"(after {run['retries']} retries); re-run the same command to retry them")
    return "\n".join(lines)


def export_rows(rows: list[dict], out: Path, formats: list[str]) -> list[Path]:
    """Write samples.parquet and/or samples_dataset/ (a datasets.save_to_disk directory), each
    built beside its final name and renamed into place."""
    import datasets

    from model.checkpoint import atomic_write

    if not rows or not formats:
        return []
    data = datasets.Dataset.from_list(rows)
    written = []
    if "parquet" in formats:
        path = out / "samples.parquet"
        atomic_write(path, lambda tmp: data.to_parquet(tmp))
        written.append(path)
    if "datasets" in formats:
        path, tmp = out / "samples_dataset", out / ".samples_dataset.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        data.save_to_disk(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        written.append(path)
    return written
