"""Synthetic task families, their solution writers and `distillery data synth`."""

from __future__ import annotations

import json
import random
import re
import statistics
from fractions import Fraction

import pytest

from distill.cli import main
from evals.solutions import r1_solution, r1_trace, short_solution
from evals.tasks import TASKS, generate
from verifiers import verify

FAMILIES = sorted(TASKS)


@pytest.mark.parametrize("task", FAMILIES)
def test_deterministic_and_seeded(task):
    a = generate(task, 50, "train", seed=1, difficulty=3)
    b = generate(task, 50, "train", seed=1, difficulty=3)
    assert [(p.id, p.question, p.reference, p.meta) for p in a] == \
        [(p.id, p.question, p.reference, p.meta) for p in b]
    c = generate(task, 50, "train", seed=2, difficulty=3)
    assert [p.question for p in a] != [p.question for p in c]
    assert len({p.question for p in a}) == 50 and all(p.kind == "math" for p in a)
    assert all(p.meta["task"] == task and p.meta["difficulty"] == 3 and p.meta["steps"] for p in a)


@pytest.mark.parametrize("task", FAMILIES)
def test_train_and_test_share_no_problem(task):
    train = {p.question for seed in (0, 1) for p in generate(task, 2000, "train", seed=seed)}
    test = {p.question for p in generate(task, 2000, "test", seed=0)}
    assert len(test) == 2000 and not train & test
    # also across difficulties: the split is a property of the problem, not of the call
    assert not {p.question for p in generate(task, 300, "test", seed=0, difficulty=1)} & \
        {p.question for p in generate(task, 300, "train", seed=0, difficulty=1)}


def _size(p):
    """Number of steps and the largest number in the question."""
    return len(p.meta["steps"]), max(int(x) for x in re.findall(r"\d+", p.question))


@pytest.mark.parametrize("task", FAMILIES)
def test_difficulty_grows_steps_or_numbers(task):
    easy = [_size(p) for p in generate(task, 200, "train", difficulty=1)]
    hard = [_size(p) for p in generate(task, 200, "train", difficulty=4)]
    for i in (0, 1):
        assert statistics.mean(h[i] for h in hard) >= statistics.mean(e[i] for e in easy)
    grew = [statistics.mean(h[i] for h in hard) / statistics.mean(e[i] for e in easy) for i in (0, 1)]
    assert max(grew) > 1.2, grew


def _gold_value(reference: str) -> Fraction:
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", reference)
    return Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1) if m else Fraction(int(reference))


def test_golds_against_an_independent_evaluation():
    """Arithmetic and fraction golds equal Python's own evaluation of the question's expression;
    linear golds satisfy the equation; modular golds equal pow()."""
    for p in generate("arithmetic", 200, "test", difficulty=4):
        # the expression is our own digits, + - * and parentheses
        assert _gold_value(p.reference) == eval(p.meta["expression"])  # noqa: S307
    for p in generate("fractions", 200, "test", difficulty=4):
        expr = re.sub(r"(?<![{\d])(\d+)(?![}\d])", r"Fraction(\1)", p.meta["expression"])  # whole leaves
        expr = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"Fraction(\1, \2)", expr)
        expr = expr.replace("\\times", "*").replace("\\div", "/")
        assert _gold_value(p.reference) == eval(expr, {"Fraction": Fraction})  # noqa: S307
        assert not re.search(r"\\frac\{\d+\}\{1\}", p.reference)
    for p in generate("linear", 200, "test", difficulty=3):
        lhs, rhs = p.meta["equation"].split(" = ")
        x = _gold_value(p.reference)
        implicit = rf"(\d)(?=[{p.meta['var']}(])"  # 3x -> 3*x, 3(x + 1) -> 3*(x + 1)
        ev = lambda side: eval(re.sub(implicit, r"\1*", side).replace(p.meta["var"], f"({x})"))  # noqa
        assert ev(lhs) == ev(rhs) and x.denominator == 1
    for p in generate("modular", 200, "test", difficulty=4):
        ops = p.meta["operands"]
        power = p.meta["form"] == "power"
        want = pow(ops[0], ops[1], ops[2]) if power else (ops[0] * ops[1] + ops[2]) % ops[3]
        assert int(p.reference) == want
    for p in generate("word", 200, "test", difficulty=5):
        assert _gold_value(p.reference).denominator == 1 and int(p.reference) >= 0


@pytest.mark.parametrize("task", FAMILIES)
def test_r1_solutions_are_accepted_and_planted_errors_rejected(task):
    rng = random.Random(7)
    problems = generate(task, 200, "test", seed=5, difficulty=3)
    for p in problems:
        text = r1_solution(p, rng)
        assert text.startswith("<think>\n") and "\n</think>\n\n" in text
        think = text.split("</think>")[0]
        assert "Wait" in think or "wait" in think
        verdict = verify("math", text, p.reference)
        assert verdict.correct, (p.question, p.reference, verdict, text)
    for p in problems:
        text = r1_solution(p, rng, error_rate=1.0)
        verdict = verify("math", text, p.reference)
        assert not verdict.correct and verdict.extracted, (p.question, p.reference, verdict, text)


def test_r1_phrasing_varies_and_error_rate_is_a_rate():
    p = generate("word", 1, "train")[0]
    rng = random.Random(0)
    assert len({r1_solution(p, rng) for _ in range(20)}) > 10
    problems = generate("arithmetic", 400, "train")
    wrong = sum(not verify("math", r1_solution(q, rng, 0.25), q.reference).correct for q in problems)
    assert 60 <= wrong <= 140
    text, boxed = r1_trace(problems[0], random.Random(1), True)
    assert f"\\boxed{{{boxed}}}" in text and boxed != problems[0].reference
    with pytest.raises(ValueError):
        r1_solution(p, rng, 1.5)


@pytest.mark.parametrize("task", FAMILIES)
def test_short_solution_ends_with_the_gold(task):
    for p in generate(task, 100, "train", difficulty=2):
        text = short_solution(p)
        assert "<think>" not in text and p.reference in text
        assert text.endswith(f"\\boxed{{{p.reference}}}.")
        assert verify("math", text, p.reference).correct


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown synthetic task"):
        generate("calculus", 3)
    with pytest.raises(ValueError, match="split"):
        generate("linear", 3, split="dev")
    with pytest.raises(ValueError, match="difficulty"):
        generate("linear", 3, difficulty=9)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_data_synth_command(tmp_path, capsys):
    out = tmp_path / "sub" / "r1.jsonl"
    argv = ["data", "synth", "--task", "fractions", "--n", "30", "--split", "train", "--seed", "3",
            "--out", str(out), "--style", "r1", "--error-rate", "0.3", "--difficulty", "2"]
    assert main(argv) == 0
    rows = _rows(out)
    assert len(rows) == 30 and "wrote 30 fractions train problems" in capsys.readouterr().out
    assert [r["problem_id"] for r in rows] == [p.id for p in generate("fractions", 30, "train", 3, 2)]
    for r in rows:
        assert {"id", "problem_id", "question", "reference", "task", "split", "text", "messages"} <= set(r)
        user, assistant = r["messages"]
        assert user["role"] == "user" and user["content"].startswith(r["question"])
        assert "\\boxed{}" in user["content"]
        # the pretraining document is the conversation as the chat template lays it out
        assert assistant["role"] == "assistant"
        assert r["text"] == f"<|user|>{user['content']}\n<|assistant|>{assistant['content']}"
        assert verify("math", assistant["content"], r["reference"]).correct != r["planted_error"]
    assert 0 < sum(r["planted_error"] for r in rows) < 30
    first = out.read_bytes()
    assert main(argv) == 0 and out.read_bytes() == first  # deterministic
    assert not [p for p in out.parent.iterdir() if p.name != "r1.jsonl"]  # no temp files left

    short = tmp_path / "short.jsonl"
    assert main(["data", "synth", "--task", "word", "--n", "5", "--split", "test", "--seed", "0",
                 "--out", str(short), "--style", "short", "--error-rate", "0.5"]) == 0
    assert "ignored" in capsys.readouterr().err
    for r in _rows(short):
        assert r["split"] == "test" and r["messages"][1]["content"] in r["text"]
        assert r["text"].endswith(f"\\boxed{{{r['reference']}}}.")
    answer = tmp_path / "answer.jsonl"
    assert main(["data", "synth", "--task", "arithmetic", "--n", "5", "--difficulty", "1",
                 "--out", str(answer), "--style", "answer"]) == 0
    for r in _rows(answer):  # the boxed answer, no working
        assert r["messages"][1]["content"] == f"The answer is \\boxed{{{r['reference']}}}."
    plain = tmp_path / "plain.jsonl"
    assert main(["data", "synth", "--task", "modular", "--n", "4", "--out", str(plain)]) == 0
    assert all("text" not in r and r["split"] == "train" for r in _rows(plain))


def test_data_synth_bad_input(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["data", "synth", "--task", "calculus", "--n", "3", "--out", str(out)]) == 2
    assert "unknown synthetic task 'calculus'" in capsys.readouterr().err
    assert main(["data", "synth", "--task", "linear", "--n", "3", "--out", str(out), "--style", "r1",
                 "--error-rate", "2"]) == 2
    assert "--error-rate" in capsys.readouterr().err and not out.exists()


def test_chain_answers_are_the_expression_and_steps_are_its_running_sums():
    # independent reference: Python evaluates the expression text left to right
    for p in generate("chain", 200, "test", 0, 1):
        expr = p.meta["expression"]
        assert p.reference == str(eval(expr))  # noqa: S307 (digits, + and - only)
        assert len(p.meta["steps"]) == 3 and all(1 <= int(t) <= 5 for t in expr.split()[::2])


def test_steps_style_asks_each_step_alone(tmp_path):
    out = tmp_path / "steps.jsonl"
    assert main(["data", "synth", "--task", "arithmetic", "--n", "6", "--difficulty", "1",
                 "--out", str(out), "--style", "steps"]) == 0
    rows = _rows(out)
    problems = generate("arithmetic", 6, "train", 0, 1)
    assert len(rows) == sum(len(p.meta["steps"]) for p in problems)
    for r in rows:
        expr = r["question"].removeprefix("What is ").removesuffix("?")
        assert str(eval(expr)) == r["reference"]  # noqa: S307
        assert r["messages"][1]["content"] == f"{expr} = {r['reference']}. The answer is \\boxed{{{r['reference']}}}."
    assert len({r["id"] for r in rows}) == len(rows)
