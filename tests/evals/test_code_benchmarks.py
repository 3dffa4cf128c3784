"""evals/code_benchmarks.py: LiveCodeBench, HumanEval and MBPP in their public schemas.

Fixtures (tests/evals/fixtures/{lcb,humaneval,mbpp}.jsonl) follow each release's schema with
problems written for these tests; the LiveCodeBench private tests are encoded as the release
stores them (base64 of zlib of a pickled JSON string). Expected prompts are spelled out here from
the harnesses' sources (lcb_runner/prompts/code_generation.py, evalplus/codegen.py).
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from evals.benchmarks import format_prompt, load_benchmark
from evals.code_benchmarks import decode_private_tests
from tests.evals.test_runner import checkpoint  # noqa: F401 - the tiny-model fixture
from verifiers import sandbox, verify

FIXTURES = Path(__file__).parent / "fixtures"
needs_sandbox = pytest.mark.skipif(not sandbox.isolation().isolates_filesystem,
                                   reason="no filesystem-isolating sandbox tier here")


def block(code: str) -> str:
    return f"<think>ok</think>\n```python\n{code}\n```"


def load(name):
    with pytest.warns(UserWarning) if name == "humaneval" else _nothing():
        return load_benchmark(name, str(FIXTURES / f"{name}.jsonl"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_lcb_public_and_private_tests_and_prompt():
    bench = load("lcb")
    assert (bench.kind, bench.default_k, len(bench.problems)) == ("code", 10, 2)
    stdin, functional = bench.problems
    ref = json.loads(stdin.reference)
    assert [t["output"] for t in ref["tests"]] == ["6\n", "6\n", "7\n"]  # 1 public + 2 private
    assert json.loads(functional.reference)["fn_name"] == "twoSum"
    assert format_prompt(bench, stdin) == (
        "### Question:\nRead n and n integers; print their sum.\n\n"
        "### Format: Read the inputs from stdin solve the problem and write the answer to stdout "
        "(do not directly test on the sample inputs). Enclose your code within delimiters as "
        "follows. Ensure that when the python program runs, it reads the inputs, runs the "
        "algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")
    assert format_prompt(bench, functional).startswith(
        "### Question:\nReturn the indices of the two numbers that add up to target.\n\n"
        "### Format: You will use the following starter code to write the solution to the "
        "problem and enclose your code within delimiters.\n```python\nclass Solution:\n")


@needs_sandbox
def test_lcb_problems_score_through_the_sandbox():
    stdin, functional = load("lcb").problems
    good = "input()\nprint(sum(map(int, input().split())))"
    assert verify("code", block(good), stdin.reference).correct
    constant = "input()\nprint(6)"  # right on the public test and the first private one only
    assert verify("code", block(constant), stdin.reference).score == pytest.approx(2 / 3)
    # LeetCode-style code uses List and defaultdict unimported: lcb_runner's header provides them
    two_sum = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
               "        seen = defaultdict(int)\n"
               "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
               "                return [seen[target - x], i]\n            seen[x] = i")
    assert verify("code", block(two_sum), functional.reference).correct
    no_header = json.loads(functional.reference)
    del no_header["prelude"]
    assert "NameError" in verify("code", block(two_sum), no_header).reason


def test_private_tests_decode_without_running_anything(tmp_path):
    tests = [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]
    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()
    assert json.loads(decode_private_tests(packed)) == tests
    assert decode_private_tests(json.dumps(tests)) == json.dumps(tests)  # plain JSON passes

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    hostile = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(ValueError, match="refusing to load"):
        decode_private_tests(hostile)
    assert not marker.exists()
    not_text = base64.b64encode(zlib.compress(pickle.dumps({"a": 1}))).decode()
    with pytest.raises(ValueError, match="decoded to dict"):
        decode_private_tests(not_text)
    with pytest.raises(ValueError, match="could not be decoded"):
        decode_private_tests("!!! not base64 zlib !!!")


def test_humaneval_asserts_become_call_cases_and_prompt():
    bench = load("humaneval")  # HumanEval/2 checks with random inputs only: left out, with a warning
    assert [p.id for p in bench.problems] == ["humaneval-HumanEval/0", "humaneval-HumanEval/1"]
    add, even = bench.problems
    ref = json.loads(add.reference)
    assert ref["fn_name"] == "add" and ref["outputs"] == [5, 0, 0.3]
    assert json.loads(even.reference)["outputs"] == [True, False, True]
    assert even.meta["skipped_asserts"] == 1  # the assert inside the loop
    assert format_prompt(bench, add) == (
        "Please provide a self-contained Python script that solves the following problem in a "
        "markdown code block:\n```\ndef add(x: int, y: int) -> int:\n    \"\"\"Add two numbers.\n"
        "    >>> add(2, 3)\n    5\n    \"\"\"\n```\n")


@needs_sandbox
def test_humaneval_and_mbpp_score_through_the_sandbox():
    add, even = load("humaneval").problems
    assert verify("code", block("def add(x, y):\n    return x + y"), add.reference).correct
    assert not verify("code", block("def add(x, y):\n    return x - y"), add.reference).correct
    assert verify("code", block("def is_even(n):\n    return n % 2 == 0"), even.reference).correct
    always = ("class Yes:\n    def __eq__(self, other):\n        return True\n"
              "def is_even(n):\n    return Yes()")  # passes the dataset's own asserts
    assert verify("code", block(always), even.reference).score == 0.0
    remove, shared = load("mbpp").problems
    sol = ("def remove_Occ(s, ch):\n    i = s.find(ch)\n    s = s[:i] + s[i + 1:] if i >= 0 else s\n"
           "    j = s.rfind(ch)\n    return s[:j] + s[j + 1:] if j >= 0 else s")
    assert verify("code", block(sol), remove.reference).correct
    # tuple arguments reach the function as tuples (`a + b` on two tuples works), and
    # `set(f(x)) == set(y)` compares elements only
    tuples = ("def similar_elements(a, b):\n"
              "    return tuple(sorted(set(x for x in a + b if x in a and x in b)))")
    assert verify("code", block(tuples), shared.reference).correct
    first_only = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))[:1]"
    assert verify("code", block(first_only), shared.reference).score == 0.5


def test_mbpp_prompt_and_schema():
    bench = load("mbpp")
    assert bench.default_k == 1
    assert format_prompt(bench, bench.problems[0]) == (
        "Please provide a self-contained Python script that solves the following problem in a "
        "markdown code block:\n```\n\"\"\"\nWrite a python function to remove first and last "
        "occurrence of a given character from the string.\nassert remove_Occ(\"hello\",\"l\") == "
        "\"heo\"\n\"\"\"\n```\n")
    shared = json.loads(bench.problems[1].reference)
    assert shared["outputs"] == [{"__set__": [4, 5]}, [2]]  # `set(f(...)) == set((4, 5))`
    assert bench.problems[1].meta["skipped_asserts"] == 0


def test_bad_rows_are_value_errors(tmp_path):
    bad = tmp_path / "lcb.jsonl"
    bad.write_text(json.dumps({"question_content": "q", "public_test_cases": "[{\"input\": 1}]"}) + "\n")
    with pytest.raises(ValueError, match="list of {input, output}"):
        load_benchmark("lcb", str(bad))
    bad.write_text(json.dumps({"question_content": "q"}) + "\n")
    with pytest.raises(ValueError, match="missing field 'public_test_cases'"):
        load_benchmark("lcb", str(bad))
    with pytest.raises(ValueError, match="needs a path"):
        load_benchmark("mbpp")


@needs_sandbox
def test_eval_runner_scores_code_pass_at_1_over_k(tmp_path, monkeypatch, checkpoint):
    """k samples per problem through `distillery eval`'s runner: pass@1 is the mean correctness
    over the k samples of each problem, as for math (hand-computed below)."""
    from evals import runner
    from evals.config import BenchmarkSpec, EvalConfig, ModelSpec, SamplingParams
    from evals.generation import Generator, Sample

    sum_ok = "input()\nprint(sum(map(int, input().split())))"
    two_sum = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
               "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
               "                return [seen[target - x], i]\n            seen[x] = i")
    answers = {"print their sum": [sum_ok, "print(0)", sum_ok, sum_ok],       # 3 of 4 right
               "add up to target": ["print(1)", two_sum, "oops(", "x = 1"]}    # 1 of 4 right

    class Scripted(Generator):
        backend = "engine"

        def count_tokens(self, text):
            return len(text.split()) or 1

        def _generate_flat(self, prompts, seeds, sampling, stop):
            out = []
            for prompt in prompts:
                text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
                code = answers[next(k for k in answers if k in text)].pop(0)
                out.append(Sample(f"plan</think>\n```python\n{code}\n```", "stop", 5, 9,
                                  think_opened=True))
            return out

    monkeypatch.setattr(runner, "make_generator", lambda spec, **kw: Scripted())
    cfg = EvalConfig(models=[ModelSpec("tiny", str(checkpoint))],
                     benchmarks=[BenchmarkSpec("lcb", path=str(FIXTURES / "lcb.jsonl"), k=4)],
                     sampling=SamplingParams(max_new_tokens=8), budgets=[], verify_workers=1,
                     verify_timeout_s=30, out_dir=str(tmp_path / "out"))
    (result,) = json.loads((runner.run_eval(cfg) / "results.json").read_text())["results"]
    assert result["pass@1"]["mean"] == pytest.approx((3 / 4 + 1 / 4) / 2)
