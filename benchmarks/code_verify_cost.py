"""Per-verdict cost of code verification: the pivot_root sandbox vs the old path vs a plain subprocess.

Candidates, timed interleaved (one verdict of each in turn, `--reps` rounds) on the same samples:
  new     verify("code", ...) of this tree: a pivot_root sandbox per sample, one fresh process per
          test, the judge comparing each test's stdout (verifiers/sandbox.py);
  old     the pre-issue-9 verifier (verifiers/code.py + sandbox.py at --old-commit, loaded from git
          into a private module): one namespaced interpreter runs every test of a sample in-process
          and reports forgeable per-test records (no filesystem isolation beyond read-only mounts);
  plain   no isolation at all: `python -I -S -c code` per test via subprocess.run, stdout compared
          with the same outputs_match (what open-r1-style rewards do), a floor for any sandbox.

Workloads: stdin/stdout programs with 1, 10 and 50 tests (APPS/CodeContests style) and a
function-call program with 10 tests (LiveCodeBench functional / HumanEval style). Each candidate
is warmed up once (the new sandbox's one-time probe and ldd scan are excluded).

Reported per workload and candidate: median and p90 ms per sample (one verdict), ms per test, and
the ratios new/old and new/plain of the medians. A table, then one JSON line last.

    python benchmarks/code_verify_cost.py [--reps 20] [--old-commit 2df57dc]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from verifiers import sandbox, verify  # noqa: E402
from verifiers.code import outputs_match, values_match  # noqa: E402

STDIO = "import sys\nn = int(sys.stdin.readline())\nprint(sum(range(n + 1)))\n"
CALL = "def tri(n):\n    return n * (n + 1) // 2\n"


def workloads() -> dict[str, tuple[str, dict]]:
    def stdio(n):
        return {"inputs": [f"{i * 7}\n" for i in range(n)],
                "outputs": [f"{(i * 7) * (i * 7 + 1) // 2}\n" for i in range(n)]}
    call = {"fn_name": "tri", "inputs": [[i] for i in range(10)],
            "outputs": [i * (i + 1) // 2 for i in range(10)]}
    return {"stdio x1": (STDIO, stdio(1)), "stdio x10": (STDIO, stdio(10)),
            "stdio x50": (STDIO, stdio(50)), "call x10": (CALL, call)}


def completion(code: str) -> str:
    return f"<think>done</think>\n```python\n{code}```\n"


def load_old(commit: str):
    """The old verify_code, from git, as a private module pair (old_sandbox, old_code)."""
    tmp = tempfile.mkdtemp(prefix="old-verifier-")
    sources = {}
    for name in ("sandbox", "code"):
        text = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:verifiers/{name}.py"],
                              capture_output=True, text=True, check=True).stdout
        sources[name] = text.replace("from verifiers import sandbox",
                                     "import old_sandbox as sandbox")
    for name, text in sources.items():
        with open(os.path.join(tmp, f"old_{name}.py"), "w") as f:
            f.write(text)
    sys.path.insert(0, tmp)
    modules = {}
    for name in ("sandbox", "code"):
        spec = importlib.util.spec_from_file_location(f"old_{name}",
                                                      os.path.join(tmp, f"old_{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules["code"].verify_code


def plain(code: str, reference: dict) -> bool:
    """One unisolated `python -I -S -c` per test; the baseline every sandbox costs more than."""
    call = "fn_name" in reference
    ok = True
    for inp, out in zip(reference["inputs"], reference["outputs"]):
        if call:
            program = code + f"\nimport json\nprint(json.dumps({reference['fn_name']}(*{inp!r})))"
            stdin = ""
        else:
            program, stdin = code, inp
        res = subprocess.run([sys.executable, "-I", "-S", "-c", program], input=stdin,
                             capture_output=True, text=True, timeout=6)
        if call:
            ok &= res.returncode == 0 and values_match(json.loads(res.stdout or "null"), out)
        else:
            ok &= res.returncode == 0 and outputs_match(res.stdout, out)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="rounds of one verdict per candidate")
    parser.add_argument("--old-commit", default="2df57dc",
                        help="the commit holding the old verifier (before issue 9)")
    parser.add_argument("--skip-old", action="store_true")
    args = parser.parse_args()

    candidates = {"new": lambda c, r: verify("code", completion(c), r).correct,
                  "plain": plain}
    if not args.skip_old:
        old = load_old(args.old_commit)
        candidates["old"] = lambda c, r: old(completion(c), r).correct
    print(f"new sandbox tier: {sandbox.isolation()}")
    times = {w: {c: [] for c in candidates} for w in workloads()}
    for w, (code, ref) in workloads().items():  # warm-up; also checks every candidate is right
        for c, fn in candidates.items():
            if not fn(code, ref):
                raise SystemExit(f"{c} judged the honest {w} program wrong")
    for _ in range(args.reps):
        for w, (code, ref) in workloads().items():
            for c, fn in candidates.items():
                start = time.perf_counter()
                fn(code, ref)
                times[w][c].append(1000 * (time.perf_counter() - start))

    results = {}
    print(f"{'workload':<10} {'candidate':<6} {'median ms':>10} {'p90 ms':>8} {'ms/test':>8}")
    for w, (code, ref) in workloads().items():
        n = len(ref["inputs"])
        row = {}
        for c in candidates:
            xs = sorted(times[w][c])
            med, p90 = statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]
            row[c] = {"median_ms": round(med, 2), "p90_ms": round(p90, 2),
                      "ms_per_test": round(med / n, 2)}
            print(f"{w:<10} {c:<6} {med:>10.1f} {p90:>8.1f} {med / n:>8.2f}")
        for base in ("old", "plain"):
            if base in row:
                row[f"new/{base}"] = round(row["new"]["median_ms"] / row[base]["median_ms"], 3)
        results[w] = row
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(json.dumps({"benchmark": "code_verify_cost", "date": date.today().isoformat(),
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                                 f"{platform.python_version()}, commit {commit}",
                      "tier": sandbox.isolation().tier, "reps": args.reps,
                      "command": "python benchmarks/code_verify_cost.py", "results": results}))


if __name__ == "__main__":
    main()
