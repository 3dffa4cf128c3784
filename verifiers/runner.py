"""The sandbox's trusted runner: runs each test of one program in a fresh child process.

Not imported by the judge: verifiers/sandbox.py reads this file's text and runs it as
`python -I -S -c SOURCE RESULT_FD RUN_UID FLAGS` inside the sandbox (stdlib only). In the
"pivot_root" tier it is PID 1 of the sandbox's PID namespace, which the kernel shields from every
signal its children send (SIGKILL included) that it has no handler for; as root it keeps uid 0 while
the program runs under RUN_UID, and it makes itself non-dumpable, so a program can neither ptrace it
nor open /proc/1/fd or /proc/1/mem.

Input on fd 0: JSON {"code", "mode" ("stdio" | "call"), "fn_name", "inputs", "timeout_s",
"max_output_bytes", "memory_mb", "file_mb", "nproc", "workdir"}; the runner makes its scratch dir
inside "workdir" and empties only that one. Expected outputs are not part of the input: they never
enter the sandbox.

Per test i the runner forks a child that gets test i's input as stdin (or call arguments; the
other inputs are still in the memory it inherits, and the issue allows that: an expected output
never is, since the runner never has one), drops to RUN_UID, sets rlimits, and runs the program. In "stdio" mode the child's stdout is a pipe
the runner reads; in "call" mode stdout goes to /dev/null and the child writes the JSON of the
function's return value to fd 3, another pipe. When the child is done (or its time is up) the
runner kills every process the test left behind, wipes the scratch dir and writes one frame to
RESULT_FD: a JSON header line {"i", "status", "err", "t", "n"} followed by n raw output bytes.
Statuses: ok (exit 0), error, timeout, memory, output (past max_output_bytes). The program's only
say in a frame is its output bytes and its exit status; the judge compares the bytes.

Before the tests a child compiles the program (compiling runs none of its code) and the runner
writes {"compiled": true} or {"compile_error": "..."}; {"done": true} ends the stream.
"""

import json
import os
import resource
import select
import signal
import sys
import time

MEMORY_EXIT = 120  # the child's exit code after a MemoryError


def main():
    result_fd, run_uid, flags = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    pidns = "pidns" in flags
    _not_dumpable()
    with open(0, "rb", closefd=False) as f:
        payload = json.loads(f.read())
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    # The scratch dir is one the runner makes itself, and the only thing it ever empties: wiping
    # the given base (/tmp) directly would empty the host's /tmp if the root were not pivoted.
    # (tempfile and shutil would double the runner's start-up time; a new name is enough here.)
    workdir = os.path.join(payload["workdir"], "work-%d-%d" % (os.getpid(), time.monotonic_ns()))
    os.mkdir(workdir, 0o700)
    os.chmod(workdir, 0o777)
    payload["workdir"] = workdir
    if pidns:  # PID 1 must reap orphans; default handlers would leave zombies or ignore nothing
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    compiled = _compile_check(payload, run_uid, flags)
    _send(result_fd, compiled)
    if "compile_error" in compiled:
        _send(result_fd, {"done": True})
        return
    for i, inp in enumerate(payload["inputs"]):
        header, out = _run_test(payload, i, inp, run_uid, flags)
        _send(result_fd, header, out)
    _send(result_fd, {"done": True})


def _send(fd, header, body=b""):
    header = dict(header, n=len(body))
    view = memoryview((json.dumps(header) + "\n").encode() + body)
    while view:
        view = view[os.write(fd, view):]


def _not_dumpable():
    """Only needed where the program shares the runner's uid (a user namespace, not root): a
    non-dumpable process cannot be ptraced, and its /proc files belong to root."""
    if os.getuid() == 0:
        return
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (ImportError, OSError, AttributeError):
        pass


def _compile_check(payload, run_uid, flags):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # compiling executes none of the program's code, but may cost memory and time
        try:
            os.close(r)
            _limit(payload, run_uid)
            try:
                compile(payload["code"], "<solution>", "exec")
                os.write(w, b"ok")
            except BaseException as e:
                os.write(w, (type(e).__name__ + ": " + str(e))[:300].encode("utf-8", "replace"))
        finally:
            os._exit(0)
    os.close(w)
    data, _, timed_out = _drain([r], payload["timeout_s"], 4096)
    _cleanup(pid, run_uid, flags, payload)
    os.close(r)
    text = data[r].decode("utf-8", "replace")
    if text == "ok":
        return {"compiled": True}
    return {"compile_error": "timeout while compiling" if timed_out else text or "compile failed"}


def _run_test(payload, i, inp, run_uid, flags):
    call = payload["mode"] == "call"
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin = os.memfd_create("stdin")
    data = b"" if call else inp.encode("utf-8", "replace")
    view = memoryview(data)
    while view:
        view = view[os.write(stdin, view):]
    os.lseek(stdin, 0, os.SEEK_SET)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _child(payload, inp, stdin, out_w, err_w, run_uid, flags)
        finally:
            os._exit(121)
    for fd in (out_w, err_w, stdin):
        os.close(fd)
    cap = payload["max_output_bytes"]
    got, over, timed_out = _drain([out_r, err_r], payload["timeout_s"], cap, tail={err_r: 2048},
                                  pid=pid)
    status_word = _cleanup(pid, run_uid, flags, payload, kill_first=timed_out or over)
    os.close(out_r)
    os.close(err_r)
    header = {"i": i, "t": round(time.monotonic() - start, 4)}
    header.update(_status(status_word, timed_out, over, got[err_r]))
    return header, (b"" if over else got[out_r])


def _status(wait_status, timed_out, over, err_tail):
    last = [ln for ln in err_tail.decode("utf-8", "replace").splitlines() if ln.strip()]
    err = last[-1][:200] if last else None
    if timed_out:
        return {"status": "timeout", "err": None}
    if over:
        return {"status": "output", "err": None}
    if wait_status is None:
        return {"status": "error", "err": "lost"}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):  # RLIMIT_CPU: soft SIGXCPU, hard SIGKILL
            return {"status": "timeout", "err": None}
        return {"status": "error", "err": "killed by signal %d" % sig}
    code = os.WEXITSTATUS(wait_status)
    if code == 0:
        return {"status": "ok", "err": None}
    if code == MEMORY_EXIT:
        return {"status": "memory", "err": None}
    return {"status": "error", "err": err or "exit code %d" % code}


def _drain(fds, timeout_s, cap, tail=None, pid=None):
    """Read fds until all hit EOF, the process `pid` has exited (then only what is already in the
    pipes is read, so a leftover holding them open does not stretch the test), or the timeout. fds
    in `tail` keep only their last bytes; the others stop once together they pass `cap`.
    Returns (data, over_cap, timed_out)."""
    tail = tail or {}
    data = {fd: b"" for fd in fds}
    open_fds, size, exited = list(fds), 0, False
    pidfd = _pidfd(pid)
    deadline = time.monotonic() + timeout_s
    try:
        while open_fds:
            left = 0 if exited else deadline - time.monotonic()
            if left < 0:
                return data, False, True
            watch = open_fds + ([pidfd] if pidfd is not None and not exited else [])
            ready, _, _ = select.select(watch, [], [], left)
            if not ready and exited:
                break
            if pidfd in ready:
                exited = True
                continue
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    open_fds.remove(fd)
                elif fd in tail:
                    data[fd] = (data[fd] + chunk)[-tail[fd]:]
                else:
                    data[fd] += chunk
                    size += len(chunk)
                    if size > cap:
                        return data, True, False
        return data, False, False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid):
    """A descriptor that turns readable when `pid` exits (Linux 5.3+), else None."""
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _cleanup(pid, run_uid, flags, payload, kill_first=False):
    """Wait for the test's child (killing it first when asked or when it outlives the pipes), kill
    whatever it left running, reap, and empty the scratch dir. Returns the child's wait status."""
    status = None
    if not kill_first:
        end = time.monotonic() + 1.0  # its pipes are closed; it should be gone now
        while status is None and time.monotonic() < end:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            else:
                time.sleep(0.002)
    _kill_leftovers(pid, run_uid, flags)
    if status is None:
        try:
            status = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            status = None
    while True:  # orphans re-parented to us (PID 1) and killed above
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    _wipe(payload["workdir"])
    return status


def _kill_leftovers(pid, run_uid, flags):
    if "pidns" in flags:  # PID 1's kill(-1) reaches every other process of the namespace
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if run_uid >= 0:  # processes that left the group with setsid() still run under run_uid
        helper = os.fork()
        if helper == 0:
            try:
                os.setuid(run_uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)


def _wipe(workdir):
    """Empty the scratch dir without following symlinks (fwalk works on directory fds)."""
    for _, dirs, files, dir_fd in os.fwalk(workdir, topdown=False):
        for name in files:
            _unlink(name, dir_fd)
        for name in dirs:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except NotADirectoryError:  # a symlink to a directory
                _unlink(name, dir_fd)
            except OSError:
                pass


def _unlink(name, dir_fd):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _limit(payload, run_uid):
    os.setsid()
    cpu = int(payload["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = payload["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = payload["file_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (payload["nproc"], payload["nproc"]))
    if run_uid >= 0:
        os.setgroups([])
        os.setgid(run_uid)
        os.setuid(run_uid)
    # no_new_privs is inherited from the runner (set before its exec) and survives the uid
    # change; in a PID namespace the runner's death kills every test process with it.
    os.chdir(payload["workdir"])


def _child(payload, inp, stdin, out_w, err_w, run_uid, flags):
    call = payload["mode"] == "call"
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(stdin, 0)
    os.dup2(null if call else out_w, 1)
    os.dup2(err_w, 2)
    if call:
        os.dup2(out_w, 3)
    os.closerange(4 if call else 3, 1 << 16)
    _limit(payload, run_uid)
    sys.argv = [""]  # as for `python -c`: the runner's arguments are none of the program's business
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    if "guard" in flags:
        _guard()
    import builtins

    def _quit(code=None):  # site.py's exit()/quit(), which `-S` leaves out; contest code calls them
        raise SystemExit(code)

    builtins.exit = builtins.quit = _quit
    code = 0
    try:
        program = compile(payload["code"], "<solution>", "exec")
        if call:
            _call(program, payload["fn_name"], inp)
        else:
            exec(program, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as e:
        code = _exit_code(e)
    except MemoryError:
        code = MEMORY_EXIT
    except BaseException as e:
        code = 1
        _report(type(e).__name__ + ": " + str(e))
    code = _shutdown(code)
    os._exit(code)


def _call(program, fn_name, args):
    ns = {"__name__": "solution"}
    try:
        exec(program, ns)
    except SystemExit:
        _report("exit before the tests ran")
        os._exit(1)
    target = ns.get(fn_name)
    if not callable(target):
        if not isinstance(ns.get("Solution"), type):
            raise NameError("no function " + repr(fn_name))
        target = getattr(ns["Solution"](), fn_name)
    if isinstance(args, dict) and list(args) == ["__args__"]:  # Python literals: tuples stay tuples
        import ast
        args = ast.literal_eval(args["__args__"])
    value = target(**args) if isinstance(args, dict) else target(*args)
    data = memoryview(_encode(value).encode("utf-8", "replace"))
    while data:
        data = data[os.write(3, data):]


def _encode(value):
    def default(v):
        if isinstance(v, (set, frozenset)):
            try:
                return sorted(v)
            except TypeError:
                return list(v)
        return {"__repr__": repr(v)[:1000]}
    return json.dumps(value, default=default)


def _exit_code(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    _report(str(e.code))
    return 1


def _report(text):
    try:
        sys.stderr.write("\n" + text[:300] + "\n")
        sys.stderr.flush()
    except BaseException:
        pass


def _shutdown(code):
    """What the interpreter does at exit: wait for non-daemon threads, run atexit, flush."""
    try:
        if "threading" in sys.modules:  # competitive code often runs main() in a big-stack thread
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException:
        code = code or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            code = code or 1
    return code


def _guard():
    """The unisolated tier only: block sockets and process creation (bypassable, and reported)."""
    import _posixsubprocess
    import _socket
    import socket

    def _blocked(*a, **k):
        raise PermissionError("network and process creation are disabled in the sandbox")

    class _NoSocket(socket.socket):
        def __init__(self, *a, **k):
            _blocked()

    socket.socket = socket.SocketType = _socket.socket = _NoSocket
    socket.create_connection = socket.create_server = socket.socketpair = _blocked
    socket.fromfd = _blocked
    for name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp", "execv",
                 "execve", "execvp", "execvpe", "execl", "execle", "execlp"):
        if hasattr(os, name):
            setattr(os, name, _blocked)
    _posixsubprocess.fork_exec = _blocked


if __name__ == "__main__":
    main()
