"""Code benchmarks in their public schemas, scored by the sandboxed code verifier.

    load_code_benchmark(name, path, *, field_map=None) -> Benchmark   (via load_benchmark)

Each problem's `reference` is the JSON test spec `verifiers.code.parse_tests` reads, and its
`question` is the full user message of the benchmark's own harness (the template is "{question}"):

    lcb        LiveCodeBench code_generation_lite rows: question_content, starter_code,
               public_test_cases (JSON), private_test_cases (JSON, or as the release stores them:
               base64 of zlib of a pickled JSON string), metadata (JSON with func_name), question_id
               (+ question_title, platform, contest_date, difficulty). Tests {input, output,
               testtype}: "stdin" cases, or "functional" ones calling func_name (a `Solution`
               method) with newline-separated JSON arguments. Public and private tests both count.
               Prompt: lcb_runner/prompts/code_generation.py get_generic_question_template_answer.
    humaneval  openai_humaneval rows: task_id, prompt, entry_point, test (a `check(candidate)` of
               asserts; + canonical_solution). Prompt: EvalPlus's chat instruction around the
               prompt (evalplus/codegen.py instruction_prefix).
    mbpp       MBPP rows (full or sanitized): task_id, text [prompt], test_list, test_setup_code,
               challenge_test_list (+ code). Prompt: EvalPlus's MBPP+ form: the same instruction
               around a docstring holding the task and its first test.

The asserts of HumanEval's `check` and MBPP's `test_list` are turned into function-call cases here
(`assert f(args) == expected`, `assert f(args)`, `assert not f(args)`, `assert abs(f(args) - x) <
tol`, `assert set(f(args)) == set(y)`, `assert sorted(f(args)) == sorted(y)`, with literal
arguments and results; arguments keep their Python types, tuples included), so the expected values stay with the judge: running the
dataset's own asserts inside the sandbox would let a program return an object whose `__eq__` is
always True. Asserts of another shape (loops, random inputs) are skipped and counted in
`meta["skipped_asserts"]`; a problem with no convertible assert is left out with a warning
(HumanEval/32, /38 and /50 check with loops over random inputs).

Private LiveCodeBench tests are decoded without a general `pickle.loads`: the unpickler refuses
every global (no class, no function can be named, so nothing can run) and must yield a str, and
zlib output is capped at MAX_TESTS_BYTES (verification-and-eval.md §6.6).

Each reference carries the harness's program header as "prelude" (verifiers/code.py runs it before
the program): LiveCodeBench's star imports and recursion limit (lcb_runner testing_util.py), the
import lines of a HumanEval prompt (the official harness runs prompt + completion). LiveCodeBench's
system message is LCB_SYSTEM; set the eval config's system_prompt to it to match lcb_runner.

Default k (samples per problem): lcb 10 (lcb_runner's n), humaneval 1 and mbpp 1 (EvalPlus greedy).
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import warnings
import zlib

from evals.types import Benchmark, Problem

MAX_TESTS_BYTES = 1 << 30
CODE_DEFAULT_K = {"lcb": 10, "humaneval": 1, "mbpp": 1}
CODE_BENCHMARKS = tuple(CODE_DEFAULT_K)

LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem "
              "specification) and will generate a correct Python program that matches the "
              "specification and passes all tests.")
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem "
                    "and enclose your code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout "
                       "(do not directly test on the sample inputs). Enclose your code within "
                       "delimiters as follows. Ensure that when the python program runs, it reads "
                       "the inputs, runs the algorithm and writes output to STDOUT.")
# lcb_runner/evaluation/testing_util.py prepends this header to every program it runs (LeetCode
# code uses List, defaultdict, ... without importing them).
LCB_PRELUDE = "\n".join(
    [f"from {m} import *" for m in ("string", "re", "datetime", "collections", "heapq", "bisect",
                                    "copy", "math", "random", "statistics", "itertools",
                                    "functools", "operator", "io", "sys", "json", "builtins",
                                    "typing")]
    + [f"import {m}" for m in ("string", "re", "datetime", "collections", "heapq", "bisect",
                               "copy", "math", "random", "statistics", "itertools", "functools",
                               "operator", "io", "sys", "json")]
    + ["sys.setrecursionlimit(50000)"])
EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following "
                        "problem in a markdown code block:")

_FIELDS = {
    "lcb": {"question": ("question_content",), "starter": ("starter_code",),
            "public": ("public_test_cases",), "private": ("private_test_cases",),
            "metadata": ("metadata",), "id": ("question_id",), "title": ("question_title",),
            "platform": ("platform",), "date": ("contest_date",), "difficulty": ("difficulty",)},
    "humaneval": {"prompt": ("prompt",), "entry_point": ("entry_point",), "test": ("test",),
                  "id": ("task_id",)},
    "mbpp": {"text": ("text", "prompt"), "test_list": ("test_list",),
             "setup": ("test_setup_code",), "challenge": ("challenge_test_list",),
             "id": ("task_id",)},
}
_REQUIRED = {"lcb": ("question", "public"), "humaneval": ("prompt", "entry_point", "test"),
             "mbpp": ("text", "test_list")}


def load_code_benchmark(name: str, path: str | None, field_map: dict | None = None) -> Benchmark:
    from evals.benchmarks import _revision, benchmark_source, read_rows

    source = benchmark_source(name, path)
    columns = dict(_FIELDS[name])
    for key, column in (field_map or {}).items():
        if key not in columns:
            raise ValueError(f"{name}: field_map key {key!r} is not a field of this benchmark; "
                             f"use one of {sorted(columns)}")
        columns[key] = (column,)
    make = {"lcb": _lcb, "humaneval": _humaneval, "mbpp": _mbpp}[name]
    problems, seen, skipped = [], set(), []
    for index, (where, row) in enumerate(read_rows(source)):
        fields = {}
        for key, names in columns.items():
            value = next((row[n] for n in names if row.get(n) is not None), None)
            if value is None and key in _REQUIRED[name]:
                raise ValueError(f"{where}: missing field {' or '.join(map(repr, names))} "
                                 f"(the row has {sorted(row)})")
            fields[key] = value
        try:
            problem = make(fields, where)
        except NoCases as e:  # HumanEval/32, /38, /50 check with loops over random inputs
            skipped.append(str(e))
            continue
        source_id = str(fields.get("id") if fields.get("id") is not None else index)
        pid = f"{name}-{source_id}"
        if pid in seen:
            pid = f"{pid}@{index}"
        seen.add(pid)
        problem.id = pid
        problem.meta.update(source=str(source), row=index, source_id=source_id)
        problems.append(problem)
    if skipped:
        warnings.warn(f"{name}: {len(skipped)} problem(s) left out, no convertible assert: "
                      + "; ".join(skipped[:5]), stacklevel=3)
    if not problems:
        raise ValueError(f"{source}: no problems in the file (benchmark {name})")
    return Benchmark(name, problems, "{question}", "code", CODE_DEFAULT_K[name], _revision(source))


# ---------------------------------------------------------------- LiveCodeBench


def _lcb(f: dict, where: str) -> Problem:
    tests = _json_tests(f["public"], where, "public_test_cases")
    private = f.get("private")
    if private not in (None, ""):
        tests += _json_tests(decode_private_tests(private, where), where, "private_test_cases")
    if not tests:
        raise ValueError(f"{where}: no test cases")
    metadata = f.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata.strip() else {}
        except ValueError as e:
            raise ValueError(f"{where}: metadata is not JSON ({e})") from None
    functional = {t.get("testtype") for t in tests} == {"functional"}
    reference = {"tests": [{"input": t["input"], "output": t["output"]} for t in tests],
                 "prelude": LCB_PRELUDE}
    if functional:
        if not metadata.get("func_name"):
            raise ValueError(f"{where}: functional tests but no func_name in metadata")
        reference["fn_name"] = metadata["func_name"]
    elif {t.get("testtype", "stdin") for t in tests} != {"stdin"}:
        raise ValueError(f"{where}: a mix of stdin and functional tests")
    starter = f.get("starter") or ""
    prompt = f"### Question:\n{f['question']}\n\n"
    if starter:
        prompt += f"### Format: {LCB_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        prompt += f"### Format: {LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    prompt += "### Answer: (use the provided format with backticks)\n\n"
    meta = {k: f[k] for k in ("title", "platform", "date", "difficulty") if f.get(k) is not None}
    meta.update(num_tests=len(tests), system_prompt=LCB_SYSTEM)
    return Problem("", prompt, json.dumps(reference), "code", None, meta)


def _json_tests(value, where: str, column: str) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"{where}: {column} is not JSON ({e})") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) and "input" in t and "output" in t
                                              for t in value):
        raise ValueError(f"{where}: {column} must be a list of {{input, output}} objects")
    return value


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from benchmark data")


def decode_private_tests(value, where: str = "private_test_cases"):
    """LiveCodeBench's private tests: plain JSON, or base64(zlib(pickle(JSON str))) decoded without
    running anything (see the module docstring). Returns the JSON text or the parsed list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return text
    try:
        packed = base64.b64decode(text, validate=False)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_TESTS_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"decompressed tests exceed {MAX_TESTS_BYTES} bytes")
        obj = _NoGlobals(io.BytesIO(raw)).load()
    except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(f"{where}: private_test_cases could not be decoded ({e})") from None
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8")
    if not isinstance(obj, (str, list)):
        raise ValueError(f"{where}: private_test_cases decoded to {type(obj).__name__}, "
                         "expected JSON text")
    return obj


def encode_private_tests(tests: list[dict]) -> str:
    """The release's encoding (for fixtures and tests): base64(zlib(pickle(json.dumps(tests))))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


# ---------------------------------------------------------------- HumanEval and MBPP


def _humaneval(f: dict, where: str) -> Problem:
    entry = str(f["entry_point"])
    cases, skipped = asserts_to_cases(str(f["test"]), {"candidate", entry}, where)
    prompt = f"{EVALPLUS_INSTRUCTION}\n```\n{str(f['prompt']).strip()}\n```\n"
    imports = [ln for ln in str(f["prompt"]).splitlines() if ln.startswith(("import ", "from "))]
    reference = {"fn_name": entry, "inputs": [_py_args(c[0]) for c in cases],
                 "outputs": [c[1] for c in cases], "prelude": "\n".join(imports)}
    return Problem("", prompt, json.dumps(reference), "code", None,
                   {"entry_point": entry, "skipped_asserts": skipped, "num_tests": len(cases)})


def _mbpp(f: dict, where: str) -> Problem:
    tests = list(f["test_list"]) + list(f.get("challenge") or [])
    if not tests:
        raise ValueError(f"{where}: empty test_list")
    fn_name = _called_name(str(tests[0]), where)
    cases, skipped = asserts_to_cases("\n".join(map(str, tests)), {fn_name}, where)
    doc = f'"""\n{str(f["text"]).strip()}\n{str(f["test_list"][0]).strip()}\n"""\n'
    prompt = f"{EVALPLUS_INSTRUCTION}\n```\n{doc.strip()}\n```\n"
    reference = {"fn_name": fn_name, "inputs": [_py_args(c[0]) for c in cases],
                 "outputs": [c[1] for c in cases]}
    meta = {"skipped_asserts": skipped, "num_tests": len(cases)}
    if f.get("setup"):
        meta["test_setup_code"] = f["setup"]  # kept for reference; the cases are literal calls
    return Problem("", prompt, json.dumps(reference), "code", None, meta)


def _py_args(args: list) -> dict:
    """Arguments as a Python literal, so tuples reach the function as tuples (JSON has none)."""
    return {"__args__": repr(tuple(args))}


def _called_name(test: str, where: str) -> str:
    try:
        tree = ast.parse(test.strip())
    except SyntaxError as e:
        raise ValueError(f"{where}: test is not Python ({e.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id not in ("abs", "set", "sorted", "list", "tuple", "len", "round"):
            return node.func.id
    raise ValueError(f"{where}: no function call in {test[:80]!r}")


def asserts_to_cases(code: str, names: set[str], where: str) -> tuple[list, int]:
    """[(args, expected)] from the asserts in `code` that call one of `names` with literal
    arguments and compare with a literal; returns the cases and how many asserts were skipped."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise ValueError(f"{where}: test code is not Python ({e.msg})") from None
    cases, skipped = [], 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        case = _assert_case(node.test, names)
        if case is None:
            if not (isinstance(node.test, ast.Constant) and node.test.value is True):
                skipped += 1
            continue
        cases.append(case)
    if not cases:
        raise NoCases(f"{where}: no assert of the form `{sorted(names)[0]}(...) == value`")
    return cases, skipped


class NoCases(ValueError):
    """A problem whose asserts are all of shapes we do not convert (loops over random inputs)."""


def _assert_case(test, names):
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        wrapped = _unordered_case(test.left, test.comparators[0], names)
        if wrapped is not None:
            return wrapped
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is)):
        left, right = test.left, test.comparators[0]
        for call, value in ((left, right), (right, left)):
            args = _call_args(call, names)
            if args is not None:
                expected = _literal(value)
                return None if expected is _NO else (args, expected)
        if isinstance(test.ops[0], ast.Eq):
            return None
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Lt):
        # abs(f(args) - x) < tol: the verifier's own tolerance applies
        inner = test.left
        if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) \
                and inner.func.id == "abs" and len(inner.args) == 1 \
                and isinstance(inner.args[0], ast.BinOp) and isinstance(inner.args[0].op, ast.Sub):
            args = _call_args(inner.args[0].left, names)
            expected = _literal(inner.args[0].right)
            if args is not None and expected is not _NO:
                return args, expected
        return None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        args = _call_args(test.operand, names)
        return None if args is None else (args, False)
    args = _call_args(test, names)
    return None if args is None else (args, True)


_NO = object()
_WRAPPERS = {"set": "__set__", "sorted": "__sorted__"}


def _unordered_case(left, right, names):
    """`set(f(args)) == set(lit)` / `sorted(f(args)) == sorted(lit)` (or a bare literal right)."""
    if not (isinstance(left, ast.Call) and isinstance(left.func, ast.Name)
            and left.func.id in _WRAPPERS and len(left.args) == 1 and not left.keywords):
        return None
    args = _call_args(left.args[0], names)
    if args is None:
        return None
    if isinstance(right, ast.Call) and isinstance(right.func, ast.Name) \
            and right.func.id == left.func.id and len(right.args) == 1:
        right = right.args[0]
    expected = _literal(right)
    if expected is _NO or not isinstance(expected, (list, tuple)):
        return None
    return args, {_WRAPPERS[left.func.id]: list(expected)}


def _call_args(node, names):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        return None
    if node.keywords:
        return None
    values = [_literal(a) for a in node.args]
    return None if any(v is _NO for v in values) else values


def _literal(node):
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)  # the call result's JSON encodes a set as a sorted list
        except TypeError:
            return _NO
    if isinstance(value, complex):
        return _NO
    return value
