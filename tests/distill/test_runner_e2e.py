"""`distillery run` end to end on the stages that exist today, shrunken to test size:
recipes/pretrain-eval-tiny.yaml (synth -> tokenizer -> pretrain -> eval -> report).

One test, about a minute on a 2-core CPU: the runner is killed (SIGKILL, as a user's Ctrl-\\ or
an OOM kill would) in the middle of pretraining, rerun, and must resume that stage from its last
checkpoint - checked against an uninterrupted pretraining run, which must give bit-identical
weights - then finish the rest; a third run skips everything, and a changed eval setting reruns
only eval and report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.runner import execute, make_plan
from distill.runner.state import COMPLETE, STARTED
from pretrain.train import run as pretrain_run

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "pretrain-eval-tiny.yaml"
STEPS = 10


@pytest.fixture
def one_thread():
    """The killed subprocess runs with one thread; the in-process parts must too, or the float
    sums are ordered differently and the weights cannot match bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _overrides(root: Path) -> list[str]:
    return [f"run.root={root}", "synth.sets.traces.n=120", "tokenizer.vocab_size=300",
            "pretrain.model.vocab_size=300", f"pretrain.train.max_steps={STEPS}",
            "pretrain.train.batch_size=4", "pretrain.train.seq_len=64", "pretrain.train.save_every=2",
            "pretrain.train.eval_every=5", "pretrain.train.eval_batches=1",
            "eval.sampling.max_new_tokens=12", "eval.verify_workers=1",
            "eval.benchmarks=[{name: 'synthetic:arithmetic?n=3&split=test&difficulty=1', k: 2}]"]


def _kill_during_pretrain(root: Path) -> None:
    """Start `distillery run` in its own process group; SIGKILL it once pretraining has written a
    checkpoint (and before it finishes)."""
    run_dir = root / "pretrain-eval-tiny"
    cmd = [sys.executable, "-c", "import sys; from distill.cli import main; sys.exit(main())",
           "run", str(RECIPE), *[a for o in _overrides(root) for a in ("--set", o)]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = open(root.parent / "killed-run.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    latest = run_dir / "pretrain" / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    try:
        while not latest.exists():
            assert proc.poll() is None, (root.parent / "killed-run.log").read_text()
            assert time.monotonic() < deadline, "no pretraining checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.timeout(480)
def test_killed_run_resumes_the_stopped_stage(tmp_path, capsys, one_thread):
    root = tmp_path / "runs"
    run_dir = root / "pretrain-eval-tiny"
    _kill_during_pretrain(root)
    assert (run_dir / "synth" / COMPLETE).is_file() and (run_dir / "tokenizer" / COMPLETE).is_file()
    assert (run_dir / "pretrain" / STARTED).is_file() and not (run_dir / "pretrain" / COMPLETE).exists()
    killed_at = int((run_dir / "pretrain" / "checkpoints" / "latest").read_text().split("-")[-1])
    assert killed_at < STEPS, "pretraining finished before the kill; the test proves nothing"

    outcomes = {o.stage: o.status for o in execute(make_plan(RECIPE, _overrides(root)))}
    out = capsys.readouterr().out
    assert outcomes == {"synth": "skipped (complete)", "tokenizer": "skipped (complete)",
                        "pretrain": "resumed", "eval": "ran", "report": "ran"}
    assert f"at step {killed_at}" in out  # pretrain's own "resumed from ... at step N"
    assert "[3/5] pretrain" in out and "run summary:" in out
    steps = [json.loads(line)["step"] for line in
             (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, STEPS + 1))  # each step once: none lost, none repeated

    # Independent reference: the same pretraining config, never interrupted.
    plan = make_plan(RECIPE, _overrides(root))
    cfg = plan.stage("pretrain").cfg
    cfg.out_dir, cfg.data.shard_dir = str(tmp_path / "ref"), str(tmp_path / "ref-shards")
    pretrain_run(cfg)
    resumed, reference = _weights(run_dir / "pretrain" / "final"), _weights(tmp_path / "ref" / "final")
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name

    report = (run_dir / "report" / "report.md").read_text()
    for stage in ("synth", "tokenizer", "pretrain", "eval"):
        assert f"| {stage} |" in report
    results = json.loads((run_dir / "eval" / "results.json").read_text())["results"]
    assert results[0]["model_path"] == str(run_dir / "pretrain" / "final")
    assert results[0]["num_samples"] == 6  # 3 problems x k=2

    # Everything finished: a rerun does nothing.
    outcomes = {o.stage: o.status for o in execute(make_plan(RECIPE, _overrides(root)))}
    assert set(outcomes.values()) == {"skipped (complete)"}

    # A changed eval setting reruns eval and what reads it, nothing upstream.
    changed = _overrides(root) + ["eval.sampling.max_new_tokens=8"]
    outcomes = {o.stage: o.status for o in execute(make_plan(RECIPE, changed))}
    assert outcomes == {"synth": "skipped (complete)", "tokenizer": "skipped (complete)",
                        "pretrain": "skipped (complete)", "eval": "ran", "report": "ran"}
    assert (run_dir / "eval.prev" / "results.json").is_file()  # the old outputs were kept aside
