"""Accuracy of our math/choice verifiers vs plain Math-Verify on the documented edge-case table.

    python benchmarks/verifier_accuracy.py [--show]

The table is tests/verifiers/cases.py (every case cites its source). "Plain Math-Verify" is what
most pipelines run: `verify(parse(gold), parse(pred))` with Math-Verify's defaults for math, and
`parse(..., [StringExtractionConfig(strings=letters)])` for multiple choice (its README's MCQ
setup). False positives (wrong answer accepted: reward hacking in RL) and false negatives (right
answer rejected: lost data, underestimated models) are counted separately. Cases that set a
policy option (percent="strip", units="match", ...) only have a defined verdict for us, so the
head-to-head rows leave them out and a separate row reports ours on them. Math-Verify runs in a
child process with a hard 30 s limit per case (a hang is counted as a rejection). Our hostile
inputs (power towers, 1 MB outputs, ...) are timed for ours only: Math-Verify hangs on some.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.verifiers.cases import (ALL_CASES, COLLAPSES, EMPTY_SET, HOSTILE,  # noqa: E402
                                   IRRATIONAL_DECIMALS, Case)

# issue 9's held-out classes, reported as rows of their own (they are also in "math" and "all")
CLASSES = {"irrational dec": IRRATIONAL_DECIMALS, "collapses": COLLAPSES, "empty set": EMPTY_SET}
from verifiers import verify  # noqa: E402

MV_CASE_LIMIT_S = 30


def plain_math_verify(case: Case) -> bool:
    import math_verify as mv

    if case.kind == "choice":
        letters = tuple(dict(case.options).get("letters", "ABCD"))
        config = [mv.StringExtractionConfig(strings=letters)]
        return bool(mv.verify(mv.parse(case.reference, config), mv.parse(case.completion, config)))
    return bool(mv.verify(mv.parse(case.reference), mv.parse(case.completion)))


def _timed_mv(case: Case) -> tuple[bool, float]:
    start = time.perf_counter()
    verdict = plain_math_verify(case)
    return verdict, time.perf_counter() - start


def run_math_verify(cases: list[Case]) -> list[tuple[bool, float]]:
    """Plain Math-Verify per case in a worker process that is replaced when a case hangs."""
    ctx = mp.get_context("fork")
    pool, results = ctx.Pool(1), []
    for case in cases:
        job = pool.apply_async(_timed_mv, (case,))
        try:
            results.append(job.get(timeout=MV_CASE_LIMIT_S))
        except mp.TimeoutError:
            pool.terminate()
            pool = ctx.Pool(1)
            results.append((False, float(MV_CASE_LIMIT_S)))
    pool.terminate()
    return results


def run_ours(cases: list[Case]) -> list[tuple[bool, float]]:
    results = []
    for case in cases:
        start = time.perf_counter()
        verdict = verify(case.kind, case.completion, case.reference, **dict(case.options))
        results.append((verdict.correct, time.perf_counter() - start))
    return results


def score(cases: list[Case], results: list[tuple[bool, float]]) -> dict:
    fp = sum(r and not c.expected for c, (r, _) in zip(cases, results))
    fn = sum(c.expected and not r for c, (r, _) in zip(cases, results))
    times = [t for _, t in results]
    return {"n": len(cases), "fp": fp, "fn": fn, "right": len(cases) - fp - fn,
            "accuracy": round((len(cases) - fp - fn) / max(len(cases), 1), 4),
            "mean_ms": round(1000 * sum(times) / max(len(times), 1), 2),
            "max_ms": round(1000 * max(times, default=0.0), 1)}


def machine() -> str:
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python " \
           f"{platform.python_version()}, commit {commit} (+ working tree)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", action="store_true", help="list every case a tool gets wrong")
    args = parser.parse_args()
    from importlib.metadata import version

    mv_version = version("math-verify")
    verify("math", "\\boxed{(x+1)^2}", "x^2+2x+1")  # warm imports and the LaTeX parser
    neutral = [c for c in ALL_CASES if not c.options]
    policy = [c for c in ALL_CASES if c.options]
    ours, theirs = run_ours(neutral), run_math_verify(neutral)
    ours_policy = run_ours(policy)

    rows = []
    for kind in ("math", "choice", "all"):
        idx = [i for i, c in enumerate(neutral) if kind in ("all", c.kind)]
        sub = [neutral[i] for i in idx]
        rows.append((kind, "ours", score(sub, [ours[i] for i in idx])))
        rows.append((kind, f"math-verify {mv_version}", score(sub, [theirs[i] for i in idx])))
    for label, members in CLASSES.items():
        idx = [i for i, c in enumerate(neutral) if c in members]
        sub = [neutral[i] for i in idx]
        rows.append((label, "ours", score(sub, [ours[i] for i in idx])))
        rows.append((label, f"math-verify {mv_version}", score(sub, [theirs[i] for i in idx])))
    rows.append(("policy options", "ours", score(policy, ours_policy)))
    print(f"{'cases':<15} {'verifier':<18} {'n':>4} {'right':>6} {'FP':>4} {'FN':>4} {'acc':>7} "
          f"{'mean ms':>8} {'max ms':>8}")
    for kind, name, s in rows:
        print(f"{kind:<15} {name:<18} {s['n']:>4} {s['right']:>6} {s['fp']:>4} {s['fn']:>4} "
              f"{s['accuracy']:>7.3f} {s['mean_ms']:>8.2f} {s['max_ms']:>8.1f}")

    hostile_s = []
    for h in HOSTILE:
        start = time.perf_counter()
        verify("math", h.completion, h.reference)
        hostile_s.append(time.perf_counter() - start)
    slow = [h.name for h, t in zip(HOSTILE, hostile_s) if t > 0.5]
    print(f"hostile inputs (ours only): {len(HOSTILE)}, max {1000 * max(hostile_s):.1f} ms, "
          f"over 0.5 s: {len(slow)} {slow}")

    if args.show:
        for c, (o, _), (m, _) in zip(neutral, ours, theirs):
            if o != c.expected or m != c.expected:
                print(f"  expected={c.expected!s:5} ours={o!s:5} mv={m!s:5} {c.source} :: "
                      f"{c.reference[:30]!r} vs {c.completion[-50:]!r}")
    summary = {name if kind == "all" else f"{kind}/{name}": s for kind, name, s in rows}
    print(json.dumps({"benchmark": "verifier_accuracy", "date": date.today().isoformat(),
                      "machine": machine(), "command": "python benchmarks/verifier_accuracy.py",
                      "results": summary, "hostile_max_ms": round(1000 * max(hostile_s), 1),
                      "hostile_over_500ms": len(slow)}))


if __name__ == "__main__":
    main()
