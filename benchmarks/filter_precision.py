"""Precision and recall of `distillery filter` against planted errors (a quality measurement).

    python benchmarks/filter_precision.py [--n 2000] [--error-rate 0.2] [--seed 0] [--workers 2]

Data 1: `distillery data synth --style r1 --error-rate R` rows (distill.cli.data.synth_rows) for
every synthetic family, n/5 problems each; a row's `planted_error` says whether its trace carries
a planted, propagated wrong step (evals/solutions.py). Data 2: the mixed set of
benchmarks/filter_data.py (math traces 4 per problem, multiple choice, code with tests, and rows
broken by one hygiene rule or duplicated), labelled likewise.

For each, run_filter with policy `all`, then:
- precision on kept rows: kept rows without a planted wrong answer / kept rows (target >= 0.99);
- recall: rows with a planted wrong answer that were rejected / rows with one;
- clean kept: clean rows kept / clean rows (what the filter costs in good data; a planted copy
  that comes first in the input is kept and its clean original rejected as the duplicate);
- noise rejected: rows broken by a hygiene rule or duplicated that were rejected, per kind.
A table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from filter_data import mixed_samples  # noqa: E402


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def measure(rows: list[dict], label, workdir: Path, workers: int) -> dict:
    from distill.filter import FilterConfig, run_filter

    _write(workdir / "in.jsonl", rows)
    cfg = FilterConfig(inputs=[str(workdir / "in.jsonl")], out=str(workdir / "out"), progress=False)
    cfg.verify.workers = workers
    cfg.output.plots = cfg.output.dataset = False
    out = run_filter(cfg)
    kept = {json.loads(line)["id"] for line in open(out / "sft.jsonl", encoding="utf-8")}
    reasons = {json.loads(line).get("id"): json.loads(line)["reject_reason"]
               for line in open(out / "rejected.jsonl", encoding="utf-8")}
    wrong = [r for r in rows if label(r) == "wrong_answer"]
    clean = [r for r in rows if label(r) is None]
    noise = Counter(label(r) for r in rows if label(r) not in (None, "wrong_answer"))
    noise_rejected = Counter(label(r) for r in rows
                             if label(r) not in (None, "wrong_answer") and r["id"] not in kept)
    kept_wrong = sum(r["id"] in kept for r in wrong)
    return {
        "rows": len(rows), "kept": len(kept), "planted_wrong": len(wrong),
        "kept_with_planted_wrong": kept_wrong,
        "precision": round(1 - kept_wrong / len(kept), 5) if kept else None,
        "recall": round(sum(r["id"] not in kept for r in wrong) / len(wrong), 5) if wrong else None,
        "clean_kept": round(sum(r["id"] in kept for r in clean) / len(clean), 5) if clean else None,
        "noise_rejected": {k: f"{noise_rejected[k]}/{v}" for k, v in sorted(noise.items())},
        "reasons_for_planted_wrong": dict(Counter(reasons.get(r["id"], "kept") for r in wrong)),
        "reasons_for_clean_rejected": dict(Counter(reasons[r["id"]] for r in clean
                                                   if r["id"] not in kept)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--error-rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from distill.cli.data import synth_rows
    from evals.tasks import TASKS

    synth = []
    for task in sorted(TASKS):
        synth += synth_rows(task, args.n // len(TASKS), "train", args.seed, 3, "r1", args.error_rate)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "synth").mkdir()
        (Path(tmp) / "mixed").mkdir()
        results["data_synth"] = measure(
            synth, lambda r: "wrong_answer" if r["planted_error"] else None, Path(tmp) / "synth",
            args.workers)
        results["mixed"] = measure(mixed_samples(args.n, args.seed), lambda r: r["planted"],
                                   Path(tmp) / "mixed", args.workers)
    print("| data | rows | kept | planted wrong | kept with planted wrong | precision | recall | "
          "clean kept |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']} | {r['kept']} | {r['planted_wrong']} | "
              f"{r['kept_with_planted_wrong']} | {r['precision']} | {r['recall']} | {r['clean_kept']} |")
    print(json.dumps({"benchmark": "filter_precision", "n": args.n, "error_rate": args.error_rate,
                      "seed": args.seed, **results}))


if __name__ == "__main__":
    main()
