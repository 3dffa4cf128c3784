"""run_filter end to end: verdicts stored, unparseable references and verifier failures marked,
bad rows reported with file and line, outputs and report, resume after kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.filter import FilterConfig, run_filter
from tests.distill.filter_helpers import read_jsonl, sample, write_jsonl
from verifiers import api

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path, inputs, **kw) -> FilterConfig:
    cfg = FilterConfig(inputs=[str(p) for p in inputs], out=str(tmp_path / "out"), progress=False,
                       **kw)
    cfg.verify.workers = 1
    cfg.output.plots = kw.get("plots", False)
    return cfg


def _crafted(tmp_path) -> Path:
    long_reasoning = " ".join(f"Step {i} gives {i * i}." for i in range(30))
    rows = [
        sample("p1", 0, "5", reasoning=long_reasoning, tokens=300),
        sample("p1", 1, "5", tokens=40),
        sample("p1", 2, "7", tokens=20),                       # wrong
        sample("p2", 0, "1"), sample("p2", 1, "2"),            # no correct sample
        sample("p3", 0, "5", reference="\\frac{"),             # reference cannot be parsed
        sample("p3", 1, "5", reference="\\frac{"),
        sample("p4", 0, "5", finish_reason="length"),          # truncated, though right
        "{not json",                                           # line 9
        json.dumps({"id": "x", "problem_id": "p5", "prompt": "q", "completion": "<think>a</think>5"}),
    ]
    return write_jsonl(tmp_path / "in" / "samples.jsonl", rows)


def test_end_to_end_on_crafted_samples(tmp_path):
    path = _crafted(tmp_path)
    cfg = _cfg(tmp_path, [path])
    cfg.selection.policy = "shortest"
    cfg.rl.min_samples = 2
    cfg.output.plots = True
    out = run_filter(cfg)

    sft = read_jsonl(out / "sft.jsonl")
    assert [r["id"] for r in sft] == ["p1/1"]  # the shortest correct of p1; p4 is truncated
    assert sft[0]["messages"][-1] == {"role": "assistant", "content":
                                      "<think>\nWorking on problem p1, attempt 1.\n</think>\n\n"
                                      "The answer is \\boxed{5}."}
    assert sft[0]["messages"][0]["role"] == "user" and sft[0]["pass_rate"] == pytest.approx(2 / 3)

    rejected = {r.get("id", r.get("where")): r for r in read_jsonl(out / "rejected.jsonl")}
    assert rejected["p1/0"]["reject_reason"] == "not_shortest"
    assert rejected["p1/2"]["reject_reason"] == "incorrect"
    assert rejected["p3/0"]["reject_reason"] == "reference_unparseable"
    assert rejected["p3/0"]["verdict"]["status"] == "unverifiable"
    assert rejected["p4/0"]["reasons"] == ["truncated"]
    bad = [r for r in rejected.values() if r["reject_reason"] == "bad_row"]
    assert {r["where"] for r in bad} == {f"{path}:9", f"{path}:10"}
    assert any("no reference" in r["error"] for r in bad)

    # pass rates count only verdicts with status ok: p1 2/3, p2 0/2, p3 none, p4 1/1
    rl = read_jsonl(out / "rl_prompts.jsonl")
    assert [(r["problem_id"], r["pass_rate"]) for r in rl] == [("p1", pytest.approx(2 / 3))]
    assert rl[0]["prompt"] == [{"role": "user", "content": "Problem p1: what is it?"}]

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["samples"], summary["kept"], summary["bad_rows"]) == (8, 1, 2)
    assert summary["verdicts"] == {"correct": 3, "incorrect": 3, "unverifiable": 2}
    assert summary["problems_without_correct"] == 2  # p2, and p3 (no counted verdict)
    for png in ("rejections.png", "pass_rates.png", "lengths.png", "sources.png"):
        assert (out / png).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert f"{path}:9" in report and "reference_unparseable" in report

    import datasets
    data = datasets.load_from_disk(str(out / "sft"))
    assert data.to_list() == sft


def test_verifier_timeout_crash_and_error_mark_their_rows_only(tmp_path, monkeypatch):
    monkeypatch.setitem(api.KINDS, "flaky", ("tests.distill.filter_kinds", "verify_flaky"))
    answers = ["5", "HANG", "5", "CRASH", "RAISE", "5"]
    rows = [sample(f"q{i}", 0, a, kind="flaky") for i, a in enumerate(answers)]
    cfg = _cfg(tmp_path, [write_jsonl(tmp_path / "flaky.jsonl", rows)])
    cfg.verify.timeout_s = 1.5
    out = run_filter(cfg)
    assert [r["id"] for r in read_jsonl(out / "sft.jsonl")] == ["q0/0", "q2/0", "q5/0"]
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert {k: r["reject_reason"] for k, r in rejected.items()} == dict.fromkeys(
        ["q1/0", "q3/0", "q4/0"], "verifier_error")
    assert rejected["q1/0"]["verdict"]["reason"] == "timeout"
    assert rejected["q3/0"]["verdict"]["reason"] == "worker crashed"
    assert rejected["q4/0"]["verdict"]["reason"].startswith("verifier error: RuntimeError")
    problems = json.loads((out / "summary.json").read_text())
    assert problems["verdicts"] == {"correct": 3, "error": 3}


def test_thresholds_change_without_reverifying_but_measures_do_not(tmp_path):
    path = _crafted(tmp_path)
    run_filter(_cfg(tmp_path, [path]))
    cfg = _cfg(tmp_path, [path])
    cfg.hygiene.truncated = False  # a judgement: pass 2 only
    out = run_filter(cfg)
    assert json.loads((out / "timing.json").read_text())["verified_this_run"] == 0
    assert "p4/0" in {r["id"] for r in read_jsonl(out / "sft.jsonl")}
    cfg.hygiene.repetition_n = 4  # changes a stored measure
    with pytest.raises(ValueError, match="repetition_n"):
        run_filter(cfg)


def test_cli_runs_a_recipe(tmp_path, capsys):
    from distill.cli import main

    path = _crafted(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filter:\n  selection:\n    policy: all\n  verify:\n    workers: 1\n"
                      "  output:\n    plots: false\n    dataset: false\n")
    code = main(["filter", "--config", str(recipe), "--in", str(path), "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 0
    assert "8 samples, 2 kept" in capsys.readouterr().out
    assert main(["filter", "--config", str(recipe), "--set", "selection.polcy=all"]) == 2


def _synth_input(tmp_path, n: int) -> Path:
    from distill.cli.data import synth_rows

    rows = synth_rows("arithmetic", n, "train", 0, 2, "r1", 0.3)
    return write_jsonl(tmp_path / "synth.jsonl", rows)


_SETTINGS = ["progress=false", "verify.workers=1", "verify.batch_rows=4", "output.plots=false",
             "output.dataset=false", "selection.policy=shortest"]
# run_filter straight, not the CLI: the CLI's parser imports every command module, and `model`'s
# package import (torch, transformers) would take most of the time before the kill
_RUN = ("import sys; from distill.filter import FilterConfig, run_filter; "
        "from recipes.config import load_config; "
        "run_filter(load_config(FilterConfig, None, sys.argv[1:]))")


def _settings(path: Path, out: Path) -> list[str]:
    return [f"inputs=[{path}]", f"out={out}", *_SETTINGS]


def _cut(path: Path) -> bool:
    return not path.read_bytes().endswith(b"\n")


@contextlib.contextmanager
def _nothing():
    yield


def test_kill_9_then_resume_gives_the_same_outputs(tmp_path):
    from recipes.config import load_config

    path = _synth_input(tmp_path, 300)
    run_filter(load_config(FilterConfig, None, _settings(path, tmp_path / "clean")))

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _RUN, *_settings(path, out)], env=env, cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shard = out / "verdicts" / "part-00000.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if shard.exists() and shard.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its verifier workers, mid-write
    proc.wait()
    stored = shard.read_bytes().count(b"\n")
    assert 20 <= stored < 300 and not (out / "sft.jsonl").exists()

    with pytest.warns(UserWarning, match="incomplete last row") if _cut(shard) else _nothing():
        run_filter(load_config(FilterConfig, None, _settings(path, out)))
    timing = json.loads((out / "timing.json").read_text())
    assert timing["verified_this_run"] <= 300 - 20
    for name in ("sft.jsonl", "rl_prompts.jsonl", "rejected.jsonl", "summary.json", "report.md",
                 "contamination.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert len(read_jsonl(out / "sft.jsonl")) > 150


def test_rerun_on_edited_inputs_verifies_only_new_rows_and_forgets_removed_ones(tmp_path):
    rows = [sample(f"e{i}", 0, "5") for i in range(6)]
    path = write_jsonl(tmp_path / "e.jsonl", rows)
    run_filter(_cfg(tmp_path, [path]))
    write_jsonl(path, [sample("new", 0, "5")] + rows[1:])  # e0 removed, one new row first
    out = run_filter(_cfg(tmp_path, [path]))
    assert json.loads((out / "timing.json").read_text())["verified_this_run"] == 1
    assert [r["id"] for r in read_jsonl(out / "sft.jsonl")] == ["new/0"] + [f"e{i}/0" for i in
                                                                            range(1, 6)]
    assert json.loads((out / "summary.json").read_text())["samples"] == 6


def test_shipped_recipe_loads():
    from recipes.config import load_config

    cfg = load_config(FilterConfig, ROOT / "recipes/filter/synthetic.yaml", section="filter")
    assert cfg.selection.policy == "shortest" and cfg.decontam.benchmarks[0].startswith("synthetic:")
