"""verifiers.pool: order, hard per-sample deadline, crash isolation, hostile inputs, warm reuse.

A test-only verifier kind, `verify_probe` below, is registered by patching verifiers.api.KINDS;
the pool passes the (module, function) pair to its workers, which import this module.
"""

from __future__ import annotations

import ctypes
import os
import time

import pytest

from verifiers import VerifierPool, api, sandbox
from verifiers.api import Verdict
from verifiers.pool import sandbox_deadline_cap

TIMEOUT = 1.0
SLACK = 0.5


def verify_probe(completion: str, reference, **options) -> Verdict:
    """echo:X -> ok with X; sleep:S sleeps; exit/segv/oom/raise misbehave in the worker itself."""
    op, _, arg = completion.partition(":")
    if op == "sleep":
        time.sleep(float(arg))
    elif op == "exit":
        os._exit(3)
    elif op == "segv":
        ctypes.string_at(0)
    elif op == "oom":
        _ = bytearray(1 << 40)
    elif op == "raise":
        raise KeyError(arg)
    elif op == "pid":
        return Verdict(True, 1.0, str(os.getpid()), "ok")
    return Verdict(True, 1.0, arg or completion[:20], options.get("reason", "ok"))


@pytest.fixture(autouse=True)
def probe_kind(monkeypatch):
    monkeypatch.setitem(api.KINDS, "probe", (__name__, "verify_probe"))


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=2, timeout_s=TIMEOUT, progress=False) as p:
        yield p


def test_results_come_back_in_input_order(pool):
    items = [f"echo:{i}" for i in range(300)]
    verdicts = pool.map("probe", items, [None] * len(items))
    assert [v.extracted for v in verdicts] == [str(i) for i in range(300)]


def test_options_reach_the_verifier(pool):
    assert pool.map("probe", ["echo:a"], [None], reason="custom")[0].reason == "custom"


def test_sleeper_times_out_while_others_succeed(pool):
    items = ["echo:a", "sleep:30", "echo:b", "echo:c", "sleep:30", "echo:d"]
    start = time.monotonic()
    verdicts = pool.map("probe", items, [None] * len(items))
    elapsed = time.monotonic() - start
    assert [v.reason for v in verdicts] == ["ok", "timeout", "ok", "ok", "timeout", "ok"]
    assert verdicts[1] == Verdict(False, 0.0, None, "timeout")
    assert pool.stats["timeouts"] >= 2
    assert elapsed < TIMEOUT + SLACK + 0.5  # the two sleepers ran side by side on two workers


def test_crashing_worker_costs_only_its_sample(pool):
    before = dict(pool.stats)
    items = ["echo:a", "exit", "echo:b", "segv", "echo:c"]
    verdicts = pool.map("probe", items, [None] * len(items))
    assert [v.reason for v in verdicts] == ["ok", "worker crashed", "ok", "worker crashed", "ok"]
    assert pool.stats["respawns"] == before["respawns"] + 2
    assert pool.stats["crashes"] == before["crashes"] + 2
    assert all(v.correct for v in pool.map("probe", ["echo:x"] * 10, [None] * 10))


def test_verifier_exceptions_and_memory_become_verdicts(pool):
    verdicts = pool.map("probe", ["raise:boom", "oom"], [None, None])
    assert verdicts[0].reason == "verifier error: KeyError: 'boom'"
    assert verdicts[1].reason == "memory limit"


def test_hostile_inputs_each_get_a_verdict(pool):
    nested = []
    for _ in range(100_000):  # too deep to pickle
        nested = [nested]
    items = [None, 5, 3.5, b"\xff\xfe", b"echo:bytes", "x" * (20 << 20), lambda: 1, nested,
             "echo:last"]
    start = time.monotonic()
    verdicts = pool.map("probe", items, [None] * len(items))
    assert time.monotonic() - start < TIMEOUT + SLACK
    reasons = [v.reason for v in verdicts]
    assert reasons[:4] == ["completion is None", "completion is int, not text",
                           "completion is float, not text", "completion is not UTF-8 text"]
    assert verdicts[4].extracted == "bytes" and reasons[5] == "ok"
    assert reasons[6].startswith("unpicklable input") and reasons[7].startswith("unpicklable input")
    assert verdicts[8].extracted == "last"


def test_workers_stay_warm_across_maps(pool):
    first = {v.extracted for v in pool.map("probe", ["pid"] * 20, [None] * 20)}
    second = {v.extracted for v in pool.map("probe", ["pid"] * 20, [None] * 20)}
    assert first == second and len(first) <= 2


@pytest.mark.skipif(not sandbox.isolation().isolates_filesystem,
                    reason="no filesystem-isolating sandbox tier here")
def test_code_sandbox_gives_up_before_the_pool_deadline(pool):
    """A code sample's sandbox deadline sits below the pool's, so the sandbox reports the timeout
    and the worker survives; a program that kills its parent does not take the pool down."""
    assert sandbox_deadline_cap(TIMEOUT) < TIMEOUT
    ref = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    items = ["```python\nwhile True:\n    pass\n```",
             "```python\nimport os\nos.kill(os.getppid(), 9)\nos.kill(-1, 9)\n```",
             "```python\na, b = map(int, input().split())\nprint(a + b)\n```"]
    before = dict(pool.stats)
    start = time.monotonic()
    verdicts = pool.map("code", items, [ref] * 3, deadline_s=30)
    assert time.monotonic() - start < TIMEOUT + SLACK
    assert verdicts[0].reason.startswith("timeout [sandbox: ") and not verdicts[1].correct and verdicts[2].correct
    assert pool.stats["respawns"] == before["respawns"]  # the sandbox, not the pool, timed out


def test_bad_calls_are_value_errors(pool):
    with pytest.raises(ValueError, match="unknown verifier kind"):
        pool.map("nope", ["a"], [None])
    api.KINDS["ghost"] = ("no_such_package.verifier", "verify")
    try:
        with pytest.raises(ValueError, match="not installed"):
            pool.map("ghost", ["a"], [None])
    finally:
        del api.KINDS["ghost"]
    with pytest.raises(ValueError, match="references"):
        pool.map("probe", ["a", "b"], [None])
    with pytest.raises(ValueError, match="picklable"):
        pool.map("probe", ["a"], [None], reason=lambda: 1)
    assert pool.map("probe", [], []) == []


def test_progress_bar_shows_a_rate(capsys):
    with VerifierPool(workers=1, timeout_s=TIMEOUT, progress=True) as p:
        p.map("probe", ["echo:a"] * 5, [None] * 5)
    err = capsys.readouterr().err
    assert "5/5" in err and "sample/s" in err


def test_closed_pool_refuses_work():
    p = VerifierPool(workers=1, timeout_s=TIMEOUT, progress=False)
    p.close()
    p.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        p.map("probe", ["echo:a"], [None])
