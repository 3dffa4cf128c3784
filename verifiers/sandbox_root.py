"""The sandbox's filesystem view and namespaces: what runs between fork and exec of the runner.

    pivot_preexec(tmpfs_mb) -> preexec_fn for subprocess.Popen

The new root is a tmpfs holding only read-only bind mounts of what `python -I -S` needs (see
`root_plan`), a fresh /proc and a private /tmp; pivot_root moves into it and detaches the old root,
so nothing else of the host is reachable by path, /proc/<pid>/root or `..`. Used by
verifiers/sandbox.py, which documents the tiers.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import signal
import subprocess
import sys
import sysconfig

UID_BASE = 1_000_000  # run uids are UID_BASE + a per-run number: in no passwd file

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# statvfs flag -> mount flag to keep when remounting read-only (a user namespace may not drop them)
_KEEP_FLAGS = [(os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
               (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME),
               (os.ST_RELATIME, _MS_RELATIME)]
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_STAGING = ("/mnt", "/tmp", "/media", "/srv", "/opt", "/var/tmp")
# directories ldd cannot see but a library search falls back to when ldd is missing
_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/lib32", "/usr/lib32")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_plan: dict | None = None


def interpreter_prefix() -> str:
    return os.path.realpath(sys.base_prefix)


def interpreter(prefix: str) -> str:
    """The base interpreter (not a venv shim): `-I -S` needs only the standard library."""
    exe = os.path.realpath(sys.executable)
    return exe if exe.startswith(prefix + os.sep) else sys.executable


def hidden_ancestor(path: str) -> str | None:
    """The highest directory above `path` that others cannot enter (e.g. /root), if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def root_plan() -> dict:
    """What the new root holds, computed once: {"files": {path: source}, "dirs": {path: source},
    "hide": [paths], "links": {path: target}, "staging": mount point used to build it}."""
    global _plan
    if _plan is None:
        _plan = _make_plan()
    return _plan


def _make_plan() -> dict:
    exe = interpreter(interpreter_prefix())
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    files, dirs, links = {exe: exe}, {stdlib: stdlib}, {}
    dynload = os.path.join(stdlib, "lib-dynload")
    modules = sorted(os.path.join(dynload, f) for f in os.listdir(dynload)
                     if f.endswith(".so")) if os.path.isdir(dynload) else []
    libs = _ldd([exe] + modules)
    if libs is None:  # no ldd: the standard library directories, read-only, as on the host
        for d in _LIB_DIRS:
            if os.path.islink(d):
                links[d] = os.readlink(d)
            elif os.path.isdir(d):
                dirs[d] = d
    else:
        files.update({p: os.path.realpath(p) for p in libs})
    for extra in ("/etc/ld.so.cache",) + _DEVICES:
        if os.path.exists(extra):
            files[extra] = extra
    hide = [p for p in (os.path.join(stdlib, "site-packages"),) if os.path.isdir(p)]
    sources = list(files.values()) + list(dirs.values())
    staging = next((s for s in _STAGING if os.path.isdir(s) and not os.path.islink(s)
                    and not any(src == s or src.startswith(s + "/") for src in sources)), None)
    if staging is None:
        raise OSError("no directory to build the sandbox root on (tried %s)" % ", ".join(_STAGING))
    return {"files": files, "dirs": dirs, "hide": hide, "links": links, "staging": staging}


def _ldd(paths: list[str]) -> list[str] | None:
    """Shared libraries the given ELF files load (paths as the loader opens them)."""
    try:
        out = subprocess.run(["ldd"] + paths, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    libs = set()
    for line in out.splitlines():
        m = re.match(r"\s+(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            libs.add(m.group(1))
    return sorted(libs) if libs else None


def kill_uid(uid: int) -> None:
    pid = os.fork()
    if pid == 0:  # kill(-1) as that uid reaches exactly the processes of that uid
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def after_identity() -> None:
    """no_new_privs (setuid binaries are useless) and death with our parent (the judge's thread or
    the relay); both are cleared by a uid change, so they come after it."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")


# --- in the child, between fork and exec ---------------------------------------------------------


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def pivot_preexec(tmpfs_mb: int):
    """The preexec_fn of the "pivot_root" tier (the plan is computed here, before the fork)."""
    plan = root_plan()
    syscall = _SYS_PIVOT_ROOT.get(platform.machine())
    if syscall is None:
        raise OSError(f"pivot_root syscall number unknown on {platform.machine()}")
    as_user = os.geteuid() != 0
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS

    def preexec():
        uid, gid = os.getuid(), os.getgid()
        after_identity()  # the relay dies with the judge's thread
        _check(_libc.unshare(flags | (_CLONE_NEWUSER if as_user else 0)), "unshare")
        if as_user:  # map ourselves to ourselves: the runner keeps no capabilities after exec
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        # The new PID namespace applies to our children: fork, the child is its PID 1.
        child = os.fork()
        if child:
            _relay(child)  # never returns
        _build_root(plan, tmpfs_mb)
        _pivot(plan["staging"], syscall)
        after_identity()  # PID 1 dies with the relay

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


def _build_root(plan: dict, tmpfs_mb: int) -> None:
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    new = plan["staging"]
    _mount("tmpfs", new, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for path, source in plan["dirs"].items():
        target = new + path
        os.makedirs(target, 0o755, exist_ok=True)
        _bind_readonly(source, target, recursive=True)
    for path, source in plan["files"].items():
        target = new + path
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _bind_readonly(source, target, recursive=False)
    for path, target in plan["links"].items():
        os.makedirs(os.path.dirname(new + path), 0o755, exist_ok=True)
        os.symlink(target, new + path)
    for path in plan["hide"]:  # e.g. the base interpreter's site-packages: not the stdlib
        _mount("tmpfs", new + path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k")
    os.makedirs(new + "/proc", 0o555, exist_ok=True)
    _mount("proc", new + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.makedirs(new + "/tmp", 0o1777, exist_ok=True)
    _mount("tmpfs", new + "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={tmpfs_mb}m,mode=1777")
    _mount(None, new, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _bind_readonly(source: str, target: str, recursive: bool) -> None:
    _mount(source, target, None, _MS_BIND | (_MS_REC if recursive else 0))
    keep = os.statvfs(target).f_flag
    extra = sum(ms for st, ms in _KEEP_FLAGS if keep & st)
    _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | extra)


def _pivot(new_root: str, syscall: int) -> None:
    """pivot_root(".", "."): the old root ends up stacked on the new one, then is detached, so no
    path, `..` or /proc/<pid>/root leads back to the host's files."""
    os.chdir(new_root)
    _check(_libc.syscall(syscall, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", _MNT_DETACH), "umount old root")
    os.chdir("/")
