"""The CPU thread rule: how many intra-op threads torch gets for decoding and serving.

    threads = thread_rule(work_flops=2 * active_params * batch)   # -> ThreadChoice
    apply_thread_rule(work_flops, where="engine")                 # sets torch, logs one line

Why: on a shared 2-core VM, `distillery model generate` of 64 tokens took 14-40 s next to two
busy-loop processes instead of 0.08 s, and 0.18 s with one thread (issue 10). OpenMP threads wait
for each other at every operator's barrier; when one of them is descheduled behind another
process, the rest spin until it runs again, so each tiny decode operator costs a scheduler slice.

The rule, in one place (used by `model.engine.Engine`, the transformers backend, `distillery
serve` and `distillery generate`):

    threads = max(1, min(cpus, idle, by_work))
    cpus    = CPUs this process may use: len(sched_getaffinity), capped by the cgroup v2/v1 quota
              (cpu.max "quota period" -> ceil(quota / period))
    idle    = CPUs of that set idle now: /proc/stat sampled over IDLE_SAMPLE_S, rounded down,
              at least 1 (the CPUs other processes keep busy are not ours to spread over)
    by_work = floor(work_flops / FLOPS_PER_THREAD): a decode step of a small model is
              microseconds of work per operator, less than a barrier costs, so it gets 1 thread

An explicit choice always wins: DISTILLERY_THREADS, else OMP_NUM_THREADS, when set. The idle
sample is cached for CACHE_S per process so many engines made in a row pay for it once.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Work below this many FLOPs per thread per step does not pay for a thread: ~1 ms of one core's
# fp32 matmul throughput (tens of GFLOP/s), well above a barrier's cost (microseconds idle,
# a scheduler slice under contention). A starting point; benchmarks/thread_contention.py checks it.
FLOPS_PER_THREAD = 20e6
IDLE_SAMPLE_S = 0.05
CACHE_S = 30.0
_cache: dict[str, tuple[float, float]] = {}


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # one line, logged and printed by the commands that apply it


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup CPU quota in CPUs (v2 cpu.max, else v1 cfs files); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def affinity_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """CPUs this process may run on: the affinity set, capped by the cgroup quota."""
    cpus = len(affinity_cpus())
    quota = cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cpu_times(cpus: list[int], stat: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """(idle, total) jiffies summed over `cpus` from /proc/stat; None where unreadable."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    wanted, idle, total = {f"cpu{i}" for i in cpus}, 0.0, 0.0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in wanted:
            values = [float(v) for v in parts[1:]]
            idle += values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
            total += sum(values[:8])  # user..steal; guest time is already counted in user
    return (idle, total) if total > 0 else None


def idle_cpus(sample_s: float = IDLE_SAMPLE_S) -> float:
    """How many CPUs of the affinity set sat idle over the last `sample_s` (cached CACHE_S)."""
    cpus = affinity_cpus()
    key = ",".join(map(str, cpus))
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[1] < CACHE_S:
        return hit[0]
    before = _cpu_times(cpus)
    time.sleep(sample_s)
    after = _cpu_times(cpus)
    if before is None or after is None or after[1] <= before[1]:
        value = float(len(cpus))  # no /proc: assume the set is ours
    else:
        value = len(cpus) * (after[0] - before[0]) / (after[1] - before[1])
    _cache[key] = (value, time.monotonic())
    return value


def _explicit() -> tuple[int, str] | None:
    for name in ("DISTILLERY_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a whole number of threads") from None
            if threads < 1:
                raise ValueError(f"{name}={value}: threads must be >= 1")
            return threads, name
    return None


def thread_rule(work_flops: float | None = None) -> ThreadChoice:
    """The thread count for work of `work_flops` FLOPs per step (None: unknown, no work cap)."""
    explicit = _explicit()
    if explicit is not None:
        return ThreadChoice(explicit[0], f"{explicit[0]} threads ({explicit[1]})")
    cpus = available_cpus()
    idle = max(1, math.floor(idle_cpus() + 0.25))  # 0.25: a sampled core at 80% idle counts
    by_work = cpus if work_flops is None else max(1, int(work_flops // FLOPS_PER_THREAD))
    threads = max(1, min(cpus, idle, by_work))
    work = "" if work_flops is None else f", work {work_flops / 1e6:.1f} MFLOP/step -> {by_work}"
    return ThreadChoice(threads, f"{threads} threads ({cpus} CPUs available, {idle} idle{work})")


def apply_thread_rule(work_flops: float | None = None, where: str = "torch") -> ThreadChoice:
    """Set torch's intra-op threads by `thread_rule` and log the choice once."""
    import torch

    choice = thread_rule(work_flops)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    log.info("%s: %s", where, choice.reason)
    return choice
