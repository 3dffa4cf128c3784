"""What the runner keeps in each stage directory to know whether the stage is done.

    runs/<name>/<stage>/stage_config.yaml   the resolved config (recipes.config.save_config)
    runs/<name>/<stage>/_STARTED            {"stage", "config_hash"}: an attempt began
    runs/<name>/<stage>/_COMPLETE           {"stage", "config_hash", "wall_s", "finished", ...}
    runs/<name>/_timings.json               {stage: wall seconds of its last finished run}

Both records are written atomically (model.checkpoint.atomic_write), `_COMPLETE` as the stage's
very last act, so its presence means every output is in place. The config hash covers the
stage's resolved config and the hashes of the stages it reads from, so a change anywhere
upstream reruns everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from model.checkpoint import atomic_write

STARTED, COMPLETE, CONFIG, TIMINGS = "_STARTED", "_COMPLETE", "stage_config.yaml", "_timings.json"


def config_hash(kind: str, config: dict, upstream: list[str]) -> str:
    """sha256 over the stage kind, its resolved config and its inputs' hashes (16 hex digits)."""
    blob = json.dumps({"kind": kind, "config": config, "upstream": sorted(upstream)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_record(path: Path, record: dict) -> None:
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_record(path: Path) -> dict | None:
    """The JSON record at path, or None when absent or unreadable (never half-written: atomic)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def status(stage_dir: Path, digest: str) -> str:
    """"complete" (finished with this hash), "partial" (an attempt with this hash stopped early),
    "stale" (holds outputs of another config) or "new" (nothing there)."""
    done = read_record(stage_dir / COMPLETE)
    if done is not None:
        return "complete" if done.get("config_hash") == digest else "stale"
    started = read_record(stage_dir / STARTED)
    if started is not None:
        return "partial" if started.get("config_hash") == digest else "stale"
    return "stale" if stage_dir.exists() and any(stage_dir.iterdir()) else "new"


def set_aside(stage_dir: Path) -> Path:
    """Move a stage's old outputs to `<stage dir>.prev` (replacing an older one) and return it."""
    prev = stage_dir.with_name(stage_dir.name + ".prev")
    shutil.rmtree(prev, ignore_errors=True)
    stage_dir.rename(prev)
    return prev


def read_timings(run_dir: Path) -> dict[str, float]:
    return read_record(run_dir / TIMINGS) or {}


def finish(stage_dir: Path, run_dir: Path, stage: str, digest: str, wall_s: float,
           outputs: dict[str, str], extra: dict[str, Any] | None = None) -> None:
    """Record the timing, then `_COMPLETE` last."""
    timings = read_timings(run_dir)
    timings[stage] = wall_s
    write_record(run_dir / TIMINGS, timings)
    write_record(stage_dir / COMPLETE, {"stage": stage, "config_hash": digest, "wall_s": wall_s,
                                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                        "finished_unix": time.time(),
                                        "outputs": outputs, **(extra or {})})
