"""The CPU thread rule (model/threads.py): cgroup quota and /proc/stat parsing against hand-made
files, the rule's arithmetic, and the engine applying it."""

import subprocess
import sys
import time

import pytest
import torch

from model import threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("DISTILLERY_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads._cache.clear()
    yield
    torch.set_num_threads(before)
    threads._cache.clear()


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("250000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_cpus(v1) == 2.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert threads.cgroup_cpus(v1) is None
    assert threads.cgroup_cpus(tmp_path / "absent") is None


def test_available_cpus_is_affinity_capped_by_quota(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cpus", lambda: [0, 1, 2, 3, 4, 5])
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: 1.5)
    assert threads.available_cpus() == 2  # ceil(1.5)
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: None)
    assert threads.available_cpus() == 6


def test_proc_stat_sums_only_our_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 0 0 0 0 0 0\n"
                    "cpu0 1 0 1 50 2 0 0 0 0 0\n"    # idle 50 + iowait 2, total 54
                    "cpu1 9 0 9 48 0 0 0 0 0 0\n"    # idle 48, total 66
                    "intr 12345\n")
    assert threads._cpu_times([0], stat) == (52.0, 54.0)
    assert threads._cpu_times([0, 1], stat) == (100.0, 120.0)
    assert threads._cpu_times([7], stat) is None


def test_rule_takes_the_least_of_cpus_idle_and_work(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 5.7)
    assert threads.thread_rule().threads == 5  # floor(5.7 + 0.25)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 5.8)
    assert threads.thread_rule().threads == 6  # a core 80% idle counts
    assert threads.thread_rule(work_flops=1e6).threads == 1  # a tiny model's decode step
    assert threads.thread_rule(work_flops=3 * threads.FLOPS_PER_THREAD).threads == 3
    monkeypatch.setattr(threads, "idle_cpus", lambda: 0.1)  # everything busy: still one
    assert threads.thread_rule(work_flops=1e12).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.thread_rule(work_flops=1.0).threads == 3  # an explicit choice wins
    monkeypatch.setenv("DISTILLERY_THREADS", "2")
    assert threads.thread_rule().threads == 2
    monkeypatch.setenv("DISTILLERY_THREADS", "two")
    with pytest.raises(ValueError, match="DISTILLERY_THREADS='two'"):
        threads.thread_rule()


def test_idle_cpus_sees_a_busy_process():
    """A busy loop pinned to one of our CPUs takes that CPU out of the idle count."""
    cpus = threads.affinity_cpus()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        idle = threads.idle_cpus(sample_s=0.5)
    finally:
        busy.kill()
        busy.wait()
    assert idle <= len(cpus) - 0.5, idle


def test_engine_applies_the_rule(monkeypatch, make_model):
    from model.engine import Engine

    model = make_model()
    torch.set_num_threads(2)
    monkeypatch.setenv("DISTILLERY_THREADS", "1")
    Engine(model)
    assert torch.get_num_threads() == 1
    Engine(model, threads=2)
    assert torch.get_num_threads() == 2
    Engine(model, threads=None)
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("DISTILLERY_THREADS")
    monkeypatch.setattr(threads, "idle_cpus", lambda: 8.0)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    Engine(model)  # the tiny test model's decode step is far below one thread's grain
    assert torch.get_num_threads() == 1


def test_engine_rule_counts_the_rows_decoded_per_step(monkeypatch, make_model):
    # a batch of rows is that many times the work per decode step: a batch that pays for a
    # second thread gets it (measured: 1.6x faster generate at batch 256 with 2 threads vs 1)
    from model.accounting import account
    from model.engine import Engine

    model = make_model()
    monkeypatch.delenv("DISTILLERY_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 8.0)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    per_row = 2.0 * account(model.config).active_params
    rows = int(3 * threads.FLOPS_PER_THREAD // per_row) + 1  # just over 3 threads' grain
    assert Engine(model).thread_choice.threads == 1
    assert Engine(model, batch_size=rows).thread_choice.threads == 3
    assert torch.get_num_threads() == 3
