"""Training under expert parallelism (`train.parallel: ep`): the DP x EP mesh, wrapping, gradient
reduction and clipping, and checkpoint (de)sharding. The dispatch is model/expert_parallel.py.

Mesh: world = dp * ep ranks laid out (dp, ep), so an EP group is `ep` consecutive ranks (one node
when ep <= GPUs per node: the all-to-all then stays on NVLink). Every rank reads its own rows of
the global batch (the loader's rank and world are the global ones).

Weights: each rank keeps E / ep routed experts (rank r of its EP group: experts [r*E/ep, ...)).
Everything else is replicated with DDP or sharded with FSDP2 over all ranks (`train.ep_dense`);
both skip the experts. After backward an expert's gradient on its owner already sums the
contributions of all tokens of its EP group (the combine's backward brought them home); summing
it over the DP dimension and dividing by the world size gives the same average that DDP/FSDP give
the other weights, so the update equals one process on the whole global batch.

Checkpoints keep the usual HF layout with all E experts: `gather_state` all-gathers expert weights
and their AdamW moments over the EP group before rank 0 writes; `shard_state` slices them again on
load, so a run can resume under another EP size (or without EP).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from model.expert_parallel import ExpertDispatcher, expert_slice, is_expert_param, shard_experts


@dataclass
class ExpertParallel:
    dispatcher: ExpertDispatcher
    mesh: object  # DeviceMesh (dp, ep)
    dp_group: dist.ProcessGroup
    world: int
    device: torch.device
    expert_names: list[str]  # state-dict names of the routed-expert tensors
    expert_params: list[torch.nn.Parameter]

    @property
    def size(self) -> int:
        return self.dispatcher.size

    @property
    def ep_group(self) -> dist.ProcessGroup:
        return self.dispatcher.group

    @property
    def dp_size(self) -> int:
        return self.world // self.size

    # -- after backward ----------------------------------------------------------------
    @torch.no_grad()
    def reduce_expert_grads(self) -> None:
        """Sum each expert gradient over the DP replicas and divide by the world size."""
        for p in self.expert_params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.dp_size > 1:
                dist.all_reduce(p.grad, group=self.dp_group)
            p.grad.div_(self.world)

    @torch.no_grad()
    def clip_grad_norm(self, model: torch.nn.Module, max_norm: float) -> torch.Tensor:
        """The global gradient norm (dense weights once, each expert once) and clipping to
        max_norm, as torch.nn.utils.clip_grad_norm_ would on one process."""
        experts = {id(p) for p in self.expert_params}
        dense = [p for p in model.parameters() if id(p) not in experts and p.grad is not None]
        dense_norm = torch.nn.utils.get_total_norm([p.grad for p in dense])
        if hasattr(dense_norm, "full_tensor"):  # FSDP2: a DTensor
            dense_norm = dense_norm.full_tensor()
        expert_sq = torch.stack([p.grad.float().square().sum() for p in self.expert_params]).sum()
        dist.all_reduce(expert_sq, group=self.ep_group)  # DP replicas hold equal gradients
        total = (dense_norm.float().square() + expert_sq.to(dense_norm.device)).sqrt()
        if math.isfinite(float(total)):
            coef = min(1.0, max_norm / (float(total) + 1e-6))
            if coef < 1.0:
                for p in dense + self.expert_params:
                    p.grad.mul_(coef)
        return total

    # -- checkpoints -------------------------------------------------------------------
    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        local = t.to(self.device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local, group=self.ep_group)
        return torch.cat(parts)

    def gather_state(self, optimizer, model_sd: dict, optim_sd: dict) -> tuple[dict, dict]:
        """Put every expert (weights and AdamW moments, all-gathered over the EP group from the
        live parameters and optimizer) into full state dicts. Collective: every rank calls it,
        also those whose dicts are empty (a full state dict lives on rank 0 only)."""
        for name, p in zip(self.expert_names, self.expert_params):
            full = self._gather(p.detach())
            if name in model_sd:
                model_sd[name] = full.cpu()
            state = optimizer.state.get(p, {})
            for key in sorted(k for k, v in state.items() if torch.is_tensor(v) and v.ndim):
                full = self._gather(state[key])
                if name in optim_sd.get("state", {}):
                    optim_sd["state"][name][key] = full.cpu()
        return model_sd, optim_sd

    def shard_state(self, model_sd: dict, optim_sd: dict | None) -> tuple[dict, dict | None]:
        """This rank's experts out of full state dicts (no communication)."""
        E = self.dispatcher.num_experts
        keep = expert_slice(E, self.size, self.dispatcher.rank)

        def take(t):
            if t.shape[0] != E:
                raise ValueError(f"checkpoint holds {t.shape[0]} experts per layer, the model {E}")
            return t[keep].clone()
        model_sd = {k: take(v) if is_expert_param(k) else v for k, v in model_sd.items()}
        if optim_sd is not None:
            state = {}
            for fqn, entry in optim_sd["state"].items():
                if is_expert_param(fqn):  # exp_avg, exp_avg_sq: per expert; step: a scalar
                    entry = {k: take(v) if torch.is_tensor(v) and v.ndim else v
                             for k, v in entry.items()}
                state[fqn] = entry
            optim_sd = {**optim_sd, "state": state}
        return model_sd, optim_sd


def setup(core: torch.nn.Module, train_cfg, world: int, device: torch.device) -> ExpertParallel:
    """Build the (dp, ep) mesh and shard the routed experts of `core` over its EP dimension."""
    ep = train_cfg.ep_size or world
    if ep < 1 or world % ep:
        raise ValueError(f"train.ep_size={train_cfg.ep_size} must divide the {world} processes")
    experts = core.config.n_routed_experts
    if experts % ep:
        raise ValueError(f"train.ep_size={ep} must divide model.n_routed_experts={experts}")
    mesh = init_device_mesh(device.type, (world // ep, ep), mesh_dim_names=("dp", "ep"))
    dispatcher = shard_experts(core, mesh["ep"].get_group(), overlap=train_cfg.ep_overlap,
                               fp8_dispatch=train_cfg.ep_fp8_dispatch)
    named = [(n, p) for n, p in core.named_parameters() if is_expert_param(n)]
    return ExpertParallel(dispatcher, mesh, mesh["dp"].get_group(), world, device,
                          [n for n, _ in named], [p for _, p in named])


def wrap(core: torch.nn.Module, ep: ExpertParallel, dense: str, device: torch.device):
    """DDP or FSDP2 over all ranks for everything but the routed experts."""
    experts = set(ep.expert_params)
    if dense == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for layer in core.main_layers:
            fully_shard(layer, ignored_params={p for p in layer.parameters() if p in experts})
        return fully_shard(core, ignored_params=experts)
    from torch.nn.parallel import DistributedDataParallel
    names = [n for n, _ in core.named_parameters() if is_expert_param(n)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(core, names)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(core, device_ids=ids, broadcast_buffers=False)


def warn_unused(train_cfg, world: int) -> None:
    """EP settings that this launch ignores."""
    if train_cfg.parallel == "ep" and world == 1:
        warnings.warn("train.parallel=ep with one process: all experts stay local (launch with "
                      "--nproc N or torchrun to shard them)", stacklevel=2)
    elif train_cfg.parallel != "ep" and (train_cfg.ep_size or train_cfg.ep_fp8_dispatch):
        warnings.warn(f"train.ep_size / train.ep_fp8_dispatch are ignored with "
                      f"train.parallel={train_cfg.parallel}", stacklevel=2)
