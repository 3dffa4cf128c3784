"""Input shapes: generate's RowStore shards, data synth's messages, OpenR1-style generations
lists with given correctness, reasoning + answer_text, Parquet; bad rows with file and line."""

from __future__ import annotations

import json

import pytest

from distill.filter import FilterConfig, run_filter
from distill.filter.inputs import BadRow, SampleReader, iter_samples
from tests.distill.filter_helpers import read_jsonl, sample, write_jsonl

OPENR1 = {"problem": "What is 2 + 3?", "answer": "5", "source": "olympiads",
          "generations": ["<think>\n2 + 3 = 5\n</think>\n\n\\boxed{5}",
                          "<think>\n2 + 3 = 6\n</think>\n\n\\boxed{6}",
                          "<think>\nadding\n</think>\n\nIt is \\boxed{5}."],
          "correctness_math_verify": [True, False, True], "finish_reasons": ["stop", "stop", "length"]}
OPENR1_FIELDS = {"generations": "generations", "correct": "correctness_math_verify",
                 "finish_reason": "finish_reasons"}


def _read(paths, fields=None, kind="math"):
    return list(iter_samples([str(p) for p in paths], SampleReader(fields or {}, kind, "{problem}")))


def test_generations_lists_expand_with_per_generation_fields(tmp_path):
    items = _read([write_jsonl(tmp_path / "openr1.jsonl", [OPENR1])], OPENR1_FIELDS)
    assert [s.sample_index for s in items] == [0, 1, 2]
    assert len({s.problem_id for s in items}) == 1 and items[0].problem_id.startswith("p-")
    assert [s.id for s in items] == [f"{items[0].problem_id}#{i}" for i in range(3)]
    assert [s.given_correct for s in items] == [True, False, True]
    assert [s.finish_reason for s in items] == ["stop", "stop", "length"]
    assert items[0].prompt == [{"role": "user", "content": "What is 2 + 3?"}]
    assert items[0].reference == "5" and items[0].source == "olympiads"
    assert items[2].reasoning == "adding" and items[2].answer_text == "It is \\boxed{5}."


def test_use_given_takes_the_dataset_correctness(tmp_path):
    row = dict(OPENR1, correctness_math_verify=[False, True, True])  # deliberately disagrees
    cfg = FilterConfig(inputs=[str(write_jsonl(tmp_path / "o.jsonl", [row]))], out=str(tmp_path / "o"),
                       fields=OPENR1_FIELDS, progress=False)
    cfg.verify.workers, cfg.verify.use_given, cfg.output.plots = 1, True, False
    cfg.output.dataset = False
    out = run_filter(cfg)
    kept = read_jsonl(out / "sft.jsonl")
    assert [r["sample_index"] for r in kept] == [1]  # given says right; #2 is truncated
    rejected = {r["sample_index"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert rejected[0]["verdict"]["reason"] == "given" and rejected[0]["reject_reason"] == "incorrect"


def test_data_synth_messages_rows(tmp_path):
    from distill.cli.data import synth_rows

    rows = synth_rows("linear", 3, "train", 0, 2, "r1", 0.0)
    items = _read([write_jsonl(tmp_path / "synth.jsonl", rows)])
    for s, row in zip(items, rows):
        assert s.id == row["id"] and s.problem == row["question"]
        assert s.completion == row["messages"][-1]["content"]
        assert s.prompt == row["messages"][:1] and s.reference == row["reference"]


def test_rowstore_shards_parquet_and_reasoning_fields_read_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [sample("a", i, str(i), tokens=10 + i) for i in range(5)]
    store = tmp_path / "samples"
    write_jsonl(store / "part-00000.jsonl", rows[:3])
    write_jsonl(store / "part-00001.jsonl", rows[3:])
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    split = [{k: v for k, v in r.items() if k != "completion"} | {
        "reasoning": f"Working on problem a, attempt {r['sample_index']}.",
        "answer_text": f"The answer is \\boxed{{{r['sample_index']}}}."} for r in rows]
    joined = write_jsonl(tmp_path / "split.jsonl", split)
    a, b, c = _read([store]), _read([tmp_path / "s.parquet"]), _read([joined])
    assert [s.completion for s in a] == [s.completion for s in b] == [s.completion for s in c] == [
        r["completion"] for r in rows]
    assert [s.completion_tokens for s in a] == [10, 11, 12, 13, 14] and not a[0].tokens_estimated
    assert "part-00001.jsonl:1" in a[3].where and "s.parquet: row 4" in b[3].where


def test_bad_rows_name_file_and_line(tmp_path):
    good = sample("a", 0, "5")
    path = write_jsonl(tmp_path / "bad.jsonl", [
        good, "[1, 2]", "", json.dumps(good), json.dumps(dict(sample("b", 0, "5"), kind="poetry")),
        json.dumps(dict(sample("c", 0, "5"), completion=7)), "{oops"])
    items = _read([path])
    bad = [(b.where, b.error.split(" (")[0]) for b in items if isinstance(b, BadRow)]
    assert bad == [(f"{path}:2", "expected a JSON object, got list"),
                   (f"{path}:4", "duplicate id 'a/0'"),
                   (f"{path}:5", "unknown verifier kind 'poetry'; known: "
                                 "['choice', 'code', 'format', 'math']"),
                   (f"{path}:6", "completion is int, not text"),
                   (f"{path}:7", "not a JSON row")]


def test_no_usable_rows_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "hello"}])
    cfg = FilterConfig(inputs=[str(path)], out=str(tmp_path / "o"), progress=False)
    with pytest.raises(ValueError, match=r"no usable samples.*x.jsonl:1: no prompt or problem"):
        run_filter(cfg)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        run_filter(FilterConfig(inputs=[str(tmp_path / "nope.jsonl")], out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="unknown field"):
        FilterConfig(fields={"answr": "answer"})


def test_unknown_kinds_in_the_config_are_named(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [sample("a", 0, "5")])
    with pytest.raises(ValueError, match="verify.options.maths: unknown verifier kind"):
        cfg = FilterConfig(inputs=[str(path)], out=str(tmp_path / "o"))
        cfg.verify.options = {"maths": {}}
        run_filter(cfg)
    with pytest.raises(ValueError, match="kind: unknown verifier kind 'poetry'"):
        run_filter(FilterConfig(inputs=[str(path)], out=str(tmp_path / "o"), kind="poetry"))


def test_style_from_a_system_prompt_or_a_column(tmp_path):
    reflective = sample("a", 0, "5")
    reflective["prompt"] = [{"role": "system", "content": "Reflect and verify your answer."},
                            *reflective["prompt"]]
    rows = [reflective, sample("a", 1, "5"), sample("a", 2, "5", style="terse")]
    assert [s.style for s in _read([write_jsonl(tmp_path / "s.jsonl", rows)])] == [
        "reflective", "plain", "terse"]


def test_generate_rows_with_think_opened_in_the_prompt(tmp_path):
    """generate's R1 rows: the template opened `<think>`, so the completion starts inside it;
    the row's `think_opened` says so and the filter must not reject the format."""
    from distill.filter.config import HygieneConfig
    from distill.filter.hygiene import measure

    row = {"id": "p1#0", "problem_id": "p1", "sample_index": 0, "kind": "math", "reference": "4",
           "prompt": [{"role": "user", "content": "2+2?"}], "think_opened": True,
           "completion": "2 plus 2 is 4.\n</think>\n\nThe answer is \\boxed{4}.",
           "finish_reason": "stop", "completion_tokens": 12}
    (item,) = _read([write_jsonl(tmp_path / "gen.jsonl", [row])])
    assert item.closed and item.reasoning == "2 plus 2 is 4."
    assert item.answer_text == "The answer is \\boxed{4}."
    assert measure(item, HygieneConfig())["format"] == "ok"
    (plain,) = _read([write_jsonl(tmp_path / "gen2.jsonl", [dict(row, think_opened=False)])])
    assert measure(plain, HygieneConfig())["format"] != "ok"  # the same text, not opened: malformed
