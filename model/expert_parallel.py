"""Expert parallelism: routed experts sharded over a process group, tokens moved to their experts'
ranks and back with `all_to_all_single` (spec §3; the report's cross-node dispatch/combine).

Shapes: N local tokens, D hidden, E routed experts in all, R = EP group size, L = E / R experts
per rank (rank r holds experts [r*L, (r+1)*L)), K experts per token, P = N*K (token, expert)
pairs sent by this rank, M pairs received by it.

One MoE layer under EP, per chunk of tokens:
    1. sort the P pairs by global expert id (so by destination rank, then by local expert) and
       exchange the per-(rank, expert) counts: every rank learns how many rows it receives from
       each source for each of its experts (the split sizes, exchanged before the data);
    2. dispatch: all_to_all_single of the sorted token rows (optionally FP8 with power-of-2
       1x128 scales, as the report does for dispatch);
    3. the local experts run on the M received rows (RoutedExperts with L experts, weight 1);
    4. combine: the reverse all_to_all_single brings each pair's output home (high precision);
    5. out[token] += routing weight * output, summed over the token's K pairs.
The routing weight is applied at home after the combine (DeepSeek's combine does the same), so
the router's gradient never crosses the network; only the activation rows do.

Autograd: each all-to-all is two custom Functions, `_Launch` (starts it, async) and `_Finish`
(waits for it). Their backwards are the reverse all-to-all: `_Finish.backward` launches it and
`_Launch.backward` waits for it, so backward overlaps the same way forward does.

Overlap (`overlap=True`): the layer's tokens are split in two chunks; both dispatches start, the
shared expert runs while they are in flight, then chunk A's experts run while chunk B is still
arriving, and chunk B's experts run while chunk A's outputs travel home. Collectives are issued in
the same order on every rank (the chunk count is fixed, chunks may be empty), which is what keeps
the group in lockstep. `overlap=False` runs one chunk and waits for every collective (forward
and backward) right where it is launched. The attention of the other half is not interleaved:
that needs the decoder-layer loop (DualPipe's granularity), not the MoE layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from model.fp8 import dequantize_tiles, quantize_tiles


@dataclass
class CommEvent:
    """Timestamps (time.perf_counter) of one all-to-all: launched, waited on, wait returned,
    and completed (from the collective's future, so known even when nobody was waiting)."""

    name: str
    launched: float
    wait_begin: float = 0.0
    wait_end: float = 0.0
    completed: float = 0.0


@dataclass
class CommTrace:
    events: list[CommEvent] = field(default_factory=list)

    def hidden_share(self) -> dict:
        """Share of all-to-all time hidden behind compute: per collective, busy = completed -
        launched, exposed = time the caller spent blocked in wait(); hidden = busy - exposed."""
        busy = sum(max(e.completed, e.wait_end) - e.launched for e in self.events)
        exposed = sum(e.wait_end - e.wait_begin for e in self.events)
        return {"comm_s": busy, "exposed_s": exposed, "collectives": len(self.events),
                "hidden_share": (busy - exposed) / busy if busy > 0 else 0.0}


class _Pending:
    """One all-to-all in flight (shared by its `_Launch` and `_Finish` nodes)."""

    def __init__(self, dispatcher: "ExpertDispatcher", name: str, send_splits, recv_splits, fp8):
        self.dispatcher, self.name, self.fp8 = dispatcher, name, fp8
        self.blocking = not dispatcher.overlap  # wait right at the launch, forward and backward
        self.send_splits, self.recv_splits = send_splits, recv_splits
        self.work = self.buffer = self.payload = self.event = None
        self.dtype = self.dim = None

    def start(self, payload: torch.Tensor, send_splits, recv_splits, tag: str) -> None:
        rows = sum(recv_splits)
        self.buffer = payload.new_empty((rows, payload.shape[1]))
        # Keep the input alive until the wait: on CUDA the collective reads it on its own stream.
        self.payload = payload.contiguous()
        self.work, self.event = self.dispatcher.all_to_all(
            self.buffer, self.payload, recv_splits, send_splits, f"{self.name}/{tag}")
        if self.blocking:
            self.dispatcher.wait(self.work, self.event)
            self.work = None

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.dispatcher.wait(self.work, self.event)
        out, self.buffer, self.work, self.payload = self.buffer, None, None, None
        return out


def _pack_fp8(x_PD: torch.Tensor) -> torch.Tensor:
    """E4M3 bytes plus the fp32 power-of-2 scale of each 1x128 tile, as one uint8 row per token
    (one collective carries both)."""
    q, scale = quantize_tiles(x_PD, pow2=True)
    return torch.cat((q.view(torch.uint8), scale.contiguous().view(torch.uint8)), dim=1)


def _unpack_fp8(rows: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    q = rows[:, :dim].contiguous().view(torch.float8_e4m3fn)
    scale = rows[:, dim:].contiguous().view(torch.float32)
    return dequantize_tiles(q, scale).to(dtype)


class _Launch(torch.autograd.Function):
    """Forward: start the all-to-all of x's rows; returns a token that orders `_Finish` after it.
    Backward: wait for the reverse all-to-all that `_Finish.backward` started."""

    @staticmethod
    def forward(ctx, x, pending: _Pending):
        ctx.pending = pending
        pending.dtype, pending.dim = x.dtype, x.shape[1]
        payload = _pack_fp8(x) if pending.fp8 else x
        pending.start(payload, pending.send_splits, pending.recv_splits, "fwd")
        return x.new_zeros(())

    @staticmethod
    def backward(ctx, _grad_token):
        return ctx.pending.wait(), None


class _Finish(torch.autograd.Function):
    """Forward: wait for the all-to-all and return the received rows. Backward: start the reverse
    all-to-all of the incoming gradient (high precision, also under FP8 dispatch)."""

    @staticmethod
    def forward(ctx, token, pending: _Pending):
        ctx.pending = pending
        rows = pending.wait()
        return _unpack_fp8(rows, pending.dim, pending.dtype) if pending.fp8 else rows

    @staticmethod
    def backward(ctx, grad):
        p = ctx.pending
        p.start(grad.to(p.dtype), p.recv_splits, p.send_splits, "bwd")
        return grad.new_zeros(()), None


@dataclass
class _Chunk:
    """One chunk's routing plan on the sending side and its receive layout."""

    token_of: torch.Tensor  # (P,) local token of each sorted pair
    weight_of: torch.Tensor  # (P,) routing weight of each sorted pair
    send_splits: list[int]  # rows to each rank
    recv_splits: list[int]  # rows from each rank
    recv_expert: torch.Tensor  # (M,) local expert id of each received row


class ExpertDispatcher:
    """Moves (token, expert) pairs to the ranks that hold the experts and back (see module doc).

    group: the EP process group; every rank of it holds E / R experts.
    overlap: two chunks with async collectives (True) or one blocking chunk (False).
    fp8_dispatch: send dispatched activations as E4M3 with power-of-2 1x128 scales.
    trace: a CommTrace to record timestamps into (benchmarks), or None.
    """

    def __init__(self, group, num_experts: int, overlap: bool = True, fp8_dispatch: bool = False):
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if num_experts % self.size:
            raise ValueError(f"n_routed_experts={num_experts} must be divisible by the expert-"
                             f"parallel size {self.size}")
        self.num_experts, self.local_experts = num_experts, num_experts // self.size
        self.overlap, self.fp8_dispatch = overlap, fp8_dispatch
        self.trace: CommTrace | None = None

    # -- collectives -------------------------------------------------------------------
    def all_to_all(self, out, inp, out_splits, in_splits, name):
        work = dist.all_to_all_single(out, inp, out_splits, in_splits, group=self.group,
                                      async_op=True)
        event = None
        if self.trace is not None:
            event = CommEvent(name, time.perf_counter())
            self.trace.events.append(event)
            work.get_future().then(lambda _f, e=event: setattr(e, "completed", time.perf_counter()))
        return work, event

    def wait(self, work, event) -> None:
        if event is not None:
            event.wait_begin = time.perf_counter()
        work.wait()
        if event is not None:
            event.wait_end = time.perf_counter()

    # -- planning ----------------------------------------------------------------------
    def _plans(self, chunks_idx: list[torch.Tensor], weights: list[torch.Tensor]) -> list[_Chunk]:
        """Sort each chunk's pairs by expert and exchange the (rank, expert) counts of all chunks
        in one small all-to-all."""
        R, L = self.size, self.local_experts
        orders, counts = [], []
        for idx_CK in chunks_idx:
            flat = idx_CK.flatten()
            orders.append(flat.argsort(stable=True))
            counts.append(torch.bincount(flat, minlength=self.num_experts))
        send_RCL = torch.stack(counts).view(len(counts), R, L).transpose(0, 1).contiguous()
        recv_RCL = torch.empty_like(send_RCL)
        dist.all_to_all_single(recv_RCL, send_RCL, group=self.group)
        send_RC, recv_RC = send_RCL.sum(-1).tolist(), recv_RCL.sum(-1).tolist()
        plans = []
        local_ids = torch.arange(L, device=recv_RCL.device).repeat(R)
        for c, (idx_CK, w_CK, order) in enumerate(zip(chunks_idx, weights, orders)):
            K = idx_CK.shape[1]
            plans.append(_Chunk(
                token_of=order // K, weight_of=w_CK.flatten()[order],
                send_splits=[row[c] for row in send_RC], recv_splits=[row[c] for row in recv_RC],
                recv_expert=local_ids.repeat_interleave(recv_RCL[:, c].flatten())))
        return plans

    def _launch(self, x_PD, name: str, send, recv, fp8: bool):
        pending = _Pending(self, name, send, recv, fp8)
        return _Launch.apply(x_PD, pending), pending

    # -- the layer -------------------------------------------------------------------
    def __call__(self, x_ND: torch.Tensor, weights_NK: torch.Tensor, idx_NK: torch.Tensor,
                 experts: nn.Module, shared: nn.Module | None) -> torch.Tensor:
        """Routed experts (sharded) + shared experts for the N local tokens; returns (N, D)."""
        N = x_ND.shape[0]
        # Under autocast the experts compute in the autocast dtype anyway: send that (half the
        # bytes of the fp32 residual stream, the same expert inputs and outputs).
        device = x_ND.device.type
        wire = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x_ND.dtype
        bounds = [0, (N + 1) // 2, N] if self.overlap else [0, N]
        spans = list(zip(bounds[:-1], bounds[1:]))
        plans = self._plans([idx_NK[a:b] for a, b in spans], [weights_NK[a:b] for a, b in spans])
        # 1. start every chunk's dispatch
        dispatched = []
        for c, ((a, _), plan) in enumerate(zip(spans, plans)):
            rows = x_ND.index_select(0, plan.token_of + a).to(wire)  # (P, D) by destination
            dispatched.append(self._launch(rows, f"dispatch{c}", plan.send_splits,
                                           plan.recv_splits, self.fp8_dispatch))
        # 2. the shared expert runs while the dispatches are in flight
        shared_out = shared(x_ND) if shared is not None else None
        # 3. per chunk: receive, run the local experts, start the combine
        combined = []
        for c, (plan, (token, pending)) in enumerate(zip(plans, dispatched)):
            received = _Finish.apply(token, pending)  # (M, D)
            if received.shape[0]:
                ones = received.new_ones(received.shape[0], 1, dtype=torch.float32)
                y_MD = experts(received, ones, plan.recv_expert[:, None])
            else:  # nothing to compute; keep the (empty) rows in the graph for the backward
                y_MD = received.clone()
            combined.append(self._launch(y_MD, f"combine{c}", plan.recv_splits,
                                         plan.send_splits, False))
        # 4. bring the outputs home and weight them
        out = torch.zeros_like(x_ND)
        for (a, _), plan, (token, pending) in zip(spans, plans, combined):
            y_PD = _Finish.apply(token, pending)
            weighted = y_PD.to(out.dtype) * plan.weight_of[:, None].to(out.dtype)
            out = out.index_add(0, plan.token_of + a, weighted)
        return out + shared_out if shared_out is not None else out


def expert_slice(num_experts: int, size: int, rank: int) -> slice:
    local = num_experts // size
    return slice(rank * local, (rank + 1) * local)


def shard_experts(model: nn.Module, group, overlap: bool = True,
                  fp8_dispatch: bool = False) -> ExpertDispatcher:
    """Keep only this rank's routed experts in every MoE layer (main and MTP) and route through
    an ExpertDispatcher over `group`. Call before wrapping the model or building the optimizer."""
    from model.moe import MoE

    layers = [m for m in model.modules() if isinstance(m, MoE)]
    if not layers:
        raise ValueError("expert parallelism needs a model with MoE layers")
    dispatcher = ExpertDispatcher(group, layers[0].experts.num_experts, overlap, fp8_dispatch)
    keep = expert_slice(dispatcher.num_experts, dispatcher.size, dispatcher.rank)
    for moe in layers:
        experts = moe.experts
        experts.gate_up_proj = nn.Parameter(experts.gate_up_proj.detach()[keep].clone())
        experts.down_proj = nn.Parameter(experts.down_proj.detach()[keep].clone())
        experts.num_experts = dispatcher.local_experts
        moe.dispatcher = dispatcher
    return dispatcher


def is_expert_param(name: str) -> bool:
    """Routed-expert tensors (sharded under EP), by their state-dict name."""
    return ".mlp.experts." in name and name.endswith(("gate_up_proj", "down_proj"))

