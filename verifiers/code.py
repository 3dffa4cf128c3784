"""Code verifier: run the completion's final Python block against the reference tests, sandboxed.

    verify_code(completion, reference, **options) -> Verdict

Extraction: only the text after `</think>` counts (an unclosed `<think>` fails); the last closed
fenced block tagged python/py/python3 or untagged is the program.

Reference (a dict/list or its JSON text), in the common public schemas:
  - stdin/stdout cases: a list of {"input": str, "output": str} (LiveCodeBench, APPS-style lists),
    {"tests": [...]} of those, {"inputs": [str], "outputs": [str]} (APPS input_output),
    {"input": [str], "output": [str]} or CodeContests' {"public_tests", "private_tests",
    "generated_tests"} splits of that form (all splits are run);
  - function-call cases: any of the above plus "fn_name" (or LiveCodeBench's "func_name"); an input
    is an argument list, a kwargs dict, {"__args__": "<Python literal tuple>"} (tuples stay
    tuples; evals/code_benchmarks.py writes HumanEval/MBPP arguments so), or LiveCodeBench's
    newline-separated JSON arguments; an output is the value or its JSON text, or
    {"__set__": [...]} / {"__sorted__": [...]} when only the elements count (MBPP's
    `set(f(x)) == set(y)`, `sorted(f(x)) == sorted(y)`). The function may be top level or a `Solution` method.
A dict reference may carry "prelude": code run before the program in the same process (the
harness's own header: LiveCodeBench's star imports, HumanEval's prompt imports). A malformed
reference raises ValueError (a dataset bug, not a model error).

Judging (verifiers/sandbox.py runs the program): the expected outputs stay in this process; the
sandbox gets the program and the inputs only, runs every test in a fresh process whose stdin (or
call arguments) is that test's input, and returns each test's stdout (call cases: the JSON of the return value) with its
exit status. A test passes only when that process exited with status 0 and its output matches here:
nothing the program writes, raises or prints about itself can mark a test passed. stdin/stdout
outputs must have the same number of lines (trailing whitespace and trailing blank lines ignored),
then per line equal text or equal tokens (integers exactly, other numbers within `rtol`/`atol`, in
Decimal, so 50000000000000000 != 50000000000000001 as LiveCodeBench warns); call results compare
structurally (tuples equal lists) with the same number rule.

Options (defaults): test_timeout_s=6.0 (LiveCodeBench's per-test limit), deadline_s=30.0 for the
whole sample (capped below a VerifierPool's deadline), rtol=1e-6, atol=1e-9, memory_mb=2048,
max_output_bytes=1 MiB per test, fail_fast=False (stop the run at the first failing test),
allow_unisolated_sandbox=False (where no sandbox tier isolates the filesystem, code is not scored:
sandbox.SandboxUnavailable is raised unless this is True).

Verdict: score = fraction of tests passed, correct = all passed; reason "ok", "k/n tests passed",
"syntax error", "timeout", "memory limit", "output limit", "runtime error: ..." (the last four when
no test passed and the first failure was of that kind), each followed by " [sandbox: TIER]" naming
the isolation tier that ran it; "no code block" and "unclosed <think>" (nothing ran).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

from verifiers import sandbox
from verifiers.api import Verdict

PYTHON_TAGS = {"", "python", "py", "python3", "py3", "python2"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.#-]*)")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

def verify_code(completion: str, reference, *, test_timeout_s: float = 6.0,
                deadline_s: float = 30.0, rtol: float = 1e-6, atol: float = 1e-9,
                memory_mb: int = 2048, max_output_bytes: int = 1 << 20,
                fail_fast: bool = False, allow_unisolated_sandbox: bool = False) -> Verdict:
    answer = answer_text(completion)
    if answer is None:
        return Verdict.fail("unclosed <think>")
    code = extract_code(answer)
    if code is None:
        return Verdict.fail("no code block")
    reference = _decode(reference)
    mode, fn_name, inputs, outputs = parse_tests(reference)
    prelude = reference.get("prelude") if isinstance(reference, dict) else None
    program = code if not prelude else str(prelude).rstrip("\n") + "\n" + code
    biggest_mb = (max((len(s) for s in inputs if isinstance(s, str)), default=0) >> 20) + 1
    limits = sandbox.Limits(memory_mb=memory_mb,
                            file_mb=max(4, (max_output_bytes >> 20) + 1, biggest_mb),
                            tmpfs_mb=64 + 2 * biggest_mb)

    def stop(i, test):  # fail-fast: the judge ends the run at the first failing test
        return fail_fast and not (test.status == "ok" and _case_ok(mode, test.out, outputs[i],
                                                                   rtol, atol))

    run = sandbox.run_tests(program, mode, fn_name, inputs, timeout_s=test_timeout_s,
                            deadline_s=deadline_s, limits=limits,
                            max_output_bytes=max_output_bytes,
                            allow_unisolated=allow_unisolated_sandbox, stop=stop)
    return _judge(code, mode, outputs, run, rtol, atol)


def answer_text(completion: str) -> str | None:
    """The part after the last `</think>`; the whole text without a think block; None if unclosed."""
    if "</think>" in completion:
        return completion.rsplit("</think>", 1)[1]
    if "<think>" in completion:
        return None
    return completion


def extract_code(text: str) -> str | None:
    """The last closed fenced block tagged as Python or untagged (an unclosed fence is ignored)."""
    found, block, fence, tag = None, None, "", ""
    for line in text.split("\n"):
        if block is None:
            m = _FENCE.match(line)
            if m:
                block, fence, tag = [], m.group(1), m.group(2).lower()
        elif line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            if tag in PYTHON_TAGS and any(s.strip() for s in block):
                found = "\n".join(block) + "\n"
            block = None
        else:
            block.append(line)
    return found


def parse_tests(reference) -> tuple[str, str | None, list, list]:
    """(mode, fn_name, inputs, outputs) from a reference in any of the public schemas (module
    docstring), or its JSON text; mode is "stdio" or "call"."""
    reference = _decode(reference)
    fn_name, inputs, outputs = None, None, None
    if isinstance(reference, list):
        inputs, outputs = _from_cases(reference)
    elif isinstance(reference, dict):
        fn_name = reference.get("fn_name") or reference.get("func_name")
        if "inputs" in reference and "outputs" in reference:
            inputs, outputs = list(reference["inputs"]), list(reference["outputs"])
        elif isinstance(reference.get("input"), list) and isinstance(reference.get("output"), list):
            inputs, outputs = list(reference["input"]), list(reference["output"])
        elif isinstance(reference.get("tests"), list):
            inputs, outputs = _from_cases(reference["tests"])
        elif any(k in reference for k in _CONTEST_SPLITS):
            inputs, outputs = [], []
            for split in _CONTEST_SPLITS:  # CodeContests: {"input": [...], "output": [...]} each
                part = reference.get(split) or {}
                inputs += list(part.get("input", []))
                outputs += list(part.get("output", []))
    if inputs is None:
        raise ValueError("code reference must be a list of {'input', 'output'} cases or a dict "
                         "with 'inputs'/'outputs', 'input'/'output', 'tests' or CodeContests "
                         f"splits (and optionally 'fn_name'), got {type(reference).__name__}")
    if len(inputs) != len(outputs) or not inputs:
        raise ValueError(f"code reference has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "need the same non-zero number")
    if not fn_name:
        return "stdio", None, [_as_text(s) for s in inputs], [_as_text(s) for s in outputs]
    return "call", str(fn_name), [_as_args(a) for a in inputs], [_as_value(o) for o in outputs]


def _decode(reference):
    if isinstance(reference, (str, bytes)):
        try:
            return json.loads(reference)
        except ValueError as e:
            raise ValueError(f"code reference is not valid JSON: {e}") from None
    return reference


_CONTEST_SPLITS = ("public_tests", "private_tests", "generated_tests")


def _from_cases(cases: list) -> tuple[list, list]:
    """[{"input": ..., "output": ...}, ...] (LiveCodeBench / APPS-style test lists)."""
    if not all(isinstance(c, dict) and "input" in c and "output" in c for c in cases):
        raise ValueError("code reference cases must each be a dict with 'input' and 'output'")
    return [c["input"] for c in cases], [c["output"] for c in cases]


def _as_text(s) -> str:
    if isinstance(s, (list, tuple)):  # some APPS rows keep outputs as a list of lines
        return "\n".join(str(x) for x in s)
    return s if isinstance(s, str) else str(s)


def _as_args(a):
    if isinstance(a, (list, tuple, dict)):
        return a
    if isinstance(a, str):  # LiveCodeBench functional input: one JSON value per line
        try:
            return [json.loads(line) for line in a.split("\n") if line.strip()]
        except ValueError:
            return [a]
    return [a]


def _as_value(o):
    if isinstance(o, str):
        try:
            return json.loads(o)
        except ValueError:
            return o
    return o


# --- judging -------------------------------------------------------------------------------------


def _judge(code, mode, outputs, run, rtol, atol) -> Verdict:
    tier = f" [sandbox: {run.tier}]"
    if run.compile_error is not None:
        return Verdict(False, 0.0, code, "syntax error" + tier)
    missing = _missing_reason(run)
    failures, passed = [], 0
    for i, expected in enumerate(outputs):
        test = run.tests.get(i)
        if test is None:
            failures.append(missing)
        elif test.status != "ok":
            failures.append(_failure(test.status, test.err))
        elif _case_ok(mode, test.out, expected, rtol, atol):
            passed += 1
        else:
            failures.append("wrong answer")
    n = len(outputs)
    if passed == n:
        return Verdict(True, 1.0, code, "ok" + tier)
    reason = f"{passed}/{n} tests passed"
    if passed == 0 and failures[0] != "wrong answer":
        reason = failures[0]
    return Verdict(False, passed / n, code, reason + tier)


def _missing_reason(run) -> str:
    if run.timed_out:
        return "timeout"
    if run.truncated:
        return "output limit"
    if run.returncode is None:
        return "not run (stopped at the first failure)"
    return f"runtime error: sandbox runner exited with code {run.returncode}"


def _failure(status, err) -> str:
    return {"timeout": "timeout", "memory": "memory limit", "output": "output limit"}.get(
        status, f"runtime error: {err or status}")


def _case_ok(mode, out: bytes, expected, rtol, atol) -> bool:
    got = out.decode("utf-8", "replace")
    if mode == "stdio":
        return outputs_match(got, expected, rtol, atol)
    try:
        value = json.loads(got)
    except (ValueError, RecursionError):  # RecursionError: hostile nesting depth
        return False
    if isinstance(expected, dict) and len(expected) == 1 and set(expected) <= _UNORDERED:
        return _unordered_match(value, expected, rtol, atol)
    if values_match(value, expected, rtol, atol):
        return True
    # APPS stores some call outputs wrapped in a one-element list.
    return isinstance(expected, list) and len(expected) == 1 and values_match(value, expected[0],
                                                                              rtol, atol)


_UNORDERED = {"__set__", "__sorted__"}


def _unordered_match(value, expected: dict, rtol, atol) -> bool:
    """{"__set__": [...]}: the result's elements as a set (MBPP's `set(f(x)) == set(y)`);
    {"__sorted__": [...]}: as a multiset (`sorted(f(x)) == sorted(y)`)."""
    if not isinstance(value, list):
        return False
    (kind, want), = expected.items()
    if not isinstance(want, list):
        return False
    got = value
    if kind == "__set__":
        got = [g for k, g in enumerate(value) if not any(values_match(g, h, rtol, atol)
                                                          for h in value[:k])]
        want = [w for k, w in enumerate(want) if not any(values_match(w, h, rtol, atol)
                                                          for h in want[:k])]
    if len(got) != len(want):
        return False
    unused = list(want)
    for g in got:
        k = next((k for k, w in enumerate(unused) if values_match(g, w, rtol, atol)), None)
        if k is None:
            return False
        del unused[k]
    return True


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(got: str, expected: str, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Same line count, then per line: equal text, or equal tokens (numbers by value)."""
    got_lines, want_lines = _lines(got), _lines(expected)
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines):
        if g == w:
            continue
        g_tokens, w_tokens = g.split(), w.split()
        if len(g_tokens) != len(w_tokens):
            return False
        if not all(tokens_match(a, b, rtol, atol) for a, b in zip(g_tokens, w_tokens)):
            return False
    return True


def tokens_match(got: str, want: str, rtol: float, atol: float) -> bool:
    if got == want:
        return True
    if not (_NUMBER.fullmatch(got) and _NUMBER.fullmatch(want)):
        return False
    try:
        a, b = Decimal(got), Decimal(want)
    except InvalidOperation:
        return False
    if _INT.fullmatch(got) and _INT.fullmatch(want):
        return a == b  # integers exactly, however long
    return _close(a, b, rtol, atol)


def _close(a: Decimal, b: Decimal, rtol: float, atol: float) -> bool:
    return abs(a - b) <= Decimal(repr(atol)) + Decimal(repr(rtol)) * abs(b)


def values_match(got, want, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Structural equality for call results; tuples equal lists, numbers compare as in stdio."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if isinstance(want, int) and isinstance(got, int):
            return got == want
        if got != got or want != want or abs(got) == float("inf") or abs(want) == float("inf"):
            return got == want
        return _close(Decimal(got), Decimal(want), rtol, atol)
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(values_match(g, w, rtol, atol)
                                             for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(values_match(got[k], want[k], rtol, atol)
                                                 for k in want)
    return got == want
