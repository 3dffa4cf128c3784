"""Two CPU processes (torchrun, gloo DDP) train the same loss curve as one process with the same
global batch: `distillery sft --nproc 2` with 2 samples per device vs 1 process with 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.distill.test_sft_train import base_dir, data_file  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, base, data, name, nproc, per_device):
    recipe = {"sft": {"model": str(base), "data": [{"path": str(data)}], "out_dir": str(tmp_path / name),
                      "trl": {"max_steps": 3, "per_device_train_batch_size": per_device,
                              "learning_rate": 1e-3, "save_strategy": "no"}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "distill.cli", "sft", "--config", str(path), "--nproc", str(nproc)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(r) for r in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, base_dir, data_file):  # noqa: F811
    one = _run(tmp_path, base_dir, data_file, "one", nproc=1, per_device=4)
    two = _run(tmp_path, base_dir, data_file, "two", nproc=2, per_device=2)
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4)
