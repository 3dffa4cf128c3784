"""metrics.jsonl for the TRL stages (sft, grpo): one TrainerCallback, the pretraining loop's file
rules (pretrain.metrics: flushed rows, strict JSON, resumed runs drop the rows they will redo).

Every TRL log row (loss, rewards per function, completion lengths, KL, clip ratio, ...) becomes
one line `{"step", "epoch", **logs}` on the main process, plus `tokens_per_s` computed from
TRL's cumulative `num_tokens` between two logs. The trainer's closing summary
(`train_runtime`, ...) is not a step and is not written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from pretrain.metrics import finite_row, open_metrics, read_metrics

__all__ = ["MetricsCallback", "read_metrics"]


class MetricsCallback(TrainerCallback):
    """Writes RUN_DIR/metrics.jsonl (see the module doc). On train begin the trainer's state
    already holds the step of a checkpoint it resumes from; rows past it are dropped."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = None
        self._last: tuple[float, float] | None = None  # (time, num_tokens) at the previous log

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.file = open_metrics(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.file is None or not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        now, tokens = time.monotonic(), logs.get("num_tokens")
        if tokens is not None and self._last is not None and now > self._last[0]:
            row["tokens_per_s"] = (tokens - self._last[1]) / (now - self._last[0])
        if tokens is not None:
            self._last = (now, tokens)
        self.file.write(json.dumps(finite_row(row)) + "\n")
        self.file.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.file is not None:
            self.file.close()
            self.file = None
