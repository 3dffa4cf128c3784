"""DeepSeekMoE: sigmoid router with a selection-only bias, group-limited top-k, shared experts,
and routed experts dispatched by sorting tokens by expert (spec §3).

Shapes: N tokens (B*T flattened), D hidden, E routed experts, K experts per token,
F = moe_intermediate_size, G = n_group.

Dispatch: the N*K (token, expert) pairs are sorted by expert so each expert's tokens are one
contiguous block; the expert SwiGLU is then two grouped GEMMs (`torch._grouped_mm` with
cumulative offsets, as in torchtitan; the default on CUDA) or two batched GEMMs over a padded
(E, capacity, D) buffer (the default on CPU, where it is the faster kernel). Neither loops over
experts in Python.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.fp8 import fp8_activation, fp8_grad, fp8_weight
from model.layers import SwiGLU


class Router(nn.Module):
    """The gate. Keeps per-expert token counts for the auxiliary-loss-free bias update."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_experts, self.top_k = config.n_routed_experts, config.num_experts_per_tok
        self.num_groups, self.top_groups = config.n_group or 1, config.topk_group or 1
        self.scaling, self.normalize = config.routed_scaling_factor, config.norm_topk_prob
        self.seq_aux_alpha = config.seq_aux_loss_alpha
        self.weight = nn.Parameter(torch.empty(self.num_experts, config.hidden_size))
        # Selection-only bias, fp32 always (official checkpoints store it fp32; spec §3.3).
        self.register_buffer("e_score_correction_bias", torch.zeros(self.num_experts))
        # Loads accumulated over the micro-batches of one optimizer step (not saved in weights).
        self.register_buffer("load_counts", torch.zeros(self.num_experts), persistent=False)
        self.balance_loss = None
        # Set by Transformer.forward for one call: which of the N positions are real tokens
        # (padding must not steer the bias update or the balance loss).
        self.token_mask = None

    def _apply(self, fn, recurse=True):
        # model.to(bf16) must not round the bias (one update step is ~1e-3): keep the fp32
        # values and follow only device moves.
        kept = {n: self._buffers[n] for n in ("e_score_correction_bias", "load_counts")}
        super()._apply(fn, recurse)
        for name, old in kept.items():
            new = self._buffers[name]
            self._buffers[name] = (new.float() if old.is_meta or new.is_meta
                                   else old.to(new.device, torch.float32))
        return self

    def forward(self, x_ND: torch.Tensor, batch_size: int = 1):
        """Return (weights (N, K) fp32, expert ids (N, K)). Steps follow spec §3.2."""
        logits = F.linear(x_ND.float(), self.weight.float())
        scores = logits.sigmoid()
        choice = scores.detach() + self.e_score_correction_bias  # bias steers selection only
        if self.num_groups > 1:
            grouped = choice.view(-1, self.num_groups, self.num_experts // self.num_groups)
            group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            keep = group_scores.topk(self.top_groups, dim=-1).indices
            group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
            choice = grouped.masked_fill(~group_mask[..., None], float("-inf")).flatten(1)
        idx_NK = choice.topk(self.top_k, dim=-1).indices
        weights_NK = scores.gather(1, idx_NK)
        if self.normalize:
            weights_NK = weights_NK / (weights_NK.sum(dim=-1, keepdim=True) + 1e-20)
        weights_NK = weights_NK * self.scaling
        if self.training:
            valid_N = self.token_mask
            if valid_N is not None and valid_N.numel() != idx_NK.shape[0]:
                valid_N = None  # a mask for other positions (e.g. cached decode): count all
            with torch.no_grad():
                real = None if valid_N is None else valid_N[:, None].expand_as(idx_NK)
                self.load_counts += expert_counts(idx_NK, self.num_experts, real)
            self.balance_loss = self._sequence_balance_loss(scores, idx_NK, batch_size, valid_N)
        return weights_NK, idx_NK

    def _sequence_balance_loss(self, scores_NE, idx_NK, batch_size, valid_N=None):
        """alpha * sum_i f_i * P_i per sequence, averaged over sequences (spec §3.4, eqs 17-20),
        over the sequence's real tokens (padding excluded; T = its number of real tokens).

        f_i uses the actual (bias-influenced) selection; gradient flows through P_i only.
        """
        if self.seq_aux_alpha <= 0:
            return None
        E, K = self.num_experts, self.top_k
        T = scores_NE.shape[0] // batch_size
        w_BT = (torch.ones(batch_size, T, device=scores_NE.device) if valid_N is None
                else valid_N.view(batch_size, T).float())
        tokens_B = w_BT.sum(dim=1).clamp(min=1)
        picked = torch.zeros_like(scores_NE).scatter_(1, idx_NK, 1.0).view(batch_size, T, E)
        f_BE = (picked * w_BT[..., None]).sum(dim=1) * (E / K) / tokens_B[:, None]
        probs = (scores_NE / scores_NE.sum(dim=-1, keepdim=True)).view(batch_size, T, E)
        P_BE = (probs * w_BT[..., None]).sum(dim=1) / tokens_B[:, None]
        return self.seq_aux_alpha * (f_BE * P_BE).sum(dim=-1).mean()


def expert_counts(idx: torch.Tensor, num_experts: int, keep: torch.Tensor | None = None):
    """How many of the (token, expert) pairs in `idx` go to each expert (int64, shape (E,)),
    counting only pairs where `keep` is true. A scatter-add into a fixed-size vector, not
    bincount / boolean indexing: same counts, but the output shape never depends on the data,
    so torch.compile traces it without a graph break."""
    ones = (torch.ones_like(idx) if keep is None else keep.to(idx.dtype)).flatten()
    return idx.new_zeros(num_experts).scatter_add_(0, idx.flatten(), ones)


@functools.cache
def grouped_mm_supported(device_type: str, dtype: torch.dtype) -> bool:
    if not hasattr(torch, "_grouped_mm"):
        return False
    if device_type == "cpu":
        return dtype in (torch.float32, torch.bfloat16, torch.float16)
    if device_type == "cuda":  # bf16 grouped GEMM kernels need SM80+ (spec §8)
        return dtype == torch.bfloat16 and torch.cuda.get_device_capability() >= (8, 0)
    return False


def choose_kernel(requested: str, device_type: str, dtype: torch.dtype, aligned: bool) -> str:
    """"auto" and "grouped_mm" use torch._grouped_mm wherever this torch supports it for the
    device and dtype (CUDA bf16 on SM80+, CPU fp32/bf16), padded bmm elsewhere. Under
    torch.compile only bf16 qualifies: the op's fake-tensor rule accepts nothing else."""
    if torch.compiler.is_compiling():  # traced directly (dynamo warns on cached functions)
        usable = (aligned and dtype == torch.bfloat16
                  and grouped_mm_supported.__wrapped__(device_type, dtype))
    else:
        usable = aligned and grouped_mm_supported(device_type, dtype)
    return "grouped_mm" if requested in ("auto", "grouped_mm") and usable else "bmm"


def _weighted_swiglu(h, weight, inter):
    """silu(gate) * up * routing weight, on the (pairs, 2F) output of the gate/up GEMM. The
    routing weight scales the F-wide activation instead of the D-wide expert output (the down
    projection is linear), which halves that elementwise work when F = D/2."""
    gate, up = h.split(inter, dim=-1)
    return F.silu(gate) * up * weight[:, None].to(h.dtype)


class RoutedExperts(nn.Module):
    """E SwiGLU experts stored stacked: gate_up_proj (E, 2F, D) [gate rows, then up rows],
    down_proj (E, D, F); the same in-memory layout as transformers v5."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        E, D, F_ = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts, self.inter = E, F_
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * F_, D))
        self.down_proj = nn.Parameter(torch.empty(E, D, F_))
        self.kernel = config.moe_kernel  # "auto" | "grouped_mm" | "bmm"
        self.fp8 = None  # (backend, pow2) once model.fp8 converts the model

    def forward(self, x_ND, weights_NK, idx_NK):
        N, D = x_ND.shape
        K = idx_NK.shape[1]
        if (self.kernel == "auto" and self.fp8 is None and N * K <= self.num_experts
                and not torch.is_grad_enabled()):
            return self._decode(x_ND, weights_NK, idx_NK)
        flat_expert = idx_NK.flatten()
        order = flat_expert.argsort(stable=True)
        token_of = order // K  # token of each (token, expert) pair, sorted by expert
        counts_E = expert_counts(flat_expert, self.num_experts)
        weight_of = weights_NK.flatten()[order]
        # Under autocast the expert GEMMs run in the autocast dtype, like nn.Linear would
        # (torch._grouped_mm is not on autocast's op lists, so cast explicitly).
        device = x_ND.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x_ND.dtype
        w13, w2 = self.gate_up_proj.to(dtype), self.down_proj.to(dtype)
        # grouped_mm needs 16-byte aligned strides (spec §8): D and F multiples of 8 elements.
        aligned = D % 8 == 0 and self.inter % 8 == 0
        if choose_kernel(self.kernel, device, dtype, aligned) == "grouped_mm":
            # index_select, not x[idx]: its backward is a plain index_add, not a sorting index_put.
            y = self._grouped(x_ND.to(dtype).index_select(0, token_of), weight_of, counts_E, w13, w2)
        else:
            token_of, y = self._padded_bmm(x_ND.to(dtype), token_of, weight_of, counts_E,
                                           flat_expert[order], w13, w2)
        return torch.zeros_like(x_ND).index_add(0, token_of, y.to(x_ND.dtype))

    def _decode(self, x_ND, weights_NK, idx_NK):
        """Few tokens (decode): gather each pair's expert weights and run two bmms; cheaper than
        a grouped GEMM that visits every expert for a handful of rows."""
        N, K = idx_NK.shape
        flat = idx_NK.flatten()
        x_P1D = x_ND[:, None].expand(N, K, -1).reshape(N * K, 1, -1)
        w13 = self.gate_up_proj.index_select(0, flat).to(x_ND.dtype)
        h = torch.bmm(x_P1D, w13.transpose(-2, -1))
        act = _weighted_swiglu(h[:, 0], weights_NK.flatten(), self.inter)
        w2 = self.down_proj.index_select(0, flat).to(x_ND.dtype)
        y = torch.bmm(act[:, None], w2.transpose(-2, -1))
        return y.view(N, K, -1).sum(dim=1)

    def _grouped(self, x_sorted, weight_of, counts_E, w13, w2):
        offsets = counts_E.cumsum(0).to(torch.int32)
        x_sorted, w13, w2 = self._fp8_operands(x_sorted, w13, w2)
        h = self._fp8_out(torch._grouped_mm(x_sorted, w13.transpose(-2, -1), offs=offsets))
        act = _weighted_swiglu(h, weight_of, self.inter)
        if self.fp8 is not None:
            act = fp8_activation(act, self.fp8[1])
        return self._fp8_out(torch._grouped_mm(act, w2.transpose(-2, -1), offs=offsets))

    def _fp8_operands(self, x, w13, w2):
        """FP8 experts (config.fp8): E4M3 operands with 1x128 activation tiles and 128x128
        weight blocks per expert; gradients entering the GEMMs are rounded to 1x128 tiles too.
        The expert Wgrad reuses the feature-wise tiles instead of the report's token-wise 128x1
        tiles (torch has no blockwise grouped FP8 GEMM; emulated on every device)."""
        if self.fp8 is None:
            return x, w13, w2
        pow2 = self.fp8[1]
        return fp8_activation(x, pow2), fp8_weight(w13, pow2), fp8_weight(w2, pow2)

    def _fp8_out(self, y):
        return y if self.fp8 is None else fp8_grad(y, self.fp8[1])

    def _padded_bmm(self, x_ND, token_of, weight_of, counts_E, expert_sorted, w13, w2):
        """Scatter the pairs into an (E, capacity) grid and run two bmms. Empty slots read token 0
        and get routing weight 0, so they add exact zeros to the output and to the gradients."""
        E = self.num_experts
        capacity = int(counts_E.max()) if token_of.numel() else 0
        starts = counts_E.cumsum(0) - counts_E
        slot = torch.arange(token_of.numel(), device=x_ND.device) - starts[expert_sorted]
        dest = expert_sorted * capacity + slot
        grid_token = torch.zeros(E * capacity, dtype=token_of.dtype, device=x_ND.device)
        grid_token[dest] = token_of
        grid_weight = weight_of.new_zeros(E * capacity).index_put((dest,), weight_of)
        grid = x_ND.index_select(0, grid_token)
        grid, w13, w2 = self._fp8_operands(grid, w13, w2)
        h = self._fp8_out(torch.bmm(grid.view(E, capacity, -1), w13.transpose(-2, -1)))
        act = _weighted_swiglu(h.view(E * capacity, -1), grid_weight, self.inter)
        if self.fp8 is not None:
            act = fp8_activation(act, self.fp8[1])
        y = self._fp8_out(torch.bmm(act.view(E, capacity, -1), w2.transpose(-2, -1)))
        return grid_token, y.view(E * capacity, -1)


class MoE(nn.Module):
    """Shared experts (weight 1, every token) plus the routed experts."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate = Router(config)
        self.experts = RoutedExperts(config)
        shared = config.n_shared_experts * config.moe_intermediate_size
        self.shared_experts = SwiGLU(config.hidden_size, shared) if shared else None
        # Set by model.expert_parallel.shard_experts: the routed experts are then this rank's
        # shard and tokens travel to the other ranks' experts (None = all experts local).
        self.dispatcher = None

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(-1, D)
        weights, idx = self.gate(x_ND, batch_size=B)
        if self.dispatcher is not None:
            return self.dispatcher(x_ND, weights, idx, self.experts, self.shared_experts).view(B, T, D)
        out = self.experts(x_ND, weights, idx)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x_ND)
        return out.view(B, T, D)
