"""Run untrusted Python in a throwaway sandbox process with a hard deadline.

    run_python(source, stdin_data, deadline_s=..., limits=Limits()) -> SandboxResult

The program gets `stdin_data` on fd 0 and writes what the caller wants back to the fd named by
`sys.argv[1]` (a pipe read by the parent, bounded); fds 1 and 2 go to /dev/null. In-process guards fall to
`().__class__.__bases__[0].__subclasses__()` and friends (docs/verification-and-eval.md 3.5), so the
isolation is done by the kernel. Two tiers, chosen once per process by a probe (`isolation()`):

"namespaces" (root, or a kernel that allows unprivileged user namespaces):
  - new network, mount, PID, IPC and UTS namespaces: no network at all (not even loopback), the
    program is PID 1 of its own PID namespace, so when it exits or is killed every process it forked
    dies with it (fork-bomb and `setsid` leftovers included), and it cannot see or signal ours;
  - every mount remounted read-only, a private size-limited tmpfs on /tmp, /var/tmp and /dev/shm,
    and the working directory is a fresh tmpfs that disappears with the namespace;
  - as root: runs under a fresh unprivileged uid (RLIMIT_NPROC counts per uid and root ignores it,
    so a per-run uid makes the process limit real); a Python install under an unreadable home
    (/root/.pyenv) is made reachable by a read-only skeleton mount over that home, which also hides
    the rest of it;
  - fresh /proc (so /proc/<pid>/environ of our processes is not there to read).
"basic" (fallback): own session/process group killed on the deadline, a fresh temp directory,
  a fresh uid when root and the interpreter is reachable, and a socket guard installed by the
  program's own harness (`guard=True` is passed on; it is bypassable, hence reported).

Both tiers: rlimits (CPU, address space, file size, processes), no_new_privs, parent-death signal,
scrubbed environment (PATH, LANG, PYTHONHASHSEED, HOME), `python -I -S`, output read up to a cap
and then the program is killed.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
# statvfs flag -> mount flag to keep when remounting read-only (a user namespace may not drop them)
_KEEP_FLAGS = [(os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
               (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME),
               (os.ST_RELATIME, _MS_RELATIME)]
_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_UID_BASE = 1_000_000  # per-run uids are _UID_BASE + pid: unique among live runs, in no passwd file

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_deadline_cap_s: float | None = None


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run.

    cpu_s: RLIMIT_CPU in seconds (the wall deadline is separate and usually shorter).
    memory_mb: RLIMIT_AS, address space in MiB (virtual, so thread stacks count).
    file_mb: RLIMIT_FSIZE, the largest file the program may write, in MiB.
    nproc: RLIMIT_NPROC, processes and threads of the run's own uid (enforced only off root).
    tmpfs_mb: size of the private working directory and of each private /tmp, in MiB.
    """

    cpu_s: float = 60.0
    memory_mb: int = 2048
    file_mb: int = 4
    nproc: int = 32
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """returncode: the exit status (negative: killed by that signal); None when we killed it.
    timed_out: killed at the deadline. truncated: killed because the output passed its cap.
    output: bytes the program wrote to its result fd (at most the cap)."""

    returncode: int | None
    timed_out: bool
    truncated: bool
    output: bytes
    wall_s: float


@dataclass(frozen=True)
class Isolation:
    """What the kernel gives us here; `network` is "netns" or "socket-guard"."""

    tier: str
    network: str
    filesystem: str
    processes: str
    user: str

    def __str__(self) -> str:
        return (f"{self.tier}: network={self.network}, fs={self.filesystem}, "
                f"processes={self.processes}, user={self.user}")


def set_deadline_cap(seconds: float | None) -> None:
    """Cap every later run's deadline in this process (a pool worker sets it below its own)."""
    global _deadline_cap_s
    _deadline_cap_s = seconds


def effective_deadline(deadline_s: float) -> float:
    return deadline_s if _deadline_cap_s is None else min(deadline_s, _deadline_cap_s)


def run_python(source: str, stdin_data: bytes, *, deadline_s: float, limits: Limits = Limits(),
               max_output_bytes: int = 1 << 24) -> SandboxResult:
    """Run `python -I -S -c source FD [guard]` sandboxed; kill it at the deadline or the output cap.

    The program reads stdin_data from fd 0 and writes its answer to fd int(sys.argv[1]); a third
    argument "guard" means the kernel does not isolate the network and the program must block
    sockets itself before running anything untrusted."""
    deadline_s = effective_deadline(deadline_s)
    iso = isolation()
    return _run(source, stdin_data, deadline_s, limits, max_output_bytes, iso.tier == "namespaces")


def isolation() -> Isolation:
    """The tier in force here, found once per process by running a tiny program in each."""
    global _isolation
    if _isolation is None:
        _isolation = _probe()
    return _isolation


_isolation: Isolation | None = None


def __getattr__(name):  # ISOLATION: the probe runs on first access, not at import
    if name == "ISOLATION":
        return isolation()
    raise AttributeError(name)


def _probe() -> Isolation:
    root = os.geteuid() == 0
    probe = "import os,sys; os.write(int(sys.argv[1]), b'ok')"
    try:
        res = _run(probe, b"", 10.0, Limits(), 16, namespaces=True)
        if res.output == b"ok":
            return Isolation("namespaces", "netns", "read-only + private tmpfs", "pidns + rlimits",
                             f"fresh uid >= {_UID_BASE}" if root else "user namespace (same uid)")
    except (OSError, subprocess.SubprocessError):
        pass
    switch = root and _hidden_ancestor(_interpreter_prefix()) is None
    return Isolation("basic", "socket-guard", "temp dir" + (" + fresh uid" if switch else ""),
                     "process group + rlimits" + ("" if switch or not root else " (root: no NPROC)"),
                     f"fresh uid >= {_UID_BASE}" if switch else "same as caller")


def _run(source, stdin_data, deadline_s, limits, max_output_bytes, namespaces) -> SandboxResult:
    start = time.monotonic()
    root = os.geteuid() == 0
    prefix = _interpreter_prefix()
    hidden = _hidden_ancestor(prefix)
    switch_uid = root and (namespaces or hidden is None)
    workdir = None if namespaces else tempfile.mkdtemp(prefix="sandbox-")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    env["HOME"] = workdir or "/tmp/work"
    if namespaces:
        preexec = _namespaces_preexec(limits, deadline_s, switch_uid, prefix if root else None,
                                      hidden if root else None)
    else:
        preexec = _basic_preexec(limits, deadline_s, switch_uid, workdir)
    read_fd, write_fd = os.pipe()
    try:
        with tempfile.TemporaryFile() as stdin_file:
            stdin_file.write(stdin_data)
            stdin_file.seek(0)
            argv = [_interpreter(prefix), "-I", "-S", "-c", source, str(write_fd)]
            if not namespaces:
                argv.append("guard")
            proc = subprocess.Popen(argv, stdin=stdin_file, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, pass_fds=(write_fd,), env=env,
                                    cwd=workdir or "/", start_new_session=True,
                                    preexec_fn=preexec)
        os.close(write_fd)
        write_fd = -1
        sweep = switch_uid and not namespaces
        try:
            output, timed_out, truncated = _collect(proc, read_fd, start + deadline_s,
                                                    max_output_bytes)
        except BaseException:  # Ctrl-C and the like: leave nothing running
            _kill(proc, sweep)
            raise
        if timed_out or truncated:
            _kill(proc, sweep)
        else:
            _reap(proc, sweep)
        rc = None if (timed_out or truncated) else proc.returncode
        return SandboxResult(rc, timed_out, truncated, output, time.monotonic() - start)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc, fd, deadline, cap) -> tuple[bytes, bool, bool]:
    """Read the result pipe until EOF, the deadline or the cap; returns (data, timed_out, truncated)."""
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True, False
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        if not ready:
            if proc.poll() is not None and not _has_data(fd):
                # The program is gone; a leftover grandchild (basic tier) may hold the pipe open.
                return b"".join(chunks), False, False
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks), False, False
        chunks.append(data)
        size += len(data)
        if size > cap:
            return b"".join(chunks)[:cap], False, True


def _has_data(fd) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _kill(proc, sweep_uid: bool) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is the group id
    except ProcessLookupError:
        pass
    proc.kill()
    _reap(proc, sweep_uid)


def _reap(proc, sweep_uid: bool) -> None:
    """Wait for the child and make sure nothing it started lives on."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        proc.kill()
        proc.wait()
    try:  # basic tier: children that stayed in the group; namespaces: nothing is left by now
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if sweep_uid:  # leftovers that left the group with setsid() still run under the run's uid
        _kill_uid(_UID_BASE + proc.pid)


def _kill_uid(uid: int) -> None:
    pid = os.fork()
    if pid == 0:  # kill(-1) as that uid reaches exactly the processes of that uid
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _interpreter_prefix() -> str:
    return os.path.realpath(sys.base_prefix)


def _interpreter(prefix: str) -> str:
    """The base interpreter (not a venv shim): `-I -S` needs only the standard library."""
    exe = os.path.realpath(sys.executable)
    return exe if exe.startswith(prefix + os.sep) else sys.executable


def _hidden_ancestor(path: str) -> str | None:
    """The highest directory above `path` that others cannot enter (e.g. /root), if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


# --- in the child, between fork and exec ---------------------------------------------------------


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _set_limits(limits: Limits, deadline_s: float, nproc: int) -> None:
    cpu = int(math.ceil(min(limits.cpu_s, deadline_s + 1)))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = limits.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = limits.file_mb << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))  # root (uid 0) is exempt


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _after_identity() -> None:
    # Both are cleared by a uid change, so they come last; pdeathsig kills the run if our process
    # (or the pool worker) dies, no_new_privs makes setuid binaries useless.
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")


def _basic_preexec(limits, deadline_s, switch_uid, workdir):
    def preexec():
        _set_limits(limits, deadline_s, limits.nproc)
        if switch_uid:
            uid = _UID_BASE + os.getpid()
            os.chown(workdir, uid, uid)
            _drop_to(uid)
        _after_identity()

    return preexec


def _namespaces_preexec(limits, deadline_s, switch_uid, prefix, hidden):
    tmpfs_opts = f"size={limits.tmpfs_mb}m,mode=1777"
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
    as_user = os.geteuid() != 0

    def preexec():
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(flags | (_CLONE_NEWUSER if as_user else 0)), "unshare")
        if as_user:  # map ourselves to ourselves, so files we create are ours
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        run_uid = _UID_BASE + os.getpid()
        # The new PID namespace applies to our children: fork, and let the child be its PID 1.
        child = os.fork()
        if child:
            _relay(child)  # never returns
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        _readonly_everything()
        for d in _TMP_DIRS:
            if os.path.isdir(d):
                _mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, tmpfs_opts)
        if hidden is not None:
            _expose_interpreter(prefix, hidden)
        work = "/tmp/work"
        os.mkdir(work, 0o700)
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        if switch_uid:
            os.chown(work, run_uid, run_uid)
        os.chdir(work)
        _set_limits(limits, deadline_s, limits.nproc)
        if switch_uid:
            _drop_to(run_uid)
        _after_identity()

    return preexec


def _relay(child: int) -> None:
    """The go-between outside the new PID namespace: wait for its PID 1, exit the same way."""
    try:
        os.closerange(0, 65536)  # above all the exec-status pipe, so Popen() returns at exec
        _, status = os.waitpid(child, 0)
        if os.WIFSIGNALED(status):
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    finally:
        os._exit(255)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _readonly_everything() -> None:
    with open("/proc/self/mounts", "rb") as f:
        points = [line.split()[1].decode("unicode_escape") for line in f if line.strip()]
    for point in dict.fromkeys(points):
        try:
            keep = os.statvfs(point).f_flag
        except OSError:
            continue
        extra = sum(ms for st, ms in _KEEP_FLAGS if keep & st)
        try:
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | extra)
        except OSError:
            if point == "/":  # the rest is best effort (odd pseudo-filesystems refuse)
                raise


def _expose_interpreter(prefix: str, hidden: str) -> None:
    """Replace `hidden` (e.g. /root, mode 700) by a skeleton holding only a read-only `prefix`."""
    skeleton = "/tmp/.interpreter"
    inside = os.path.join(skeleton, os.path.relpath(prefix, hidden))
    os.makedirs(inside, mode=0o755)
    _mount(prefix, inside, None, _MS_BIND | _MS_REC)
    _mount(None, inside, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    os.chmod(skeleton, 0o755)
    _mount(skeleton, hidden, None, _MS_BIND | _MS_REC)
