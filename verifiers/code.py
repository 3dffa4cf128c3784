"""Code verifier: run the completion's final Python block against the reference tests, sandboxed.

    verify_code(completion, reference, **options) -> Verdict

Extraction: only the text after `</think>` counts (an unclosed `<think>` fails); the last closed
fenced block tagged python/py/python3 or untagged is the program.

Reference: stdin/stdout cases `{"inputs": [str], "outputs": [str]}` (APPS / LiveCodeBench) or
function-call cases `{"fn_name": "f", "inputs": [[args...]], "outputs": [value]}`; an input may also
be LiveCodeBench's newline-separated JSON arguments, an output its JSON text. A JSON string holding
either form is accepted. A malformed reference raises ValueError (a dataset bug, not a model error).

All tests of a sample run in one sandboxed interpreter (verifiers/sandbox.py) under HARNESS, which
runs each case with its own alarm and streams one JSON record per case back; the expected outputs
never enter the sandbox, so a program cannot read them, and a case without a record (the program
called `exit(0)` or `os._exit` before the tests, or died) fails. Comparison happens here:
stdin/stdout outputs must have the same number of lines (trailing whitespace and trailing blank
lines ignored), tokens equal as text or as numbers (integers exactly, others within `rtol`/`atol`,
in Decimal, so 50000000000000000 != 50000000000000001 as LiveCodeBench warns); call results
compare structurally with the same number rule. A non-zero exit fails that case.

Options (defaults): test_timeout_s=6.0 (LiveCodeBench's per-test limit), deadline_s=30.0 for the
whole sample (capped below a VerifierPool's deadline), rtol=1e-6, atol=1e-9, memory_mb=2048,
max_output_bytes=1 MiB per test, fail_fast=False (stop at the first failing test).

Verdict: score = fraction of tests passed, correct = all passed; reason "ok", "k/n tests passed",
"no code block", "unclosed <think>", "syntax error", "timeout", "memory limit", "output limit",
"runtime error: ..." (the last four when no test passed and the first failure was of that kind).
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

# Runs inside the sandbox: argv[1] is the result fd, argv[2] == "guard" asks for the socket guard.
# Input on fd 0: a JSON payload (code, mode, fn_name, inputs, timeout_s, max_output_bytes,
# fail_fast). Output: one JSON line per event. Stdlib only; it runs under `python -I -S`.
HARNESS = r'''
import io, json, os, signal, sys, time
_fd = int(sys.argv[1])
def _send(obj):
    view = memoryview((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace"))
    while view:
        view = view[os.write(_fd, view):]
with open(0, "rb", closefd=False) as f:
    P = json.loads(f.read())
if len(sys.argv) > 2 and sys.argv[2] == "guard":  # no namespaces here: block sockets and forks
    import socket, _socket, _posixsubprocess  # (bypassable; the sandbox reports this tier)
    def _blocked(*a, **k):
        raise PermissionError("network and process creation are disabled in the sandbox")
    class _NoSocket(socket.socket):
        def __init__(self, *a, **k):
            _blocked()
    socket.socket = socket.SocketType = _socket.socket = _NoSocket
    socket.create_connection = socket.create_server = socket.socketpair = socket.fromfd = _blocked
    for _name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp",
                  "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp"):
        if hasattr(os, _name):
            setattr(os, _name, _blocked)
    _posixsubprocess.fork_exec = _blocked
try:
    CODE = compile(P["code"], "<solution>", "exec")
except BaseException as e:
    _send({"compile_error": (type(e).__name__ + ": " + str(e))[:300]})
    os._exit(0)
import builtins
def _quit(code=None):  # site.py's exit()/quit(), which `-S` leaves out; contest code calls them
    raise SystemExit(code)
builtins.exit = builtins.quit = _quit
class CaseTimeout(BaseException):
    pass
def _alarm(signum, frame):
    raise CaseTimeout()
signal.signal(signal.SIGALRM, _alarm)
CAP, TIMEOUT = P["max_output_bytes"], P["timeout_s"]
def _redirect(stdin_text):
    with open("stdin.txt", "w", encoding="utf-8") as f:
        f.write(stdin_text)
    for path, fd, flags in (("stdin.txt", 0, os.O_RDONLY),
                            ("stdout.txt", 1, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        new = os.open(path, flags, 0o600)
        if new != fd:  # the program may have closed fd 0 or 1, and open() reuses it
            os.dup2(new, fd)
            os.close(new)
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
def _captured():
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    with open("stdout.txt", "rb") as f:
        data = f.read(CAP + 1)
    return data[:CAP].decode("utf-8", "replace"), len(data) > CAP
def _join_threads(until):
    if "threading" in sys.modules:  # competitive code often runs main() in a big-stack thread
        import threading
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join(max(0.0, until - time.monotonic()))
def _classify(e):
    if isinstance(e, CaseTimeout):
        return "timeout", None
    if isinstance(e, MemoryError):
        return "memory", None
    if isinstance(e, SystemExit):
        if e.code is None or e.code == 0:
            return "ok", None
        return "error", "exit code " + str(e.code)[:50]
    return "error", (type(e).__name__ + ": " + str(e))[:200]
def _encode(value):
    def default(v):
        if isinstance(v, (set, frozenset)):
            try:
                return sorted(v)
            except TypeError:
                return list(v)
        return {"__repr__": repr(v)[:1000]}
    return json.dumps(value, default=default)
def _call_target(ns):
    name = P["fn_name"]
    if callable(ns.get(name)):
        return ns[name]
    if isinstance(ns.get("Solution"), type):
        return getattr(ns["Solution"](), name)
    raise NameError("no function " + repr(name))
NS = None
if P["mode"] == "call":  # define the functions once, under the per-test alarm
    _redirect("")
    NS = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
        try:
            exec(CODE, NS)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:
        status, err = _classify(e)
        if isinstance(e, SystemExit):
            status, err = "error", "exit before the tests ran"
        _send({"load_error": status, "err": err})
        os._exit(0)
_send({"compiled": True})
for i, inp in enumerate(P["inputs"]):
    status, err, out, start = "ok", None, None, time.monotonic()
    try:
        _redirect(inp if P["mode"] == "stdio" else "")
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
        try:
            if P["mode"] == "stdio":
                exec(CODE, {"__name__": "__main__", "__builtins__": __builtins__})
                _join_threads(start + TIMEOUT)
                sys.stdout.flush()
            else:
                target = _call_target(NS)
                value = target(**inp) if isinstance(inp, dict) else target(*inp)
                out = _encode(value)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:
        status, err = _classify(e)
    try:
        text, over = _captured()
    except BaseException:
        text, over = "", False
    if P["mode"] == "stdio":
        out = text
    if over or (out is not None and len(out) > CAP):
        status, err, out = "output", None, None
    _send({"i": i, "status": status, "err": err, "out": out,
           "t": round(time.monotonic() - start, 4)})
    if P["fail_fast"] and status != "ok":
        break
_send({"done": True})
os._exit(0)
'''


def verify_code(completion: str, reference, *, test_timeout_s: float = 6.0,
                deadline_s: float = 30.0, rtol: float = 1e-6, atol: float = 1e-9,
                memory_mb: int = 2048, max_output_bytes: int = 1 << 20,
                fail_fast: bool = False) -> Verdict:
    answer = answer_text(completion)
    if answer is None:
        return Verdict.fail("unclosed <think>")
    code = extract_code(answer)
    if code is None:
        return Verdict.fail("no code block")
    mode, fn_name, inputs, outputs = parse_tests(reference)
    payload = {"code": code, "mode": mode, "fn_name": fn_name, "inputs": inputs,
               "timeout_s": test_timeout_s, "max_output_bytes": max_output_bytes,
               "fail_fast": fail_fast}
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
    biggest_mb = (max((len(s) for s in inputs if isinstance(s, str)), default=0) >> 20) + 1
    limits = sandbox.Limits(memory_mb=memory_mb,
                            file_mb=max(4, (max_output_bytes >> 20) + 1, biggest_mb),
                            tmpfs_mb=64 + 2 * biggest_mb)
    cap = min(len(inputs) * (2 * max_output_bytes + 1024) + 65536, 1 << 28)
    result = sandbox.run_python(HARNESS, data, deadline_s=deadline_s, limits=limits,
                                max_output_bytes=cap)
    return _judge(code, mode, outputs, result, rtol, atol)


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
    """(mode, fn_name, inputs, outputs) from a reference dict or its JSON text; mode is
    "stdio" or "call"."""
    if isinstance(reference, (str, bytes)):
        try:
            reference = json.loads(reference)
        except ValueError as e:
            raise ValueError(f"code reference is not valid JSON: {e}") from None
    if not isinstance(reference, dict) or "inputs" not in reference or "outputs" not in reference:
        raise ValueError("code reference must be a dict with 'inputs' and 'outputs' "
                         f"(and optionally 'fn_name'), got {type(reference).__name__}")
    inputs, outputs = list(reference["inputs"]), list(reference["outputs"])
    if len(inputs) != len(outputs) or not inputs:
        raise ValueError(f"code reference has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "need the same non-zero number")
    fn_name = reference.get("fn_name")
    if not fn_name:
        return "stdio", None, [_as_text(s) for s in inputs], [_as_text(s) for s in outputs]
    return "call", str(fn_name), [_as_args(a) for a in inputs], [_as_value(o) for o in outputs]


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


def _judge(code, mode, outputs, result, rtol, atol) -> Verdict:
    records, compile_error, load_error = {}, None, None
    for line in result.output.split(b"\n"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a partial last line or bytes the program wrote to our fd
        if not isinstance(rec, dict):
            continue
        if "compile_error" in rec and not records:
            compile_error = rec["compile_error"]
        elif "load_error" in rec and not records:
            load_error = (rec.get("load_error"), rec.get("err"))
        elif isinstance(rec.get("i"), int) and 0 <= rec["i"] < len(outputs):
            records.setdefault(rec["i"], rec)  # first record wins
    n = len(outputs)
    if compile_error is not None:
        return Verdict(False, 0.0, code, "syntax error")
    missing = _missing_reason(result)
    failures, passed = [], 0
    for i, expected in enumerate(outputs):
        rec = records.get(i)
        if load_error is not None:
            failures.append(_failure(*load_error))
        elif rec is None:
            failures.append(missing)
        elif rec.get("status") != "ok":
            failures.append(_failure(rec.get("status"), rec.get("err")))
        elif _case_ok(mode, rec.get("out"), expected, rtol, atol):
            passed += 1
        else:
            failures.append("wrong answer")
    if passed == n:
        return Verdict(True, 1.0, code, "ok")
    reason = f"{passed}/{n} tests passed"
    if passed == 0 and failures[0] != "wrong answer":
        reason = failures[0]
    return Verdict(False, passed / n, code, reason)


def _missing_reason(result) -> str:
    if result.timed_out:
        return "timeout"
    if result.truncated:
        return "output limit"
    rc = result.returncode
    if rc is not None and rc < 0:
        return f"runtime error: killed by signal {-rc}"
    return f"runtime error: exited with code {rc} before all tests ran"


def _failure(status, err) -> str:
    return {"timeout": "timeout", "memory": "memory limit", "output": "output limit"}.get(
        status, f"runtime error: {err or status}")


def _case_ok(mode, got, expected, rtol, atol) -> bool:
    if got is None:
        return False
    if mode == "stdio":
        return outputs_match(got, expected, rtol, atol)
    try:
        value = json.loads(got)
    except ValueError:
        return False
    if values_match(value, expected, rtol, atol):
        return True
    # APPS stores some call outputs wrapped in a one-element list.
    return isinstance(expected, list) and len(expected) == 1 and values_match(value, expected[0],
                                                                              rtol, atol)


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
