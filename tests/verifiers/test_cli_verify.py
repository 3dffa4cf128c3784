"""`distillery verify`: JSONL and Parquet in and out, verdict column, summary, bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verifiers import sandbox

needs_sandbox = pytest.mark.skipif(not sandbox.isolation().isolates_filesystem,
                                   reason="no filesystem-isolating sandbox tier here")

from distill import cli

REF = {"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}
GOOD = "<think>sum</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
WRONG = "```python\nprint(3)\n```"
ROWS = [
    {"id": "a", "completion": GOOD, "reference": REF, "score": 0.25},  # a field of the dataset's own
    {"id": "b", "completion": WRONG, "reference": REF},
    {"id": "c", "completion": "no code", "reference": json.dumps(REF)},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(*argv) -> int:
    return cli.main(["verify", *argv, "--workers", "2", "--no-progress"])


@needs_sandbox
def test_jsonl_round_trip_with_verdicts_and_summary(tmp_path, capsys):
    src, out = write_jsonl(tmp_path / "in.jsonl", ROWS), tmp_path / "sub" / "out.jsonl"
    assert run("--in", str(src), "--out", str(out), "--kind", "code") == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["score"] == 0.25  # untouched: the verdict is nested
    assert rows[0]["verdict"] == {"kind": "code", "correct": True, "score": 1.0,
                                  "extracted": "a, b = map(int, input().split())\nprint(a + b)\n",
                                  "reason": f"ok [sandbox: {sandbox.isolation().tier}]"}
    assert rows[1]["verdict"]["reason"].startswith("1/2 tests passed [sandbox: ") and rows[1]["verdict"]["score"] == 0.5
    assert rows[2]["verdict"]["reason"] == "no code block"
    text = capsys.readouterr().out
    assert "verified 3 samples" in text and "samples/s" in text
    assert "accuracy 0.3333 (1/3)" in text and "no code block" in text
    assert [p.name for p in out.parent.iterdir()] == ["out.jsonl"]  # no temp file left behind


@needs_sandbox
def test_parquet_in_and_out_with_custom_fields(tmp_path):
    rows = [{"text": r["completion"], "tests": json.dumps(REF)} for r in ROWS]
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    assert run("--in", str(src), "--out", str(out), "--kind", "code",
               "--completion-field", "text", "--reference-field", "tests",
               "--option", "test_timeout_s=2", "--timeout", "5") == 0
    table = pq.read_table(out).to_pylist()
    assert [r["verdict"]["correct"] for r in table] == [True, False, False]
    assert table[0]["text"] == ROWS[0]["completion"]


def test_missing_field_names_row_and_field(tmp_path, capsys):
    rows = [ROWS[0], {"id": "x", "completion": GOOD}]
    src, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run("--in", str(src), "--out", str(out), "--kind", "code") == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "'reference'" in err and "in.jsonl" in err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    ('{"completion": "x"}\nnot json\n', "line 2: invalid JSON"),
    ("[1, 2]\n", "line 1: expected a JSON object, got list"),
])
def test_bad_jsonl_is_a_clear_error(tmp_path, capsys, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    assert run("--in", str(src), "--out", str(tmp_path / "o.jsonl"), "--kind", "code") == 2
    assert message in capsys.readouterr().err


def test_bad_paths_and_options(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    assert run("--in", str(src), "--out", str(tmp_path / "o.csv"), "--kind", "code") == 2
    assert "unknown format" in capsys.readouterr().err
    assert run("--in", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o.jsonl"),
               "--kind", "code") == 2
    assert run("--in", str(src), "--out", str(tmp_path / "o.jsonl"), "--kind", "code",
               "--option", "novalue") == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_verify_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "verify" in capsys.readouterr().out
