"""Math verification throughput: VerifierPool("math") on N workers vs a plain serial Math-Verify loop.

Data: N synthetic but realistic R1-style completions with a label known by construction (the
generator decides whether the written answer equals the gold): `<think>` blocks of arithmetic
chatter (10% holding a wrong `\\boxed{}` as a trap), answers as `\\boxed{}`, GSM8K `####`, "The
answer is", "**Final Answer:**" and Minerva's "Final Answer: The final answer is $x$"; golds are
integers, negatives, fractions, decimals and LaTeX (roots, pi, intervals, polynomials), and right
answers are often written in another form (0.75 for \\frac{3}{4}, \\dfrac, 3/4); 3% are truncated
inside `<think>` (label: wrong). A fraction `--hostile` (default 2%) is hostile: power towers,
1 MB outputs, 20k unclosed braces, deep parentheses, 100000!, 100k-digit numbers, binary junk.

Baseline: for each sample `math_verify.parse("\\boxed{gold}")`, `parse(completion)`, `verify(g, p)`
with Math-Verify's default (signal-based) timeouts, in this process, one after another; the gold is
boxed as verl does. Ours: `VerifierPool(workers, timeout_s).map("math", completions, golds)`, pool
start-up included in its time.

A third run, our verifier serially in this process (skip with --skip-ours-serial), splits the gain
into the verifier's own speed and the pool's parallelism (pool efficiency = serial ours / (pool map
time x workers); 1.0 is perfect scaling).

Reported: both wall times and the speed ratio, samples the pool had to kill at its deadline,
crashes, the slowest sample, and on the non-hostile samples: false positives / false negatives of
each against the label, and our agreement with the label on the samples where Math-Verify matches
the label. A table, then one JSON line last.

    python benchmarks/verifier_throughput.py [--n 10000] [--workers 2] [--timeout 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from datetime import date
from fractions import Fraction

# --- data ----------------------------------------------------------------------------------------

HOSTILE = [
    ("power tower", lambda g: "<think>big</think> \\boxed{9^{9^{9^{9^{9^{9}}}}}}"),
    ("1 MB output", lambda g: "<think>" + "1+1=2. " * 150_000 + "</think> \\boxed{" + str(g + 1) + "}"),
    ("unclosed braces", lambda g: "<think>x</think> \\boxed{" + "{" * 20_000),
    ("deep parentheses", lambda g: "<think>x</think> \\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}"),
    ("factorial", lambda g: "<think>x</think> The answer is $\\boxed{100000!}$"),
    ("100k digits", lambda g: "<think>x</think> \\boxed{" + "9" * 100_000 + "}"),
    ("binary junk", lambda g: "<think>x</think> " + "".join(map(chr, range(0, 256))) * 50),
]


def _int(rng):
    v = rng.choice([rng.randint(0, 100), rng.randint(100, 5000), rng.randint(-60, -1)])
    right = [str(v), f"{v}", f"{v}.0"] if v >= 0 else [str(v), f"{v}"]
    return str(v), right, str(v + rng.choice([-10, -2, -1, 1, 2, 7])), True


def _fraction(rng):
    q = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 20])
    p = rng.choice([k for k in range(1, 3 * q) if Fraction(k, q).denominator == q])
    right = [f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}"]
    if q in (2, 4, 5, 8, 16, 20):
        right.append(str(float(Fraction(p, q))))
    return f"\\frac{{{p}}}{{{q}}}", right, f"\\frac{{{p + 1}}}{{{q}}}", False


def _decimal(rng):
    v = Fraction(rng.randint(1, 99_99), 100)
    text = f"{float(v):.2f}"
    return text, [text, f"\\frac{{{v.numerator}}}{{{v.denominator}}}"], f"{float(v) + 0.1:.2f}", True


def _latex(rng):
    a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11])
    options = [
        (f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"{a} \\sqrt{{{b}}}"], f"{a + 1}\\sqrt{{{b}}}"),
        (f"{a}\\pi", [f"{a}\\pi", f"{a} \\pi"], f"{a + 1}\\pi"),
        (f"\\frac{{\\sqrt{{{b}}}}}{{{a}}}", [f"\\frac{{\\sqrt{{{b}}}}}{{{a}}}",
                                             f"\\dfrac{{\\sqrt{{{b}}}}}{{{a}}}"],
         f"\\frac{{\\sqrt{{{b}}}}}{{{a + 1}}}"),
        (f"({a}, {a + b})", [f"({a}, {a + b})", f"({a},{a + b})"], f"({a}, {a + b + 1})"),
        (f"x^2 + {a}x + {b}", [f"x^2 + {a}x + {b}", f"x^{{2}}+{a}x+{b}"], f"x^2 + {a}x + {b + 1}"),
    ]
    gold, right, wrong = rng.choice(options)
    return gold, right, wrong, False


GOLDS = [(_int, 0.45), (_fraction, 0.2), (_decimal, 0.1), (_latex, 0.25)]
STYLES = [("boxed", 0.45), ("answer is", 0.15), ("gsm8k", 0.15), ("final answer", 0.1),
          ("minerva", 0.15)]


def _reasoning(rng, wrong: str) -> str:
    parts = []
    for _ in range(rng.randint(10, 80)):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        parts.append(rng.choice([
            f"First, {a} + {b} = {a + b}.",
            f"Then multiply: {a} \\times {b} = {a * b}.",
            f"Wait, let me double-check {a} - {b}: that is {a - b}.",
            f"So the ratio is $\\frac{{{a}}}{{{b}}}$, which does not simplify further.",
            "Hmm, let me reconsider the constraint from the problem statement.",
            f"If $x = {b}$ then $x^2 = {b * b}$.",
        ]))
    if rng.random() < 0.1:  # a trap for verifiers that read the thinking
        parts.insert(rng.randrange(len(parts)), f"Maybe the answer is \\boxed{{{wrong}}}? No.")
    return " ".join(parts)


def _answer(style: str, ans: str, plain: bool) -> str:
    math = ans if plain else f"${ans}$"
    return {
        "boxed": f"Therefore, the final answer is $\\boxed{{{ans}}}$.",
        "answer is": f"Putting it together, the answer is {math}.",
        "gsm8k": f"Adding these up gives the total.\n#### {ans}",
        "final answer": f"**Final Answer:** $\\boxed{{{ans}}}$",
        "minerva": f"Final Answer: The final answer is ${ans}$. I hope it is correct.",
    }[style]


def make_data(n: int, seed: int, hostile_frac: float) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if rng.random() < hostile_frac:
            name, make = rng.choice(HOSTILE)
            gold = rng.randint(1, 1000)
            rows.append({"completion": make(gold), "gold": str(gold), "label": False,
                         "hostile": name})
            continue
        make_gold = rng.choices([g for g, _ in GOLDS], [w for _, w in GOLDS])[0]
        gold, right, wrong, plain = make_gold(rng)
        label = rng.random() < 0.6
        ans = rng.choice(right) if label else wrong
        style = rng.choices([s for s, _ in STYLES], [w for _, w in STYLES])[0]
        if style == "gsm8k" and not plain:
            style = "boxed"
        think = _reasoning(rng, wrong)
        if rng.random() < 0.03:  # cut off inside the thinking: no answer
            rows.append({"completion": "<think>\n" + think, "gold": gold, "label": False,
                         "hostile": None})
            continue
        body = f"Here is the solution.\n\n{_answer(style, ans, plain)}"
        text = body if rng.random() < 0.05 else f"<think>\n{think}\n</think>\n\n{body}"
        rows.append({"completion": text, "gold": gold, "label": label, "hostile": None})
    return rows


# --- the two runs --------------------------------------------------------------------------------


def run_pool(rows, workers: int, timeout_s: float):
    from verifiers import VerifierPool

    start = time.monotonic()
    with VerifierPool(workers=workers, timeout_s=timeout_s, progress=True) as pool:
        map_start = time.monotonic()
        verdicts = pool.map("math", [r["completion"] for r in rows], [r["gold"] for r in rows])
        map_s = time.monotonic() - map_start
        stats = dict(pool.stats)
    return verdicts, time.monotonic() - start, map_s, stats


def run_ours_serial(rows):
    """verify_math in this process, one after another: separates the pool's gain from ours."""
    from verifiers import verify

    times = []
    for r in rows:
        t = time.monotonic()
        verify("math", r["completion"], r["gold"])
        times.append(time.monotonic() - t)
    return times


def run_serial(rows):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs whole inputs on timeout
    results, times = [], []
    start = time.monotonic()
    for r in rows:
        t = time.monotonic()
        try:
            ok = bool(verify(parse("\\boxed{" + r["gold"] + "}"), parse(r["completion"])))
        except Exception:
            ok = False
        results.append(ok)
        times.append(time.monotonic() - t)
    return results, time.monotonic() - start, times


# --- report --------------------------------------------------------------------------------------


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        from importlib.metadata import version
        mv = version("math-verify")
    except Exception:
        mv = "unknown"
    return {"date": str(date.today()), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "math_verify": mv,
            "commit": commit}


def _errors(pred: list[bool], label: list[bool]) -> tuple[int, int]:
    fp = sum(p and not y for p, y in zip(pred, label))
    fn = sum(y and not p for p, y in zip(pred, label))
    return fp, fn


def report(rows, verdicts, pool_s, map_s, stats, mv, serial_s, mv_times, ours_times, args) -> dict:
    normal = [i for i, r in enumerate(rows) if not r["hostile"]]
    label = [rows[i]["label"] for i in normal]
    ours = [verdicts[i].correct for i in normal]
    theirs = [mv[i] for i in normal]
    mv_right = [k for k in range(len(normal)) if theirs[k] == label[k]]
    agree = [k for k in mv_right if ours[k] == label[k]]
    our_fp, our_fn = _errors(ours, label)
    mv_fp, mv_fn = _errors(theirs, label)
    hostile = [i for i, r in enumerate(rows) if r["hostile"]]
    hostile_mv_s = sum(mv_times[i] for i in hostile)
    normal_mv_s = serial_s - hostile_mv_s
    ours_s = sum(ours_times) if ours_times else None
    sorted_t = sorted(mv_times)
    result = {
        "benchmark": "verifier_throughput", "n": len(rows), "workers": args.workers,
        "timeout_s": args.timeout, "hostile": len(hostile), "pool_s": round(pool_s, 2),
        "pool_map_s": round(map_s, 2), "serial_mv_s": round(serial_s, 2),
        "speedup": round(serial_s / pool_s, 2),
        "pool_samples_per_s": round(len(rows) / pool_s, 1),
        "serial_samples_per_s": round(len(rows) / serial_s, 1),
        "mv_mean_ms": round(1e3 * serial_s / len(rows), 2),
        "mv_p95_ms": round(1e3 * sorted_t[int(0.95 * (len(sorted_t) - 1))], 2),
        "mv_hostile_s": round(hostile_mv_s, 2),
        "mv_non_hostile_ms": round(1e3 * normal_mv_s / max(len(normal), 1), 2),
        "ours_serial_s": None if ours_s is None else round(ours_s, 2),
        "ours_mean_ms": None if ours_s is None else round(1e3 * ours_s / len(rows), 2),
        "ours_non_hostile_ms": None if ours_s is None else round(
            1e3 * sum(ours_times[i] for i in normal) / max(len(normal), 1), 2),
        "pool_efficiency": None if ours_s is None else round(ours_s / (map_s * args.workers), 2),
        "over_deadline": stats["timeouts"], "crashes": stats["crashes"],
        "max_sample_s": round(stats["max_sample_s"], 3),
        "non_hostile": len(normal), "mv_matches_label": len(mv_right),
        "ours_agree_where_mv_right": len(agree),
        "ours_fp": our_fp, "ours_fn": our_fn, "mv_fp": mv_fp, "mv_fn": mv_fn,
        "hostile_scored_correct": sum(verdicts[i].correct for i in hostile),
    }
    table = [
        ("samples (hostile)", f"{len(rows)} ({len(hostile)})"),
        ("pool wall s (map only)", f"{pool_s:.2f} ({map_s:.2f})  [{args.workers} workers]"),
        ("serial math-verify wall s", f"{serial_s:.2f}  (hostile alone {hostile_mv_s:.2f})"),
        ("speed ratio (serial / pool)", f"{serial_s / pool_s:.2f}x"),
        ("math-verify ms/sample non-hostile", f"{result['mv_non_hostile_ms']:.2f}"),
        ("ours serial ms/sample (non-hostile)",
         "skipped" if ours_s is None else
         f"{result['ours_mean_ms']:.2f} ({result['ours_non_hostile_ms']:.2f})"),
        ("pool efficiency (serial ours / (map s x workers))",
         "skipped" if ours_s is None else f"{result['pool_efficiency']:.2f}"),
        ("samples over the deadline", f"{stats['timeouts']} (crashes {stats['crashes']}, "
                                      f"slowest {stats['max_sample_s']:.3f} s)"),
        ("non-hostile: FP / FN ours", f"{our_fp} / {our_fn}"),
        ("non-hostile: FP / FN math-verify", f"{mv_fp} / {mv_fn}"),
        ("agree with label where MV right", f"{len(agree)}/{len(mv_right)}"),
        ("hostile scored correct (ours)", str(result["hostile_scored_correct"])),
    ]
    width = max(len(k) for k, _ in table)
    print()
    for k, v in table:
        print(f"{k:<{width}}  {v}")
    disagreements = [normal[k] for k in mv_right if ours[k] != label[k]]
    for i in disagreements[:args.show]:
        tail = rows[i]["completion"][-160:].replace("\n", " ")
        print(f"  disagreement #{i}: gold={rows[i]['gold']!r} label={rows[i]['label']} "
              f"ours={verdicts[i].reason!r} extracted={verdicts[i].extracted!r} ...{tail!r}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of completions")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="pool deadline per sample, s")
    parser.add_argument("--hostile", type=float, default=0.02, help="fraction of hostile samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=5, help="disagreements to print")
    parser.add_argument("--skip-ours-serial", action="store_true",
                        help="skip the in-process serial run of our verifier")
    args = parser.parse_args(argv)
    rows = make_data(args.n, args.seed, args.hostile)
    verdicts, pool_s, map_s, stats = run_pool(rows, args.workers, args.timeout)
    ours_times = None if args.skip_ours_serial else run_ours_serial(rows)
    mv, serial_s, mv_times = run_serial(rows)
    result = report(rows, verdicts, pool_s, map_s, stats, mv, serial_s, mv_times, ours_times, args)
    print(json.dumps({**machine(), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
