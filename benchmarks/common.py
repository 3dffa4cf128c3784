"""Shared helpers for benchmark scripts: timing with warmup, machine description, JSON output."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from datetime import date

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn, repeat: int = 5, warmup: int = 2, device: str = "cpu") -> float:
    """Median wall time of fn() in seconds after warmup calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict, repeat: int = 5, warmup: int = 2, device: str = "cpu") -> dict[str, float]:
    """Time several candidates round-robin so machine noise hits them alike; median per name."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def hf_config(config, mtp: bool = False):
    """transformers' DeepseekV3Config with our ModelConfig's shape (our training-only fields
    dropped); transformers never runs MTP, so its depth is 0 unless asked."""
    from transformers import DeepseekV3Config
    values = {k: v for k, v in config.to_dict().items() if k in DeepseekV3Config.__dataclass_fields__}
    hf = DeepseekV3Config(**values)
    if not mtp:
        hf.num_nextn_predict_layers = 0
    return hf


def machine() -> dict:
    info = {"date": str(date.today()), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    return info


def emit(result: dict) -> None:
    """The last stdout line of every benchmark: one JSON object."""
    print(json.dumps({**machine(), **result}))
