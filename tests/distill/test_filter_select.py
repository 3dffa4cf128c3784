"""Selection policies on crafted candidates, with the edges: ties, no correct, all correct."""

from __future__ import annotations

import random

import pytest

from distill.filter.config import FilterConfig, SelectionConfig
from distill.filter.decide import decide
from distill.filter.select import mix_rejections, select


def _row(pid, index, tokens, style="plain"):
    return {"id": f"{pid}/{index}", "problem_id": pid, "sample_index": index,
            "completion_tokens": tokens, "style": style}


def _kept(candidates, **cfg) -> set[str]:
    rejected = select(candidates, SelectionConfig(**cfg))
    return {r["id"] for rows in candidates.values() for r in rows} - set(rejected)


def _shuffled(rows, seed):
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def test_all_keeps_every_candidate():
    rows = [_row("a", i, 10 * i) for i in range(4)]
    assert _kept({"a": rows}) == {r["id"] for r in rows}


@pytest.mark.parametrize("seed", range(4))
def test_shortest_breaks_ties_by_sample_index_whatever_the_order(seed):
    rows = _shuffled([_row("a", 0, 50), _row("a", 1, 30), _row("a", 2, 30), _row("a", 3, 90)], seed)
    assert _kept({"a": rows}, policy="shortest") == {"a/1"}
    assert select({"a": rows}, SelectionConfig(policy="shortest"))["a/2"] == "not_shortest"


@pytest.mark.parametrize("seed", range(4))
def test_k_shortest_with_ties(seed):
    rows = _shuffled([_row("a", 0, 30), _row("a", 1, 10), _row("a", 2, 30), _row("a", 3, 30)], seed)
    assert _kept({"a": rows}, policy="k_shortest", k=2) == {"a/1", "a/0"}
    assert _kept({"a": rows[:1]}, policy="k_shortest", k=3) == {rows[0]["id"]}  # fewer than k


def test_max_per_problem_keeps_the_first_by_sample_index():
    rows = [_row("a", i, 100 - i) for i in range(5)]
    rejected = select({"a": rows}, SelectionConfig(max_per_problem=2))
    assert set(rejected) == {"a/2", "a/3", "a/4"} and set(rejected.values()) == {"max_per_problem"}


def test_token_budget_drop_and_keep_under():
    candidates = {"a": [_row("a", 0, 50), _row("a", 1, 150)],
                  "b": [_row("b", 0, 300), _row("b", 1, 200)]}  # every sample over 100
    drop = select(candidates, SelectionConfig(max_tokens=100, budget_mode="drop"))
    assert drop == {"a/1": "over_budget", "b/0": "over_budget", "b/1": "over_budget"}
    keep = select(candidates, SelectionConfig(max_tokens=100, budget_mode="keep_under"))
    assert keep == {"a/1": "over_budget", "b/0": "over_budget"}  # b keeps its shortest


def test_pairing_both_needs_each_style_and_selects_within_styles():
    candidates = {
        "a": [_row("a", 0, 40, "reflective"), _row("a", 1, 20, "reflective"),
              _row("a", 2, 90, "plain"), _row("a", 3, 60, "plain")],
        "b": [_row("b", 0, 10, "plain"), _row("b", 1, 5, "plain")],
    }
    rejected = select(candidates, SelectionConfig(pairing="both", policy="shortest"))
    assert rejected == {"a/0": "not_shortest", "a/2": "not_shortest",
                        "b/0": "unpaired", "b/1": "unpaired"}


def test_pairing_prefer_falls_back_to_the_other_style():
    candidates = {"a": [_row("a", 0, 10, "reflective"), _row("a", 1, 90, "plain")],
                  "b": [_row("b", 0, 10, "reflective"), _row("b", 1, 5, "reflective")]}
    rejected = select(candidates, SelectionConfig(pairing="prefer", prefer="plain"))
    assert rejected == {"a/0": "not_preferred_style"}


@pytest.mark.parametrize("mix, expected", [
    ({"reflective": 0.5, "plain": 0.5}, (4, 4)),  # N = min(10/.5, 4/.5) = 8
    ({"reflective": 0.7, "plain": 0.3}, (9, 4)),  # N = min(10/.7, 4/.3) = 13.33: floor 9.33, 4
    ({"reflective": 1.0}, (10, 0)),
])
def test_mix_ratio_counts(mix, expected):
    rows = [_row(f"r{i}", 0, 10, "reflective") for i in range(10)]
    rows += [_row(f"p{i}", 0, 10, "plain") for i in range(4)]
    rejected = mix_rejections(rows, mix, seed=0)
    kept = [r for r in rows if r["id"] not in rejected]
    assert (sum(r["style"] == "reflective" for r in kept),
            sum(r["style"] == "plain" for r in kept)) == expected
    assert mix_rejections(rows, mix, seed=0) == rejected  # deterministic


def _record(pid, index, correct, tokens=10, status="ok"):
    hygiene = {"format": "ok", "truncated": False, "empty_answer": False, "language_share": 1.0,
               "max_paragraph_chars": 10, "code_blocks": 0, "ngram_repetition": 0.0,
               "line_repetition": 0.0}
    return {"id": f"{pid}/{index}", "seq": index, "problem_id": pid, "sample_index": index,
            "source": "s", "kind": "math", "style": "plain", "completion_tokens": tokens,
            "hygiene": hygiene, "hash": f"{pid}{index}", "minhash": None, "contamination": [],
            "verdict": {"correct": correct, "score": float(correct), "extracted": None,
                        "reason": "ok", "status": status}}


def test_no_correct_and_all_correct_problems_through_decide():
    cfg = FilterConfig()
    cfg.selection.policy = "shortest"
    records = [_record("none", i, False) for i in range(3)]
    records += [_record("all", i, True, tokens=30 - i) for i in range(3)]
    records += [_record("err", 0, False, status="error"), _record("err", 1, True)]
    decisions, problems = decide(records, cfg)
    assert {k for k, d in decisions.items() if d["kept"]} == {"all/2", "err/1"}
    assert problems["none"]["pass_rate"] == 0.0 and not problems["none"]["rl"]
    assert problems["all"]["pass_rate"] == 1.0 and not problems["all"]["rl"]  # outside 0.1-0.9
    assert problems["err"]["num_samples"] == 1 and problems["err"]["errors"] == 1


def test_rl_band_is_inclusive_and_needs_min_samples():
    cfg = FilterConfig()
    cfg.rl.min_pass_rate, cfg.rl.max_pass_rate, cfg.rl.min_samples = 0.25, 0.75, 4
    records = [_record("q", i, i == 0) for i in range(4)]       # 1/4 = 0.25: in
    records += [_record("h", i, i < 3) for i in range(4)]       # 3/4 = 0.75: in
    records += [_record("t", i, i == 0) for i in range(3)]      # 1/3 but only 3 samples
    records += [_record("z", i, i == 0) for i in range(5)]      # 1/5 = 0.2: out
    _, problems = decide([dict(r, seq=n) for n, r in enumerate(records)], cfg)
    assert {pid for pid, p in problems.items() if p["rl"]} == {"q", "h"}
