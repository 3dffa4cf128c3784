"""Per-step metrics: one JSON object per line in metrics.jsonl (flushed per row), a progress bar
with tokens/s on the console, and optional wandb / tensorboard / trackio."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

# Dense bf16 peak FLOP/s by device name substring (vendor datasheets); CPU has no entry.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}


def device_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


class MetricsWriter:
    def __init__(self, out_dir: str | Path, total_steps: int, enabled: bool, logging_cfg=None,
                 config_dict: dict | None = None, resume_step: int = 0):
        self.enabled = enabled
        self.trackers = []
        self.bar = None
        if not enabled:
            return
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.file = open_metrics(out / "metrics.jsonl", resume_step if resume_step else None)
        from tqdm.auto import tqdm
        # In a log file (no TTY) a redrawn bar is one endless line: redraw every 30 s there.
        self.bar = tqdm(total=total_steps, initial=resume_step, desc="pretrain", unit="step",
                        dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
        if logging_cfg is not None and logging_cfg.wandb:
            import wandb
            self.trackers.append(("wandb", wandb.init(project=logging_cfg.project, config=config_dict,
                                                      dir=str(out))))
        if logging_cfg is not None and logging_cfg.trackio:  # local-first, wandb-like API
            import trackio
            trackio.init(project=logging_cfg.project, config=config_dict, embed=False)
            self.trackers.append(("trackio", trackio))
        if logging_cfg is not None and logging_cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.trackers.append(("tensorboard", SummaryWriter(str(out / "tensorboard"))))

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        row = finite_row(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for kind, tracker in self.trackers:
            scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
            if kind in ("wandb", "trackio"):
                tracker.log(scalars, step=row["step"])
            else:
                for k, v in scalars.items():
                    tracker.add_scalar(k, v, row["step"])
        if self.bar is not None and "loss" in row:
            self.bar.n = row["step"]
            post = {"loss": f"{row['loss']:.4f}" if row.get("loss") is not None else "nan",
                    "tok/s": f"{row.get('tokens_per_s', 0):,.0f}"}
            if row.get("mfu") is not None:
                post["mfu"] = f"{row['mfu']:.1%}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(0)  # redraws only when mininterval has passed

    def message(self, text: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(text)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.file.close()
        for kind, tracker in self.trackers:
            tracker.finish() if kind in ("wandb", "trackio") else tracker.close()


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a torn last line (a crash mid-write) ends the list."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a crash
            break
    return rows


def open_metrics(path: Path, keep_through_step: int | None):
    """metrics.jsonl opened for appending. With `keep_through_step`, rows past that step (those
    a resumed run will log again) and a torn last line are dropped first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_through_step is not None:
        rows = [r for r in read_metrics(path) if r.get("step", 0) <= keep_through_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.open("a")


def finite_row(row: dict) -> dict:
    """NaN/inf become null, so every line is strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
