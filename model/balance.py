"""Auxiliary-loss-free load balancing (spec §3.3) and the MaxVio metric (spec §3.5).

Each Router counts how many tokens picked each expert over the micro-batches of a step
(`load_counts`). After the optimizer step the training loop calls `update_expert_bias`, which
all-reduces the counts over data-parallel ranks (the update must see the whole global batch),
moves every bias by gamma * sign(mean_load - load) -- overloaded experts down, underloaded up --
and resets the counts. The bias is a buffer: it never receives gradients.

Under expert parallelism the counts are still all-reduced over every rank (each rank counts the
choices of its own tokens over all E experts, and every rank keeps the full bias, which must stay
identical), so the loads and MaxVio cover the whole EP group and all its data-parallel replicas.
With `ep_size` > 1 the stats also give the MaxVio of the rows each EP rank receives (the sum of
its experts' loads): the slowest rank sets the all-to-all's and the expert GEMMs' time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from model.moe import Router


@dataclass
class BalanceStats:
    """MaxVio per MoE layer (main layers first, then MTP) for the step's loads, and their mean."""

    max_violation: list[float]
    mean_max_violation: float
    tokens_routed: int
    ep_max_violation: list[float] | None = None  # per layer, over EP ranks (ep_size > 1 only)


def routers(model: torch.nn.Module) -> list[Router]:
    return [m for m in model.modules() if isinstance(m, Router)]


def max_violation(load_LE: torch.Tensor) -> torch.Tensor:
    """(max_i load_i - mean load) / mean load per row; 0 means perfectly balanced."""
    load = load_LE.float()
    mean = load.mean(dim=-1)
    return (load.max(dim=-1).values - mean) / mean.clamp(min=1e-12)


@torch.no_grad()
def update_expert_bias(model: torch.nn.Module, gamma: float | None = None,
                       group: dist.ProcessGroup | None = None,
                       ep_size: int = 1) -> BalanceStats | None:
    """Apply b += gamma * sign(mean(load) - load) per MoE layer and reset the counts.

    gamma defaults to config.bias_update_speed; gamma = 0 only measures (e.g. the frozen tail
    of training, spec §6). Returns None when the model has no MoE layer or saw no tokens.
    ep_size: experts are split in this many consecutive blocks (one per EP rank) for
    `ep_max_violation`.
    """
    layer_routers = routers(model)
    if not layer_routers:
        return None
    if gamma is None:
        gamma = model.config.bias_update_speed
    loads_LE = torch.stack([r.load_counts for r in layer_routers])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(loads_LE, group=group)
    total = int(loads_LE[0].sum().item())
    if total == 0:
        return None
    if gamma:
        delta_LE = gamma * torch.sign(loads_LE.mean(dim=-1, keepdim=True) - loads_LE)
        for router, delta in zip(layer_routers, delta_LE):
            router.e_score_correction_bias += delta
    for router in layer_routers:
        router.load_counts.zero_()
    violation = max_violation(loads_LE)
    per_rank = None
    if ep_size > 1:
        L, E = loads_LE.shape
        per_rank = max_violation(loads_LE.view(L, ep_size, E // ep_size).sum(-1)).tolist()
    return BalanceStats(violation.tolist(), float(violation.mean()), total, per_rank)
