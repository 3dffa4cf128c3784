"""verifiers.code and verifiers.sandbox: extraction, comparison, both test forms, and escapes.

Expected verdicts come from the task statement and the cited failure catalogue
(docs/verification-and-eval.md 3.1-3.5), not from running our own code.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest

from verifiers import sandbox, verify
from verifiers.code import extract_code, outputs_match, parse_tests, values_match

needs_sandbox = pytest.mark.skipif(
    not sandbox.isolation().isolates_filesystem,
    reason=f"no filesystem-isolating sandbox tier here ({sandbox.isolation().reason})")
ADD = {"inputs": ["1 2\n", "3 4\n", "10 -5\n"], "outputs": ["3\n", "7\n", "5\n"]}
SLACK = 0.5  # hostile programs must finish within their deadline plus this


def block(code: str, tag: str = "python") -> str:
    return f"<think>Let me write it.</think>\nHere is my solution.\n```{tag}\n{code}\n```\n"


def why(verdict) -> str:
    """The reason without the sandbox tier, which every verdict that ran code must name."""
    reason, sep, tier = verdict.reason.partition(" [sandbox: ")
    if sep:
        assert tier == sandbox.isolation().tier + "]", verdict.reason
    return reason


def timed(*args, **kwargs):
    start = time.monotonic()
    verdict = verify("code", *args, **kwargs)
    return verdict, time.monotonic() - start


def uid_processes(min_uid: int) -> list[int]:
    """Pids of live processes whose real uid is at least min_uid (the sandbox's run uids)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid >= min_uid:
            pids.append(int(pid))
    return pids


# --- extraction and reference parsing ------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("```python\nprint(1)\n```", "print(1)\n"),
    ("```\nprint(2)\n```", "print(2)\n"),                                  # untagged counts
    ("```py\na\n```\ntext\n```python\nb\n```", "b\n"),                      # the last one wins
    ("```python\nb\n```\n```cpp\nint main(){}\n```", "b\n"),                # non-Python skipped
    ("```python\nx\n```\n```python\ntruncated", "x\n"),                     # unclosed fence ignored
    ("  ```python\n  indented()\n  ```", "  indented()\n"),
    ("no fences at all", None),
    ("```python\n\n```", None),                                             # empty block
])
def test_extract_code(text, expected):
    assert extract_code(text) == expected


@needs_sandbox
def test_only_text_after_think_counts_and_unclosed_think_fails():
    inside = "<think>```python\nprint(3)\n```</think>no code here"
    assert why(verify("code", inside, ADD)) == "no code block"
    unclosed = "<think>```python\nprint(3)\n```"
    assert why(verify("code", unclosed, ADD)) == "unclosed <think>"


def test_reference_forms_and_errors():
    assert parse_tests(json.dumps(ADD))[0] == "stdio"
    lcb = {"fn_name": "f", "inputs": ["[1, 2]\n3"], "outputs": ["[4]"]}  # LiveCodeBench text form
    assert parse_tests(lcb) == ("call", "f", [[[1, 2], 3]], [[4]])
    for bad in ({"inputs": ["1"]}, {"inputs": ["1"], "outputs": []}, "not json", 5):
        with pytest.raises(ValueError):
            parse_tests(bad)


# --- output comparison (LiveCodeBench rules, 3.2) --------------------------------------------------


@pytest.mark.parametrize("got, expected, ok", [
    ("3\n", "3", True),
    ("3   \n7\t\n\n\n", "3\n7", True),                                    # trailing whitespace
    ("1 2  3", "1 2 3", True),                                            # token-wise
    ("3\n", "3\n7\n", False),                                             # open-r1's zip() bug
    ("3\n7\n9\n", "3\n7\n", False),                                       # extra line
    ("0.30000000000000004", "0.3", True),                                 # float within 1e-6 rel
    ("0.3001", "0.3", False),
    ("3.0", "3", True),                                                   # by value
    ("50000000000000001", "50000000000000000", False),                    # ints exact (3.2)
    ("1" + "0" * 5000, "1" + "0" * 5000, True),                           # past int()'s digit cap
    ("YES", "yes", False),
    ("nan", "nan", True), ("inf", "1e400", False),
])
def test_outputs_match(got, expected, ok):
    assert outputs_match(got, expected) is ok


def test_tolerances_are_options():
    assert not outputs_match("1.001", "1.0", rtol=1e-6)
    assert outputs_match("1.001", "1.0", rtol=1e-2)
    assert outputs_match("0.0000000001", "0", rtol=1e-6, atol=1e-9)
    assert not outputs_match("0.0001", "0", rtol=1e-6, atol=1e-9)
    assert values_match((1, [2.0000001]), [1, [2]]) and not values_match([True], [1])


# --- running programs ----------------------------------------------------------------------------


@needs_sandbox
def test_stdio_correct_wrong_and_partial():
    good = verify("code", block("a, b = map(int, input().split())\nprint(a + b)"), ADD)
    assert (good.correct, good.score, why(good)) == (True, 1.0, "ok")
    assert good.extracted.startswith("a, b = map")
    wrong = verify("code", block("a, b = map(int, input().split())\nprint(a * b)"), ADD)
    assert (wrong.correct, wrong.score, why(wrong)) == (False, 0.0, "0/3 tests passed")
    partial = verify("code", block("a, b = map(int, input().split())\nprint(a + b if b > 0 else 0)"),
                     ADD)
    assert why(partial) == "2/3 tests passed" and partial.score == pytest.approx(2 / 3)


@needs_sandbox
def test_stdio_reads_fd0_buffer_and_threads():
    fast_io = ("import sys\na, b = map(int, open(0).read().split())\n"
               "sys.stdout.buffer.write(b'%d\\n' % (a + b))")
    assert verify("code", block(fast_io), ADD).correct
    threaded = ("import threading, sys\nthreading.stack_size(1 << 26)\n"
                "def main():\n    a, b = map(int, sys.stdin.readline().split())\n    print(a + b)\n"
                "threading.Thread(target=main).start()")
    assert verify("code", block(threaded), ADD).correct


@needs_sandbox
def test_exit_codes():
    assert verify("code", block("a, b = map(int, input().split())\nprint(a + b)\nexit(0)"), ADD).correct
    bad = verify("code", block("a, b = map(int, input().split())\nprint(a + b)\nexit(1)"), ADD)
    assert not bad.correct and why(bad) == "runtime error: exit code 1"


@needs_sandbox
def test_function_call_cases():
    ref = {"fn_name": "add", "inputs": [[1, 2], [0.1, 0.2], [[1], [2]]], "outputs": [3, 0.3, [1, 2]]}
    assert verify("code", block("def add(a, b):\n    return a + b"), ref).correct
    cls = "class Solution:\n    def add(self, a, b):\n        return a + b"
    assert verify("code", block(cls), ref).correct
    wrong = verify("code", block("def add(a, b):\n    return a - b"), ref)
    assert why(wrong) == "0/3 tests passed"
    lcb = {"fn_name": "twoSum", "inputs": ["[2, 7, 11]\n9", "[3, 3]\n6"], "outputs": ["[0, 1]", "[0, 1]"]}
    two_sum = ("class Solution:\n    def twoSum(self, nums, target):\n"
               "        seen = {}\n        for i, x in enumerate(nums):\n"
               "            if target - x in seen:\n                return (seen[target - x], i)\n"
               "            seen[x] = i")
    assert verify("code", block(two_sum), lcb).correct  # a tuple equals a JSON list
    apps = {"fn_name": "f", "inputs": [[2]], "outputs": [[4]]}  # APPS wraps call outputs in a list
    assert verify("code", block("def f(x):\n    return x * x"), apps).correct


@needs_sandbox
def test_float_tolerance_through_the_sandbox():
    ref = {"inputs": [""], "outputs": ["0.333333"]}
    prog = block("print(1 / 3)")
    assert verify("code", prog, ref).correct
    assert not verify("code", prog, ref, rtol=1e-9, atol=0.0).correct


@needs_sandbox
def test_line_count_mismatch_fails():
    ref = {"inputs": [""], "outputs": ["1\n2\n"]}
    assert why(verify("code", block("print(1)"), ref)) == "0/1 tests passed"


@needs_sandbox
def test_error_reasons():
    assert why(verify("code", block("def f(:\n    pass"), ADD)) == "syntax error"
    assert why(verify("code", block("1 / 0"), ADD)) == "runtime error: ZeroDivisionError: division by zero"
    assert why(verify("code", block("x = bytearray(1 << 40)"), ADD, memory_mb=512)) == "memory limit"
    assert why(verify("code", "just prose", ADD)) == "no code block"


# --- escape attempts: each fails safely and finishes within its deadline + SLACK -------------------

ONE = {"inputs": [""], "outputs": ["blocked"]}


@needs_sandbox
def test_network_is_blocked():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    port = server.getsockname()[1]
    prog = ("import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    print('open')\n"
            "except OSError:\n    print('blocked')")
    verdict, elapsed = timed(block(prog), ONE, deadline_s=3)
    with pytest.raises(socket.timeout):
        server.accept()  # nothing reached us
    server.close()
    assert verdict.correct, verdict
    assert elapsed < 3 + SLACK
    assert sandbox.isolation().network == "empty netns"


@needs_sandbox
def test_cannot_write_outside_the_temp_dir(tmp_path):
    targets = [f"/tmp/escape_{uuid.uuid4().hex}", str(tmp_path / "escape"),
               os.path.join(os.getcwd(), f"escape_{uuid.uuid4().hex}")]
    prog = "\n".join(f"try:\n    open({t!r}, 'w').write('x')\nexcept OSError:\n    pass"
                     for t in targets) + "\nopen('inside.txt', 'w').write('ok')\nprint('blocked')"
    assert verify("code", block(prog), ONE).correct  # writing its own cwd works
    for t in targets:
        assert not os.path.exists(t), t


@needs_sandbox
def test_cannot_read_parent_environment(monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("DISTILLERY_TEST_SECRET", secret)
    prog = ("import os\nfound = any('" + secret + "' in v for v in os.environ.values())\n"
            "for pid in os.listdir('/proc'):\n    try:\n"
            "        found |= '" + secret + "'.encode() in open(f'/proc/{pid}/environ', 'rb').read()\n"
            "    except OSError:\n        pass\n"
            "print('found' if found else 'blocked')")
    assert verify("code", block(prog), ONE).correct


@needs_sandbox
def test_fork_bomb_is_bounded():
    prog = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    verdict, elapsed = timed(block(prog), ONE, test_timeout_s=1.0, deadline_s=2.0)
    assert not verdict.correct and elapsed < 2.0 + SLACK
    # nothing of the run lives on: the namespace's teardown SIGKILLs every process, but a loaded
    # machine may take a moment to finish them off, so wait for that (bounded) instead of 0.2 s
    deadline = time.monotonic() + 5.0
    while uid_processes(sandbox._UID_BASE) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert uid_processes(sandbox._UID_BASE) == []


@needs_sandbox
def test_infinite_loops_hit_the_deadline():
    verdict, elapsed = timed(block("while True:\n    pass"), ADD, test_timeout_s=0.5, deadline_s=1.0)
    assert why(verdict) == "timeout" and elapsed < 1.0 + SLACK
    # swallowing the harness's alarm does not help: the parent kills the run at the deadline
    sticky = ("while True:\n    try:\n        while True:\n            pass\n"
              "    except BaseException:\n        pass")
    verdict, elapsed = timed(block(sticky), ADD, test_timeout_s=0.3, deadline_s=1.0)
    assert why(verdict) == "timeout" and elapsed < 1.0 + SLACK


@needs_sandbox
def test_unbounded_printing_is_cut():
    verdict, elapsed = timed(block("while True:\n    print('x' * 10000)"), ADD, deadline_s=3.0)
    assert why(verdict) == "output limit" and elapsed < 3.0 + SLACK


@needs_sandbox
def test_killing_the_parent_fails_harmlessly():
    prog = ("import os, signal\nfor pid in (os.getppid(), -1, 0):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "print('blocked')")
    verdict, elapsed = timed(block(prog), ONE, deadline_s=2.0)
    assert elapsed < 2.0 + SLACK
    assert verify("code", block("print('blocked')"), ONE).correct  # and we are still here


@needs_sandbox
def test_exit_before_the_tests_fails():
    call = {"fn_name": "f", "inputs": [[1]], "outputs": [1]}
    early = verify("code", block("import sys\nsys.exit(0)\ndef f(x):\n    return x"), call)
    assert not early.correct and why(early) == "runtime error: exit before the tests ran"
    hard = verify("code", block("import os\nos._exit(0)\ndef f(x):\n    return x"), call)
    assert not hard.correct
    # Each test is its own process judged by its output and exit status alone, so a program that
    # exits at once passes only a test whose expected output is empty (a program that prints
    # nothing is indistinguishable from it, as on any stdin/stdout judge).
    stdio = verify("code", block("import os\nos._exit(0)"), {"inputs": ["", ""],
                                                             "outputs": ["0", ""]})
    assert not stdio.correct and stdio.score == 0.5


@needs_sandbox
def test_forged_results_do_not_pass():
    prog = ("import os, sys, json\nfd = int(sys.argv[1])\n"
            "for i in range(3):\n"
            "    record = {'i': i, 'status': 'ok', 'out': 'pass'}\n"
            "    os.write(fd, (json.dumps(record) + '\\n').encode())\n"
            "os.write(fd, b'{\"done\": true}\\n')\nos._exit(0)")
    verdict = verify("code", block(prog), ADD)
    assert not verdict.correct and verdict.score == 0.0


@needs_sandbox
def test_concurrent_runs_do_not_interfere():
    results = []
    prog = block("a, b = map(int, input().split())\nprint(a + b)")
    threads = [threading.Thread(target=lambda: results.append(verify("code", prog, ADD)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [v.correct for v in results] == [True] * 4


def test_unisolated_tier_is_refused_unless_allowed(monkeypatch):
    """Where no tier isolates the filesystem, code is not scored unless the caller opts in; the
    opt-in tier's guard then blocks sockets and process creation (bypassable, so the reason names
    the tier). Forced here on a machine that has namespaces."""
    basic = sandbox.Isolation("unisolated", "host", "socket guard", "process group", "same")
    monkeypatch.setattr(sandbox, "_isolation", basic)
    with pytest.raises(sandbox.SandboxUnavailable, match="allow_unisolated_sandbox=True"):
        verify("code", block("print('blocked')"), ONE)
    from verifiers import VerifierPool
    with VerifierPool(workers=1, timeout_s=10, progress=False, context="fork") as pool:
        with pytest.raises(sandbox.SandboxUnavailable):  # refused before any sample is sent
            pool.map("code", [block("print('blocked')")], [ONE])
    net = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\n"
           "except OSError:\n    print('blocked')")
    opt_in = {"allow_unisolated_sandbox": True}
    verdict = verify("code", block(net), ONE, **opt_in)
    assert verdict.correct and verdict.reason == "ok [sandbox: unisolated]"
    fork = ("import os, subprocess\nfor f in (os.fork, lambda: subprocess.run(['true'])):\n"
            "    try:\n        f()\n        print('forked')\n    except OSError:\n        pass\n"
            "print('blocked')")
    assert verify("code", block(fork), ONE, **opt_in).correct
    assert verify("code", block("a, b = map(int, input().split())\nprint(a + b)"), ADD,
                  **opt_in).correct


# --- public schemas (issue 9): stdin/stdout case lists and function-call cases ----------------------

SQUARE = "n = int(input())\nprint(n * n)   \n\n"  # trailing spaces and a blank line are forgiven


@pytest.mark.parametrize("reference", [
    [{"input": "3\n", "output": "9\n", "testtype": "stdin"}, {"input": "4", "output": "16"}],
    {"tests": [{"input": "3\n", "output": "9\n"}, {"input": "4\n", "output": "16\n"}]},
    {"input": ["3\n", "4\n"], "output": ["9\n", "16\n"]},                      # CodeContests split
    {"public_tests": {"input": ["3\n"], "output": ["9\n"]},
     "private_tests": {"input": ["4\n"], "output": ["16\n"]},
     "generated_tests": {"input": [], "output": []}},
    json.dumps({"inputs": ["3\n", "4\n"], "outputs": ["9", "16"]}),           # APPS input_output
])
@needs_sandbox
def test_stdin_stdout_schemas(reference):
    verdict = verify("code", block(SQUARE), reference)
    assert verdict.correct and why(verdict) == "ok", verdict
    wrong = verify("code", block("n = int(input())\nprint(n * n + 1)"), reference)
    assert wrong.score == 0.0


@needs_sandbox
def test_contest_splits_all_run():
    ref = {"public_tests": {"input": ["3\n"], "output": ["9\n"]},
           "private_tests": {"input": ["4\n"], "output": ["17\n"]}}  # a private test it fails
    assert verify("code", block(SQUARE), ref).score == 0.5


@needs_sandbox
def test_function_call_schemas():
    lcb = {"func_name": "maxSum", "tests": [
        {"input": "[1, 2, 3]\n2", "output": "5", "testtype": "functional"},
        {"input": "[4, -1]\n1", "output": "4", "testtype": "functional"}]}
    prog = ("class Solution:\n    def maxSum(self, nums, k):\n"
            "        return sum(sorted(nums)[-k:])")
    assert verify("code", block(prog), lcb).correct
    kwargs = {"fn_name": "f", "inputs": [{"a": 1, "b": 2}], "outputs": [-1]}
    assert verify("code", block("def f(a, b):\n    return a - b"), kwargs).correct
    assert not verify("code", block("def f(a, b):\n    return b - a"), kwargs).correct


def test_bad_case_lists_are_value_errors():
    with pytest.raises(ValueError, match="'input' and 'output'"):
        parse_tests([{"input": "1"}])
    with pytest.raises(ValueError):
        parse_tests({"tests": []})


def test_unordered_call_results():
    from verifiers.code import _case_ok
    out = json.dumps([2, 1, 1]).encode()
    assert _case_ok("call", out, {"__set__": [1, 2]}, 1e-6, 1e-9)
    assert not _case_ok("call", out, {"__sorted__": [1, 2]}, 1e-6, 1e-9)
    assert _case_ok("call", out, {"__sorted__": [1, 1, 2]}, 1e-6, 1e-9)
    assert not _case_ok("call", out, {"__set__": [1, 3]}, 1e-6, 1e-9)
    assert not _case_ok("call", b'"12"', {"__set__": ["1", "2"]}, 1e-6, 1e-9)  # a string is no set
