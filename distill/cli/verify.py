"""`distillery verify`: score a JSONL or Parquet file of samples with a verifier.

    distillery verify --in samples.jsonl --out scored.jsonl --kind math \
        [--completion-field completion --reference-field reference --workers N --timeout S \
         --option key=value ...]

Every input row is written back unchanged plus one nested column, `verdict`:
`{"kind", "correct", "score", "extracted", "reason"}` (a struct column in Parquet). Nested rather
than flat so a dataset's own `score` or `reason` field is never overwritten; an existing `verdict`
is replaced. The output format follows --out's extension (.jsonl/.json or .parquet) and is written
to a temp file in the same directory, then renamed. A summary goes to stdout: count, accuracy,
mean score, a histogram of reasons ("runtime error: ..." grouped by their prefix) and the rate.
A row without the completion or reference field is a ValueError naming the row and field.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from model.checkpoint import atomic_write
from verifiers import KINDS

_JSONL = (".jsonl", ".json")
_PARQUET = (".parquet", ".pq")


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="score a JSONL/Parquet file of samples with a verifier",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--in", dest="input", required=True, metavar="FILE", help="JSONL or Parquet")
    p.add_argument("--out", required=True, metavar="FILE", help="JSONL or Parquet (by extension)")
    p.add_argument("--kind", required=True, choices=sorted(KINDS), help="verifier kind")
    p.add_argument("--completion-field", default="completion", metavar="F")
    p.add_argument("--reference-field", default="reference", metavar="F")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="hard deadline per sample in seconds (default 10)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="verifier option, value parsed as JSON if it can be (repeatable), "
                        "e.g. --option test_timeout_s=2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from verifiers import VerifierPool

    options = parse_options(args.option)
    _format(args.out)  # a bad output name fails before any work
    rows = read_rows(args.input)
    completions, references = [], []
    for i, row in enumerate(rows, 1):
        for field in (args.completion_field, args.reference_field):
            if field not in row:
                raise ValueError(f"{args.input}: row {i} has no field {field!r} "
                                 f"(fields: {', '.join(sorted(map(str, row))) or 'none'})")
        completions.append(row[args.completion_field])
        references.append(row[args.reference_field])
    start = time.monotonic()
    with VerifierPool(workers=args.workers, timeout_s=args.timeout,
                      progress=not args.no_progress) as pool:
        verdicts = pool.map(args.kind, completions, references, **options)
    elapsed = time.monotonic() - start
    for row, v in zip(rows, verdicts):
        row["verdict"] = {"kind": args.kind, "correct": v.correct, "score": v.score,
                          "extracted": v.extracted, "reason": v.reason}
    write_rows(args.out, rows)
    print(summary(verdicts, elapsed, args.out))
    return 0


def parse_options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _format(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in _JSONL:
        return "jsonl"
    if suffix in _PARQUET:
        return "parquet"
    raise ValueError(f"{path}: unknown format {suffix!r}; use .jsonl or .parquet")


def read_rows(path) -> list[dict]:
    """The input rows (JSONL or Parquet), errors naming file and line (evals.benchmarks.read_rows)."""
    from evals.benchmarks import read_rows as read_table

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    return [row for _, row in read_table(Path(path))]


def write_jsonl(tmp, rows: list[dict]) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_rows(path, rows: list[dict]) -> None:
    """JSONL or Parquet by extension, written atomically (a killed run leaves no half file)."""
    if _format(path) == "jsonl":
        return atomic_write(path, lambda tmp: write_jsonl(tmp, rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"{path}: rows do not fit one Parquet schema ({e}); "
                         "write .jsonl instead") from None
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def summary(verdicts, elapsed_s: float, out) -> str:
    n = len(verdicts)
    correct = sum(v.correct for v in verdicts)
    reasons = Counter(v.reason.split(":", 1)[0] for v in verdicts)
    lines = [f"verified {n} samples in {elapsed_s:.1f} s ({n / max(elapsed_s, 1e-9):.1f} samples/s)"
             f" -> {out}",
             f"accuracy {correct / max(n, 1):.4f} ({correct}/{n}), "
             f"mean score {sum(v.score for v in verdicts) / max(n, 1):.4f}",
             "reasons:"]
    lines += [f"  {count:>8}  {reason}" for reason, count in reasons.most_common()]
    return "\n".join(lines)
