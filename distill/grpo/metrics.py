"""Per-step GRPO metrics into the run directory, and plots at the end.

`MetricsFile` is a TrainerCallback: every TRL log (reward mean/std per reward function,
completion length mean/max, clipped ratio, KL, entropy, frac_reward_zero_std, our
dynamic_sampling/* share, step_time) becomes one JSON line in `metrics.jsonl`, flushed per row,
with `tokens_per_s` added from TRL's cumulative `num_tokens` and wall time. On resume the rows
past the checkpoint's step are dropped first, since they will be logged again.
`plot_metrics(run_dir)` draws the curves into `plots/grpo.png`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

PLOTTED = [("reward", "rewards/"), ("completions/mean_length", "completions/max_length"),
           ("kl", "completions/clipped_ratio"), ("frac_reward_zero_std", "dynamic_sampling/dropped_share")]


def read_rows(path: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line (a crash mid-write) is ignored."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


class MetricsFile(TrainerCallback):
    def __init__(self, run_dir: str | Path, resume_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.resume_step = resume_step
        self.file = None
        self._last = None  # (time, num_tokens)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = [r for r in read_rows(self.path) if r.get("step", 0) <= self.resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self.file = self.path.open("a")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.file is None or not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, **logs}
        now, tokens = time.monotonic(), logs.get("num_tokens")
        if tokens is not None and self._last is not None and now > self._last[0]:
            row["tokens_per_s"] = (tokens - self._last[1]) / (now - self._last[0])
        if tokens is not None:
            self._last = (now, tokens)
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.file is not None:
            self.file.close()
            self.file = None


def plot_metrics(run_dir: str | Path) -> Path | None:
    """plots/grpo.png: rewards per function, completion length, KL / clip ratio, zero-std share."""
    rows = read_rows(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, keys in zip(axes.flat, PLOTTED):
        names = sorted({k for r in rows for k in r if any(
            k == key or (key.endswith("/") and k.startswith(key) and k.endswith("/mean")) for key in keys)})
        for name in names:
            pts = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=name)
        ax.set_xlabel("step")
        if names:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(run_dir) / "plots" / "grpo.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
