"""Benchmark loaders on small files written in each real schema (verification-and-eval.md §2.7)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from evals.benchmarks import format_prompt, load_benchmark, shuffle_choices, with_repeat
from evals.types import CHOICE_PROMPT, MATH_PROMPT

FIXTURES = Path(__file__).parent / "fixtures"


def test_gsm8k_gold_is_after_hashes_without_commas():
    bench = load_benchmark("gsm8k", str(FIXTURES / "gsm8k.jsonl"))
    assert [p.reference for p in bench.problems] == ["42", "1200", "-7"]
    assert bench.kind == "math" and bench.prompt_template == MATH_PROMPT and bench.default_k == 1
    assert bench.problems[0].question.startswith("Nora has 5 boxes")
    assert "<<5*12=60>>" in bench.problems[0].meta["rationale"]
    assert len({p.id for p in bench.problems}) == 3
    expected = hashlib.sha256((FIXTURES / "gsm8k.jsonl").read_bytes()).hexdigest()[:16]
    assert bench.revision == expected


def test_math500_fields_and_ids():
    bench = load_benchmark("math500", str(FIXTURES / "math500.jsonl"))
    p = bench.problems[1]
    assert p.reference == "\\frac{11}{12}" and p.id == "math500-test/prealgebra/202.json"
    assert p.meta["subject"] == "Prealgebra" and p.meta["level"] == 1 and "\\boxed" in p.meta["solution"]
    assert bench.default_k == 4
    assert format_prompt(bench, p) == MATH_PROMPT.format(question=p.question)
    assert format_prompt(bench, p).endswith("put your final answer within \\boxed{}.")


@pytest.mark.parametrize("name,file,golds,ids", [
    ("aime24", "aime.jsonl", ["1", "15"], ["aime24-60", "aime24-61"]),
    ("aime25", "aime_caps.jsonl", ["77", "24"], ["aime25-2025-I-1", "aime25-2025-I-2"]),
    ("amc", "amc.jsonl", ["136", "\\frac{\\pi}{4}"], ["amc-0", "amc-1"]),
])
def test_competition_sets_lowercase_and_capitalised_keys(name, file, golds, ids):
    bench = load_benchmark(name, str(FIXTURES / file))
    assert [p.reference for p in bench.problems] == golds  # `001` padding and `136.0` floats normalised
    assert [p.id for p in bench.problems] == ids
    assert bench.kind == "math" and bench.default_k >= 8


def test_custom_jsonl_with_field_map_and_limit():
    bench = load_benchmark("jsonl", str(FIXTURES / "custom.jsonl"),
                           field_map={"question": "prompt", "reference": "gold", "id": "uid"})
    assert [(p.id, p.question, p.reference) for p in bench.problems] == [
        ("jsonl-c1", "What is 6 times 7?", "42"),
        ("jsonl-c2", "Write one half as a fraction.", "\\frac{1}{2}")]
    assert len(load_benchmark("jsonl", str(FIXTURES / "custom.jsonl"),
                              field_map={"question": "prompt", "reference": "gold"}, limit=1).problems) == 1
    with pytest.raises(ValueError, match="field_map key 'prompt'"):
        load_benchmark("jsonl", str(FIXTURES / "custom.jsonl"), field_map={"prompt": "question"})


def test_parquet_and_hf_dataset_directories(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIXTURES / "math500.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:1]),
                          "test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    want = ["6", "\\frac{11}{12}", "[2,3]"]
    for source in ("m.parquet", "ds", "dd"):
        bench = load_benchmark("math500", str(tmp_path / source))
        assert [p.reference for p in bench.problems] == want, source
        assert len(bench.revision) == 16
    datasets.DatasetDict({"a": datasets.Dataset.from_list(rows), "b": datasets.Dataset.from_list(rows)}
                         ).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(ValueError, match="no 'test' split"):
        load_benchmark("math500", str(tmp_path / "ab"))


def test_missing_field_names_file_row_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = (FIXTURES / "math500.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    del row["answer"]
    bad.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    with pytest.raises(ValueError) as e:
        load_benchmark("math500", str(bad))
    assert str(bad) in str(e.value) and "line 2" in str(e.value) and "'answer'" in str(e.value)

    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "no gold line"}) + "\n")
    with pytest.raises(ValueError, match="line 1: field 'answer' has no '#### <answer>'"):
        load_benchmark("gsm8k", str(gsm))

    csv_text = (FIXTURES / "gpqa.csv").read_text().replace("Incorrect Answer 3", "Wrong 3")
    (tmp_path / "g.csv").write_text(csv_text)
    with pytest.raises(ValueError, match=r"g\.csv: row 1: missing field 'Incorrect Answer 3'"):
        load_benchmark("gpqa", str(tmp_path / "g.csv"))


def test_bad_names_and_paths():
    with pytest.raises(ValueError) as e:
        load_benchmark("mmlu", str(FIXTURES / "gsm8k.jsonl"))
    assert all(k in str(e.value) for k in ("gsm8k", "math500", "aime24", "gpqa", "jsonl", "synthetic:"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_benchmark("gsm8k", "nope.jsonl")
    with pytest.raises(ValueError, match="needs a path"):
        load_benchmark("gsm8k")
    with pytest.raises(ValueError, match="unknown synthetic task 'calculus'"):
        load_benchmark("synthetic:calculus")
    with pytest.raises(ValueError, match="unknown option 'size'"):
        load_benchmark("synthetic:arithmetic?size=3")


def test_gpqa_csv_shuffles_deterministically_and_tracks_the_gold():
    bench = load_benchmark("gpqa", str(FIXTURES / "gpqa.csv"), seed=3)
    assert bench.kind == "choice" and bench.prompt_template == CHOICE_PROMPT and bench.default_k == 4
    p = bench.problems[0]
    assert p.id == "gpqa-recA1" and p.question.endswith("(Consider the Standard Model.)")
    assert bench.problems[1].meta["options"][0] == "+7"  # cells are stripped
    for q in bench.problems:
        assert q.choices[ord(q.reference) - ord("A")] == q.meta["options"][0]
        assert [q.meta["options"][j] for j in q.meta["permutation"]] == q.choices
        assert q.meta["repeat"] == 0
    again = load_benchmark("gpqa", str(FIXTURES / "gpqa.csv"), seed=3)
    assert [q.choices for q in again.problems] == [q.choices for q in bench.problems]

    perms = []
    for repeat in range(24):
        choices, gold, perm = shuffle_choices(p, repeat, seed=3)
        assert (choices, gold, perm) == shuffle_choices(p, repeat, seed=3)
        assert choices[ord(gold) - ord("A")] == "Photon" and sorted(perm) == [0, 1, 2, 3]
        perms.append(tuple(perm))
    assert len(set(perms)) == 24  # every repeat of a question gets a new order, up to 4! of them
    assert Counter(shuffle_choices(p, r, 3)[1] for r in range(24)) == {c: 6 for c in "ABCD"}
    others = {tuple(shuffle_choices(p, 0, seed=s)[2]) for s in range(10)}
    assert len(others) > 1  # the seed matters

    r2 = with_repeat(p, 2, seed=3)
    choices, gold, perm = shuffle_choices(p, 2, 3)
    assert (r2.choices, r2.reference, r2.meta["permutation"]) == (choices, gold, perm)
    assert p.meta["repeat"] == 0  # with_repeat copies

    text = format_prompt(bench, p)
    assert text.startswith(p.question) and "\nA) " in text and "\nD) " in text and "Answer: X" in text


def test_gpqa_jsonl_schema(tmp_path):
    row = {"Question": "2 + 2?", "Correct Answer": "4", "Incorrect Answer 1": "3",
           "Incorrect Answer 2": "5", "Incorrect Answer 3": "22"}
    (tmp_path / "g.jsonl").write_text(json.dumps(row) + "\n")
    p = load_benchmark("gpqa", str(tmp_path / "g.jsonl")).problems[0]
    assert p.choices[ord(p.reference) - 65] == "4" and p.id == "gpqa-0"


def test_synthetic_spec():
    bench = load_benchmark("synthetic:linear?n=12&split=test&seed=4&difficulty=3")
    assert len(bench.problems) == 12 and bench.kind == "math" and bench.prompt_template == MATH_PROMPT
    assert all(p.meta["split"] == "test" and p.meta["difficulty"] == 3 and p.meta["seed"] == 4
               for p in bench.problems)
    again = load_benchmark("synthetic:linear?difficulty=3&seed=4&split=test&n=12")
    assert again.name == bench.name and again.revision == bench.revision
    assert load_benchmark("synthetic:linear?n=12&split=test&seed=5&difficulty=3").revision != bench.revision
    default = load_benchmark("synthetic:word", seed=2, limit=5)
    assert len(default.problems) == 5 and default.problems[0].meta["split"] == "test"
    assert default.problems[0].meta["seed"] == 2


def test_synthetic_warns_about_an_ignored_path():
    with pytest.warns(UserWarning, match="ignored"):
        load_benchmark("synthetic:modular?n=3", "some/file.jsonl")
