"""Per-step schedules: learning rate, MTP loss weight, bias update speed (pure functions)."""

from __future__ import annotations

import math

from pretrain.config import BalanceConfig, OptimConfig


def lr_at(step: int, total: int, optim: OptimConfig) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    peak, floor = optim.lr, optim.lr * optim.min_lr_ratio
    warmup = min(optim.warmup_steps, total)
    if step < warmup:
        return peak * (step + 1) / warmup
    if optim.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    decay_start = total - int(round(optim.decay_fraction * total))
    if step < max(decay_start, warmup):
        return peak
    progress = (step - decay_start + 1) / max(1, total - decay_start)
    return peak + (floor - peak) * min(progress, 1.0)


def mtp_weight_at(step: int, total: int, balance: BalanceConfig, default: float) -> float:
    early = default if balance.mtp_loss_weight is None else balance.mtp_loss_weight
    late = early if balance.mtp_loss_weight_late is None else balance.mtp_loss_weight_late
    return early if step < balance.mtp_switch_fraction * total else late


def bias_speed_at(step: int, total: int, balance: BalanceConfig, default: float) -> float:
    gamma = default if balance.bias_update_speed is None else balance.bias_update_speed
    frozen_from = total - int(round(balance.bias_freeze_fraction * total))
    return 0.0 if step >= frozen_from else gamma
