"""`distillery filter` end to end: rows/s on mixed samples and where the time goes.

    python benchmarks/filter_throughput.py [--n 10000] [--workers 2] [--repeats 2] [--seed 0]

Data: benchmarks/filter_data.py mixed_samples(n): math R1 traces (4 per problem, 20% planted
wrong answers), 10% multiple choice, 3% code with tests (sandboxed runs), 10% rows broken by a
hygiene rule or duplicated. Every run starts from an empty output directory (nothing resumed) and
includes pool start-up, the three passes, the datasets directory, report and plots; interpreter
start-up and imports are not included.

Candidates, run interleaved (A B A B ...) so machine noise hits both alike: verify.batch_rows
256 (the default) vs 64 (rows per pool.map: smaller batches lose less to a kill but wait more often on the
slowest sample of a batch). Reported: rows/s per candidate (median over repeats), the ratio,
and the time breakdown (timing.json) of the default candidate's median run. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from filter_data import mixed_samples  # noqa: E402

CANDIDATES = {"batch_rows=256": 256, "batch_rows=64": 64}  # 256: the default


def run_once(inputs: Path, out: Path, workers: int, batch_rows: int) -> dict:
    from distill.filter import FilterConfig, run_filter

    shutil.rmtree(out, ignore_errors=True)
    cfg = FilterConfig(inputs=[str(inputs)], out=str(out), progress=False)
    cfg.verify.workers, cfg.verify.batch_rows = workers, batch_rows
    cfg.verify.options = {"code": {"test_timeout_s": 2.0}}
    start = time.perf_counter()
    run_filter(cfg)
    wall = time.perf_counter() - start
    timing = json.loads((out / "timing.json").read_text())
    return {"wall_s": wall, "rows_per_s": timing["samples"] / wall, "timing": timing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import distill.filter.run  # noqa: F401  imports outside the timed region
    import model.checkpoint  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "samples.jsonl"
        with open(inputs, "w", encoding="utf-8") as f:
            for row in mixed_samples(args.n, args.seed):
                f.write(json.dumps(row) + "\n")
        runs = {name: [] for name in CANDIDATES}
        for _ in range(args.repeats):
            for name, batch in CANDIDATES.items():
                runs[name].append(run_once(inputs, Path(tmp) / "out", args.workers, batch))
    rates = {name: statistics.median(r["rows_per_s"] for r in rs) for name, rs in runs.items()}
    default = sorted(runs["batch_rows=256"], key=lambda r: r["rows_per_s"])[args.repeats // 2]
    breakdown = default["timing"]["breakdown_s"]
    total = default["wall_s"]
    breakdown["other"] = round(total - sum(v for v in breakdown.values()
                                           if isinstance(v, (int, float))), 3)
    print(f"{args.n} mixed samples, {args.workers} workers, {args.repeats} repeats")
    for name, rate in rates.items():
        print(f"  {name:>16}: {rate:8.1f} rows/s")
    print(f"where the time goes (batch_rows=256, {total:.1f} s):")
    for key, value in breakdown.items():
        if isinstance(value, (int, float)):
            print(f"  {key:>18}: {value:8.2f} s  {100 * value / total:5.1f}%")
    print(json.dumps({"benchmark": "filter_throughput", "n": args.n, "workers": args.workers,
                      "repeats": args.repeats, "rows_per_s": {k: round(v, 1) for k, v in rates.items()},
                      "ratio_256_over_64": round(rates["batch_rows=256"] / rates["batch_rows=64"], 3),
                      "wall_s": round(total, 2), "breakdown_s": breakdown}))


if __name__ == "__main__":
    main()
