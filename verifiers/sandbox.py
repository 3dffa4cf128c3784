"""Run an untrusted Python program on test inputs, each test in its own process, in a sandbox.

    run_tests(code, mode, fn_name, inputs, timeout_s=..., deadline_s=..., limits=Limits())
        -> SandboxRun(compile_error, tests={i: TestRun}, timed_out, truncated, tier)

The judge (this process) owns the expected outputs and never sends them: the sandbox receives the
program and the test inputs only. Inside, a trusted runner (verifiers/runner.py) forks one child per
test, with that test's input as its stdin (or call arguments), whose stdout (or, for function calls, the JSON of the
return value) comes back over a pipe; the runner relays those bytes with the exit status and the
judge compares them (verifiers/code.py). In-process guards fall to
`().__class__.__bases__[0].__subclasses__()` and friends (docs/verification-and-eval.md 3.5), so the
isolation is the kernel's. Tiers, chosen once per process by a probe (`isolation()`):

"pivot_root" (root, or a kernel that allows unprivileged user namespaces):
  - new mount, PID, network, IPC and UTS namespaces (plus a user namespace when not root);
  - the root is a fresh read-only tmpfs holding only bind mounts, all read-only: the interpreter
    binary, its shared libraries (found with ldd, with /etc/ld.so.cache), the standard library
    (its site-packages hidden under an empty tmpfs), /dev/{null,zero,random,urandom}; a fresh
    /proc for the new PID namespace; a private size-limited tmpfs at /tmp (the scratch and working
    dir, emptied after every test). pivot_root then detaches the old root, so the project tree,
    home directories, runs/, the host's /tmp and every other file are not there to read or write;
  - no network at all (an empty network namespace: no loopback, no reachable unix sockets);
  - the runner is PID 1: when it dies every process of the run dies; per test it kills whatever
    the test left behind; as root the program runs under a fresh uid (>= 1,000,000), so it cannot
    signal or trace the runner, and RLIMIT_NPROC is real.
"unisolated" (no namespaces): the runner runs on the host filesystem in a temp dir, under a fresh
  uid when root, with a socket/fork guard in the program's process that a program can undo. It does
  not isolate the filesystem, so `run_tests` refuses it with SandboxUnavailable unless the caller
  passes `allow_unisolated=True`.

Both tiers: rlimits per test (CPU, address space, file size, processes), no_new_privs, the parent's
death kills the run, `python -I -S` with a scrubbed environment, output read up to a cap, and a
wall deadline for the whole run after which everything is killed.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from verifiers import sandbox_root

_UID_BASE = sandbox_root.UID_BASE
_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
_deadline_cap_s: float | None = None
_run_numbers = itertools.count()
_run_numbers_lock = threading.Lock()


class SandboxUnavailable(ValueError):
    """No tier isolates the filesystem here and the caller did not allow running unisolated (a
    ValueError, so `distillery verify` reports it as a clear error and exits 2)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (each test's process gets them).

    memory_mb: RLIMIT_AS, address space in MiB (virtual, so thread stacks count).
    file_mb: RLIMIT_FSIZE, the largest file the program may write, in MiB.
    nproc: RLIMIT_NPROC, processes and threads of the run's own uid (enforced only off root).
    tmpfs_mb: size of the private scratch dir (/tmp) in MiB.
    """

    memory_mb: int = 2048
    file_mb: int = 4
    nproc: int = 32
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class TestRun:
    """status: ok | error | timeout | memory | output. out: the program's output bytes (stdout, or
    the JSON of the return value in call mode). err: a short error text for the reason."""

    status: str
    out: bytes
    err: str | None
    wall_s: float


@dataclass
class SandboxRun:
    """compile_error: the SyntaxError text (no test ran). tests: index -> TestRun for every test
    that finished. timed_out / truncated: the whole run hit its deadline / output cap.
    returncode: the runner's exit status (None when we killed it)."""

    tier: str
    compile_error: str | None = None
    tests: dict = field(default_factory=dict)
    timed_out: bool = False
    truncated: bool = False
    returncode: int | None = None
    wall_s: float = 0.0


@dataclass(frozen=True)
class Isolation:
    """tier: "pivot_root" or "unisolated"; filesystem: what the program can see; reason: why the
    strongest tier failed here (empty when it works)."""

    tier: str
    filesystem: str
    network: str
    processes: str
    user: str
    reason: str = ""

    @property
    def isolates_filesystem(self) -> bool:
        return self.tier == "pivot_root"

    def __str__(self) -> str:
        return (f"{self.tier}: fs={self.filesystem}, network={self.network}, "
                f"processes={self.processes}, user={self.user}")


def set_deadline_cap(seconds: float | None) -> None:
    """Cap every later run's deadline in this process (a pool worker sets it below its own)."""
    global _deadline_cap_s
    _deadline_cap_s = seconds


def effective_deadline(deadline_s: float) -> float:
    return deadline_s if _deadline_cap_s is None else min(deadline_s, _deadline_cap_s)


def isolation() -> Isolation:
    """The tier in force here, found once per process by running a tiny program in it."""
    global _isolation
    if _isolation is None:
        _isolation = _probe()
    return _isolation


_isolation: Isolation | None = None


def require_isolation(allow_unisolated: bool = False) -> Isolation:
    """The tier in force; raises SandboxUnavailable when it does not isolate the filesystem and
    the caller did not allow that."""
    iso = isolation()
    if not iso.isolates_filesystem and not allow_unisolated:
        raise SandboxUnavailable(
            "no sandbox tier isolates the filesystem on this machine "
            f"({iso.reason or 'namespaces unavailable'}); an unisolated run would let the "
            "program read expected outputs from host files. Run as root or enable unprivileged "
            "user namespaces, or pass allow_unisolated=True (verify option "
            "allow_unisolated_sandbox=True) to accept that risk.")
    return iso


def run_tests(code: str, mode: str, fn_name: str | None, inputs: list, *, timeout_s: float,
              deadline_s: float, limits: Limits = Limits(), max_output_bytes: int = 1 << 20,
              allow_unisolated: bool = False, stop=None) -> SandboxRun:
    """Run `code` on every input, each in a fresh process; see the module docstring.

    mode: "stdio" (inputs are stdin texts) or "call" (inputs are argument lists/dicts for
    `fn_name`). timeout_s: wall limit per test. deadline_s: wall limit for the whole run.
    stop(i, TestRun) -> bool: called as each test arrives; True kills the run (fail-fast)."""
    iso = require_isolation(allow_unisolated)
    payload = {"code": code, "mode": mode, "fn_name": fn_name, "inputs": inputs,
               "timeout_s": timeout_s, "max_output_bytes": max_output_bytes,
               "memory_mb": limits.memory_mb, "file_mb": limits.file_mb, "nproc": limits.nproc}
    return _run(payload, iso.tier, effective_deadline(deadline_s), limits, stop)


def _probe() -> Isolation:
    root = os.geteuid() == 0
    reason = ""
    try:
        run = _run({"code": "print(6 * 7)", "mode": "stdio", "fn_name": None, "inputs": [""],
                    "timeout_s": 10.0, "max_output_bytes": 64, "memory_mb": 1024, "file_mb": 1,
                    "nproc": 32}, "pivot_root", 20.0, Limits(), None)
        got = run.tests.get(0)
        if got is not None and got.status == "ok" and got.out == b"42\n":
            return Isolation("pivot_root", "interpreter + stdlib read-only, private /tmp, own /proc",
                             "empty netns", "pidns + rlimits",
                             f"fresh uid >= {_UID_BASE}" if root else "user namespace (same uid)")
        reason = f"probe run failed: {run}"
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        reason = f"{type(e).__name__}: {e}"
    switch = root and sandbox_root.hidden_ancestor(sandbox_root.interpreter_prefix()) is None
    return Isolation("unisolated", "host filesystem (temp dir cwd)", "socket guard (bypassable)",
                     "process group + rlimits",
                     f"fresh uid >= {_UID_BASE}" if switch else "same as caller", reason)


def _run(payload, tier, deadline_s, limits, stop) -> SandboxRun:
    start = time.monotonic()
    root = os.geteuid() == 0
    prefix = sandbox_root.interpreter_prefix()
    pivot = tier == "pivot_root"
    switch_uid = root and (pivot or sandbox_root.hidden_ancestor(prefix) is None)
    workdir = "/tmp" if pivot else tempfile.mkdtemp(prefix="sandbox-")
    payload = dict(payload, workdir=workdir)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    if pivot:
        preexec = sandbox_root.pivot_preexec(limits.tmpfs_mb)
    else:
        preexec = sandbox_root.after_identity
        if switch_uid:
            os.chmod(workdir, 0o777)
    flags = ",".join(["pidns"] if pivot else ["guard"])
    read_fd, write_fd = os.pipe()
    try:
        with open(_RUNNER, encoding="utf-8") as f:
            runner = f.read()
        with tempfile.TemporaryFile() as stdin_file:
            stdin_file.write(json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace"))
            stdin_file.seek(0)
            run_uid = _run_uid() if switch_uid else -1
            argv = [sandbox_root.interpreter(prefix), "-I", "-S", "-c", runner, str(write_fd),
                    str(run_uid), flags]
            proc = subprocess.Popen(argv, stdin=stdin_file,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    pass_fds=(write_fd,), env=env, cwd="/" if pivot else workdir,
                                    start_new_session=True, preexec_fn=preexec)
        os.close(write_fd)
        write_fd = -1
        result = SandboxRun(tier)
        try:
            _collect(proc, read_fd, start + deadline_s, _total_cap(payload), result, stop)
        except BaseException:  # Ctrl-C and the like: leave nothing running
            _kill(proc, run_uid, pivot)
            raise
        if result.timed_out or result.truncated or result.returncode == -1:
            _kill(proc, run_uid, pivot)
            result.returncode = None
        else:
            _reap(proc, run_uid, pivot)
            result.returncode = proc.returncode
        result.wall_s = time.monotonic() - start
        return result
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        if not pivot:
            shutil.rmtree(workdir, ignore_errors=True)


def _total_cap(payload) -> int:
    per = payload["max_output_bytes"] + 1024
    return min(len(payload["inputs"]) * per + 65536, 1 << 30)


def _collect(proc, fd, deadline, cap, result: SandboxRun, stop) -> None:
    """Read the runner's frames until {"done"}, EOF, the deadline, the cap or `stop` says so."""
    buf, size = bytearray(), 0
    while True:
        frames_done = _parse_frames(buf, result, stop)
        if frames_done is not None:
            if frames_done:
                return
            result.returncode = -1  # stop() asked to end the run early
            return
        left = deadline - time.monotonic()
        if left <= 0:
            result.timed_out = True
            return
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        if not ready:
            if proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
                return
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            _parse_frames(buf, result, stop)
            return
        buf += data
        size += len(data)
        if size > cap:
            result.truncated = True
            return


def _parse_frames(buf: bytearray, result: SandboxRun, stop) -> bool | None:
    """Consume complete frames from buf; True at {"done"}, False when stop() fired, else None."""
    while True:
        nl = buf.find(b"\n")
        if nl < 0:
            return None
        header = json.loads(bytes(buf[:nl]))  # written by our runner, never by the program
        n = header["n"]
        if len(buf) < nl + 1 + n:
            return None
        body = bytes(buf[nl + 1:nl + 1 + n])
        del buf[:nl + 1 + n]
        if header.get("done"):
            return True
        if "compile_error" in header:
            result.compile_error = header["compile_error"]
        elif "i" in header:
            test = TestRun(header["status"], body, header.get("err"), header.get("t", 0.0))
            result.tests[header["i"]] = test
            if stop is not None and stop(header["i"], test):
                return False


def _kill(proc, run_uid: int, pivot: bool) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is the group id
    except ProcessLookupError:
        pass
    proc.kill()
    _reap(proc, run_uid, pivot)


def _reap(proc, run_uid: int, pivot: bool) -> None:
    """Wait for the runner and make sure nothing it started lives on."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        proc.kill()
        proc.wait()
    try:  # pivot_root: PID 1 is gone, so is its namespace; unisolated: the group's leftovers
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if run_uid >= 0 and not pivot:  # leftovers that left the group with setsid()
        sandbox_root.kill_uid(run_uid)


def _run_uid() -> int:
    """A uid no other live run uses: this process's pid and a per-process counter (256 runs in
    flight per process at most, far above any pool's concurrency)."""
    with _run_numbers_lock:
        n = next(_run_numbers) & 0xFF
    return _UID_BASE + (os.getpid() << 8) + n
