"""Verify many samples in warm worker processes with a hard per-sample deadline.

    with VerifierPool(workers=2, timeout_s=10) as pool:
        verdicts = pool.map("math", completions, references, **options)

Workers start once (forkserver: forked from a clean server that has already imported the verifiers,
so a respawn costs milliseconds, not an interpreter start) and serve every later `map`. Each holds
one sample at a time, so the parent knows exactly when each sample started: when it passes
`timeout_s` the parent SIGKILLs that worker, respawns it, and the sample gets
`Verdict(False, 0.0, None, "timeout")`. A worker that dies (segfault, os._exit, the OOM killer)
costs only its sample ("worker crashed"). The signals that would be needed to interrupt sympy or a
regex inside a worker are never used in the caller's process (docs/verification-and-eval.md 1.5,
6.2). Per-sample IPC (one pickle each way) is ~0.1 ms, small next to a verification, so there is
no chunking: chunks would blur the per-sample deadline.

`map("code", ...)` raises sandbox.SandboxUnavailable before any work where no sandbox tier
isolates the filesystem (unless allow_unisolated_sandbox=True is among the options).
Inputs that cannot be pickled get "unpicklable input"; an exception inside a verifier becomes
"verifier error: ..." and MemoryError "memory limit" (workers cap their address space at
`memory_mb`). Sandboxed code runs inside a worker get a deadline below the pool's
(`sandbox.set_deadline_cap`), so the sandbox normally reports its own timeout first.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing as mp
import os
import resource
import signal
import time
from collections import deque
from multiprocessing.connection import wait

from tqdm.auto import tqdm

from verifiers import api
from verifiers.api import Verdict

# Imported once in the forkserver, so a (re)started worker has them already; math_verify is
# imported lazily by verifiers.math_verifier, and a respawned worker importing it under a
# sample's deadline could time that sample out.
_PRELOAD = ["verifiers.api", "verifiers.sandbox", "verifiers.code", "verifiers.math_verifier",
            "verifiers.choice", "verifiers.format", "math_verify", "verifiers.sandbox_warm"]


def sandbox_deadline_cap(timeout_s: float) -> float:
    """The deadline a worker's sandbox gets: room for start-up, kill, clean-up and judging."""
    return max(0.1, timeout_s - max(0.3, 0.1 * timeout_s))


class VerifierPool:
    """workers: processes (default: the CPU count). timeout_s: hard wall deadline per sample.
    progress: tqdm bar with a rate during map. memory_mb: each worker's address-space cap (None:
    none). start_timeout_s: how long a (re)started worker may take to import its verifier.
    context: multiprocessing start method; forkserver keeps workers free of the caller's threads."""

    def __init__(self, workers: int | None = None, timeout_s: float = 10.0, *,
                 progress: bool = True, memory_mb: int | None = 4096,
                 start_timeout_s: float = 120.0, context: str = "forkserver"):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.num_workers = workers or os.cpu_count() or 1
        if self.num_workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.timeout_s, self.progress = float(timeout_s), progress
        self.memory_mb, self.start_timeout_s = memory_mb, start_timeout_s
        self._ctx = mp.get_context(context)
        if context == "forkserver":
            self._ctx.set_forkserver_preload([m for m in _PRELOAD if _importable(m)])
        self._workers = [self._start() for _ in range(self.num_workers)]
        # cumulative over map calls: samples the parent killed, workers that died under a sample,
        # workers restarted, and the longest wall time one sample took (send to verdict)
        self.stats = {"timeouts": 0, "crashes": 0, "respawns": 0, "max_sample_s": 0.0}
        self._closed = False

    # --- public --------------------------------------------------------------------------------

    def map(self, kind: str, completions, references, **options) -> list[Verdict]:
        """Verdicts for zip(completions, references), in input order."""
        if self._closed:
            raise ValueError("VerifierPool is closed")
        if kind not in api.KINDS:
            raise ValueError(f"unknown verifier kind {kind!r}; choose one of {sorted(api.KINDS)}")
        completions, references = list(completions), list(references)
        if len(completions) != len(references):
            raise ValueError(f"{len(completions)} completions but {len(references)} references")
        if kind == "code":  # refuse up front, not as one "verifier error" verdict per sample
            from verifiers import sandbox
            sandbox.require_isolation(bool(options.get("allow_unisolated_sandbox", False)))
        spec = tuple(api.KINDS[kind])  # passed on, so kinds registered at run time work too
        if not _importable(spec[0]):
            raise ValueError(f"verifier kind {kind!r}: module {spec[0]} is not installed")
        setup = ("kind", kind, spec, options)
        try:
            self._ctx.reducer.ForkingPickler.dumps(setup)
        except Exception as e:
            raise ValueError(f"verifier options must be picklable: {e}") from None
        results: list[Verdict | None] = [None] * len(completions)
        if not completions:
            return []
        for w in self._workers:
            self._send_setup(w, setup)
        bar = tqdm(total=len(completions), disable=not self.progress, unit="sample",
                   desc=f"verify {kind}", mininterval=0.5, smoothing=0.05)
        try:
            self._run(setup, completions, references, results, bar)
        except BaseException:
            self.close()  # workers may be mid-sample; they cannot be reused
            raise
        finally:
            bar.close()
        return results

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        end = time.monotonic() + 1.0
        for w in self._workers:
            w.proc.join(max(0.0, end - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- internals -----------------------------------------------------------------------------

    def _start(self) -> "_Worker":
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, daemon=True, name="verifier-worker",
                                 args=(child_conn, sandbox_deadline_cap(self.timeout_s),
                                       self.memory_mb))
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    def _respawn(self, w: "_Worker", setup) -> "_Worker":
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join()
        w.conn.close()
        self.stats["respawns"] += 1
        new = self._start()
        self._workers[self._workers.index(w)] = new
        self._send_setup(new, setup)
        return new

    def _send_setup(self, w: "_Worker", setup) -> None:
        w.ready, w.job, w.since = False, None, time.monotonic()
        try:
            w.conn.send(setup)
        except OSError:
            pass  # a dead worker shows up at its sentinel and is respawned there

    def _run(self, setup, completions, references, results, bar) -> None:
        pending, left = deque(range(len(completions))), len(completions)
        idle_crashes = 0  # workers that died without a sample: a broken kind must not spin forever

        def finish(i: int, verdict: Verdict, since: float | None = None) -> None:
            nonlocal left
            if since is not None:
                took = time.monotonic() - since
                self.stats["max_sample_s"] = max(self.stats["max_sample_s"], took)
            results[i] = verdict
            left -= 1
            bar.update(1)

        while left:
            for w in self._workers:
                while w.ready and w.job is None and pending:
                    i = pending.popleft()
                    try:
                        w.conn.send(("job", i, completions[i], references[i]))
                    except OSError:
                        pending.appendleft(i)  # the worker died: its sentinel will say so
                        break
                    except Exception as e:  # pickling failed before anything was written
                        finish(i, Verdict.fail(f"unpicklable input: {type(e).__name__}"))
                        continue
                    w.job, w.since = i, time.monotonic()
            now = time.monotonic()
            limits = [w.since + (self.timeout_s if w.ready else self.start_timeout_s) - now
                      for w in self._workers if w.job is not None or not w.ready]
            handles = [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers]
            ready = set(wait(handles, timeout=max(0.0, min(limits, default=1.0))))
            for w in list(self._workers):
                died = w.proc.sentinel in ready
                if w.conn in ready or died:
                    died = self._drain(w, finish) or died
                if died:
                    if w.job is not None:
                        self.stats["crashes"] += 1
                        finish(w.job, Verdict.fail("worker crashed"), w.since)
                    else:
                        idle_crashes += 1
                        if idle_crashes > 3 * self.num_workers:
                            w.proc.join(1.0)
                            raise RuntimeError(
                                "verifier workers keep dying before taking a sample (exit code "
                                f"{w.proc.exitcode}); a __main__ that {self._ctx.get_start_method()}"
                                " cannot re-import (code fed on stdin) does this: use a file")
                    self._respawn(w, setup)
                    continue
                over = time.monotonic() - w.since
                if w.job is not None and over > self.timeout_s:
                    self.stats["timeouts"] += 1
                    finish(w.job, Verdict.fail("timeout"), w.since)
                    self._respawn(w, setup)
                elif not w.ready and over > self.start_timeout_s:
                    raise RuntimeError(f"a verifier worker did not start within "
                                       f"{self.start_timeout_s:.0f} s")

    def _drain(self, w: "_Worker", finish) -> bool:
        """Take every message the worker has sent; True if its pipe is closed (it died)."""
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "done" and msg[1] == w.job:
                    finish(w.job, msg[2], w.since)
                    w.job = None
                elif msg[0] == "ready":
                    if msg[1] is not None:
                        raise RuntimeError(f"verifier worker could not load the kind: {msg[1]}")
                    w.ready = True
        except (EOFError, OSError):
            return True
        return False


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


class _Worker:
    __slots__ = ("proc", "conn", "ready", "job", "since")

    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn
        self.ready, self.job, self.since = False, None, time.monotonic()


def _worker_main(conn, deadline_cap_s: float, memory_mb: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_mb:  # soft limit only: sandboxed children set their own
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, hard))
    from verifiers import sandbox
    sandbox.set_deadline_cap(deadline_cap_s)
    kind, options = None, {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] == "kind":
            _, kind, spec, options = msg
            api.KINDS[kind] = spec
            try:
                importlib.import_module(spec[0])
                conn.send(("ready", None))
            except Exception as e:
                conn.send(("ready", f"{spec[0]}: {type(e).__name__}: {e}"))
        elif msg[0] == "job":
            _, i, completion, reference = msg
            conn.send(("done", i, _verify(kind, completion, reference, options)))


def _verify(kind, completion, reference, options) -> Verdict:
    try:
        verdict = api.verify(kind, completion, reference, **options)
    except MemoryError:
        return Verdict.fail("memory limit")
    except Exception as e:
        return Verdict.fail(f"verifier error: {type(e).__name__}: {e}"[:300])
    if not isinstance(verdict, Verdict):
        return Verdict.fail(f"verifier error: returned {type(verdict).__name__}")
    return verdict
