"""FP8 fine-grained mixed precision, the DeepSeek-V3 recipe (spec §5).

Quantization: E4M3 everywhere; activations and activation gradients in 1x128 tiles along the
GEMM's contraction dimension, weights in 128x128 blocks; scales from the online max-abs of each
tile/block (s = amax / 448, optionally rounded up to a power of two), FP32 scales. Dimensions that
are not multiples of 128 are zero-padded to 128 for the scale computation and trimmed after.

Three GEMMs per linear, all on FP8 operands (spec §5.1-5.2):
    Fprop  y  = x  @ W^T     x: 1x128 tiles along K,      W: 128x128 blocks
    Dgrad  dx = dy @ W       dy: 1x128 tiles along N,     W: 128x128 blocks
    Wgrad  dW = dy^T @ x     dy, x: 128x1 tiles along tokens (the report re-quantises the cached
                             activation transposed for this GEMM)
Master weights and weight gradients stay FP32.

Backends:
    emulated   quantize -> dequantize -> high-precision matmul: the same operand rounding as real
               FP8, runs anywhere (CPU tests).
    scaled_mm  torch._scaled_mm with DeepSeek blockwise scaling (CUDA SM90). Its scale layouts are
               easy to get silently wrong (spec §5.7), so the first use on a device checks it
               against `emulated` on a small problem and falls back, with one warning, if it
               does not match.
A requested backend the device lacks falls back to `emulated` with one warning.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

E4M3_MAX = 448.0
TILE = 128
AMAX_FLOOR = 1e-4  # DeepSeek's kernels clamp amax so all-zero tiles get a finite scale


def _pad_to(x: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    size = x.shape[dim]
    extra = (-size) % multiple
    if not extra:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad)


def _scale(amax: torch.Tensor, pow2: bool) -> torch.Tensor:
    scale = amax.float().clamp(min=AMAX_FLOOR) / E4M3_MAX
    return torch.exp2(torch.ceil(torch.log2(scale))) if pow2 else scale


def quantize_tiles(x: torch.Tensor, pow2: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """1x128 tiles along the last dim: (q e4m3 same shape as x, scale (..., ceil(K/128)) fp32)."""
    K = x.shape[-1]
    xp = _pad_to(x.float(), -1, TILE)
    tiles = xp.unflatten(-1, (-1, TILE))  # (..., K/128, 128)
    scale = _scale(tiles.abs().amax(dim=-1), pow2)
    q = (tiles / scale[..., None]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q.flatten(-2)[..., :K], scale


def dequantize_tiles(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    K = q.shape[-1]
    tiles = _pad_to(q.float(), -1, TILE).unflatten(-1, (-1, TILE))
    return (tiles * scale[..., None]).flatten(-2)[..., :K]


def quantize_blocks(w: torch.Tensor, pow2: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """128x128 blocks of the last two dims: (q e4m3, scale (..., ceil(N/128), ceil(K/128)))."""
    N, K = w.shape[-2:]
    wp = _pad_to(_pad_to(w.float(), -1, TILE), -2, TILE)
    blocks = wp.unflatten(-1, (-1, TILE)).unflatten(-3, (-1, TILE))  # (.., N/128, 128, K/128, 128)
    scale = _scale(blocks.abs().amax(dim=(-3, -1)), pow2)  # (.., N/128, K/128)
    q = (blocks / scale[..., :, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX)
    q = q.to(torch.float8_e4m3fn).flatten(-2).flatten(-3, -2)
    return q[..., :N, :K], scale


def dequantize_blocks(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """W[i, j] = float(q[i, j]) * scale[i // 128, j // 128] (the official `weight_scale_inv`)."""
    N, K = q.shape[-2:]
    expanded = scale.repeat_interleave(TILE, dim=-2).repeat_interleave(TILE, dim=-1)
    return q.float() * expanded[..., :N, :K]


def qdq_tiles(x, pow2=False):
    return dequantize_tiles(*quantize_tiles(x, pow2))


def qdq_blocks(w, pow2=False):
    return dequantize_blocks(*quantize_blocks(w, pow2))


# -- backends ----------------------------------------------------------------------------------
def _exact_gemms():
    """No quantization: the same autograd plumbing in the input precision (tests, gradcheck)."""
    return (lambda x2, w: x2 @ w.t(), lambda dy2, w: dy2 @ w, lambda dy2, x2: dy2.t() @ x2)


def _emulated_gemms(pow2):
    """The three GEMMs on quantize-dequantized operands, in fp32."""
    def fprop(x2, w):
        return qdq_tiles(x2, pow2) @ qdq_blocks(w, pow2).t()

    def dgrad(dy2, w):
        return qdq_tiles(dy2, pow2) @ qdq_blocks(w, pow2)

    def wgrad(dy2, x2):  # contraction over tokens: tiles run along the token dimension
        return qdq_tiles(dy2.t(), pow2) @ qdq_tiles(x2.t(), pow2).t()
    return fprop, dgrad, wgrad


def _scaled_mm_blockwise(a, a_scale, b_t, b_scale, out_dtype):
    """A (M, K) e4m3 with 1x128 scales (M, K/128); B given as b_t (N, K) e4m3 with either 128x128
    scales (N/128, K/128) or 1x128 scales (N, K/128). Returns A @ B_t^T.

    Scale layouts follow PyTorch's own blockwise tests (test/test_scaled_matmul_cuda.py):
    1x128 scales are outer-dim-major ((rows, K/128) with strides (1, rows)); the recipe API
    (`F.scaled_mm`) takes B's 1x128 scales as such and its 128x128 scales as the transposed
    (K/128, N/128) view with K/128 a multiple of 4 (callers pad K to 512: cuBLASLt pads that dim
    silently otherwise); the older `torch._scaled_mm` takes B's scales as (K/128, N) / (K/128,
    N/128) tensors."""
    sa = a_scale.t().contiguous().t()
    one_by_128 = b_scale.shape[0] == b_t.shape[0]
    if hasattr(F, "scaled_mm") and hasattr(F, "ScalingType"):
        if one_by_128:
            sb, recipe_b = b_scale.t().contiguous().t(), F.ScalingType.BlockWise1x128
        else:
            sb, recipe_b = b_scale.contiguous().t(), F.ScalingType.BlockWise128x128
        return F.scaled_mm(a, b_t.t(), sa, F.ScalingType.BlockWise1x128, sb, recipe_b,
                           output_dtype=out_dtype)
    sb = b_scale.t().contiguous()
    return torch._scaled_mm(a, b_t.t(), scale_a=sa, scale_b=sb, out_dtype=out_dtype)


@functools.cache
def _cuda_quantizers():
    """On CUDA the quantizers are compiled: fused, they cost a few memory passes, not a dozen."""
    return (torch.compile(quantize_tiles, dynamic=True), torch.compile(quantize_blocks, dynamic=True))


def _real_gemms(pow2, out_dtype=torch.float32):
    q_tiles, q_blocks = _cuda_quantizers()

    def padded(t, rows=16):  # K a multiple of 4 blocks (see above), M multiple of 16
        return _pad_to(_pad_to(t, -1, 4 * TILE), -2, rows)

    def fprop(x2, w):
        M, N = x2.shape[0], w.shape[0]
        xq, sx = q_tiles(padded(x2), pow2)
        wq, sw = q_blocks(padded(w, TILE), pow2)
        return _scaled_mm_blockwise(xq, sx, wq, sw, out_dtype)[:M, :N].float()

    def dgrad(dy2, w):
        M, K = dy2.shape[0], w.shape[1]
        dyq, sdy = q_tiles(padded(dy2), pow2)
        wq, sw = q_blocks(padded(w.t(), TILE), pow2)  # (K, N): contraction over N
        return _scaled_mm_blockwise(dyq, sdy, wq, sw, out_dtype)[:M, :K].float()

    def wgrad(dy2, x2):
        N, K = dy2.shape[1], x2.shape[1]
        dyq, sdy = q_tiles(padded(dy2.t()), pow2)  # (N, M): tiles along tokens
        xq, sx = q_tiles(padded(x2.t()), pow2)  # (K, M)
        return _scaled_mm_blockwise(dyq, sdy, xq, sx, out_dtype)[:N, :K].float()
    return fprop, dgrad, wgrad


@functools.cache
def scaled_mm_out_dtype(device_index: int) -> torch.dtype | None:
    """Run the blockwise path once against emulation (fp32 output, else bf16); None if neither
    matches: a scale-layout mistake shows up here as a mismatch instead of silent garbage."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(256, 384, device="cuda", generator=gen)
    w = torch.randn(256, 384, device="cuda", generator=gen)
    dy = torch.randn(256, 256, device="cuda", generator=gen)
    emu = _emulated_gemms(False)
    for out_dtype in (torch.float32, torch.bfloat16):
        try:
            real = _real_gemms(False, out_dtype)
            ok = True
            for fr, fe, args in ((real[0], emu[0], (x, w)), (real[1], emu[1], (dy, w)),
                                 (real[2], emu[2], (dy, x))):
                a, b = fr(*args), fe(*args)
                ok &= bool(((a - b).abs().max() <= 1e-2 * b.abs().max()).item())
            if ok:
                return out_dtype
        except (RuntimeError, NotImplementedError, ValueError):
            continue
    return None


@functools.cache
def resolve_backend(requested: str, device_type: str, device_index: int = 0) -> str:
    """"auto" = scaled_mm where it works (SM90 CUDA), else emulated; warns once on fallback."""
    if requested not in ("auto", "emulated", "scaled_mm"):
        raise ValueError(f"fp8_backend must be auto, emulated or scaled_mm, got {requested!r}")
    if requested == "emulated":
        return "emulated"
    capable = (device_type == "cuda" and torch.cuda.get_device_capability(device_index) >= (9, 0)
               and scaled_mm_out_dtype(device_index) is not None)
    if capable:
        return "scaled_mm"
    if requested == "scaled_mm":
        warnings.warn(f"fp8_backend=scaled_mm is not available on {device_type} (needs SM90 CUDA "
                      "with blockwise torch._scaled_mm that matches emulation); using emulated",
                      stacklevel=2)
    return "emulated"


class _FP8LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, backend, pow2):
        if backend == "scaled_mm":
            gemms = _real_gemms(pow2, scaled_mm_out_dtype(x.device.index or 0))
        elif backend == "exact":
            gemms = _exact_gemms()
        else:
            gemms = _emulated_gemms(pow2)
        x2 = x.reshape(-1, x.shape[-1])
        # The report caches the FP8 activation for Wgrad; emulation keeps the high-precision x
        # and quantizes it (along tokens) when Wgrad needs it, which rounds the same way.
        ctx.save_for_backward(x2, weight)
        ctx.gemms, ctx.in_shape, ctx.in_dtype = gemms, x.shape, x.dtype
        y = gemms[0](x2, weight)
        return y.to(x.dtype).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensors
        _, dgrad, wgrad = ctx.gemms
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = dgrad(dy2, weight).to(ctx.in_dtype).view(ctx.in_shape)
        dw = wgrad(dy2, x2).to(weight.dtype)  # FP32 master gradient
        return dx, dw, None, None


def fp8_linear(x, weight, backend="emulated", pow2=False):
    return _FP8LinearFn.apply(x, weight, backend, pow2)


class FP8Linear(nn.Linear):
    """nn.Linear whose three GEMMs run on FP8 operands; same parameters and state-dict keys."""

    fp8_backend: str = "auto"
    fp8_pow2: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            raise ValueError("FP8Linear: biased linears are outside the DeepSeek-V3 FP8 scope")
        backend = resolve_backend(self.fp8_backend, x.device.type,
                                  x.device.index or 0 if x.device.type == "cuda" else 0)
        return fp8_linear(x, self.weight, backend, self.fp8_pow2)


def convert_linears(module: nn.Module, backend: str, pow2: bool) -> int:
    """Turn every nn.Linear under `module` into an FP8Linear in place (parameters untouched)."""
    count = 0
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = FP8Linear
            child.fp8_backend, child.fp8_pow2 = backend, pow2
            count += 1
    return count


# -- routed experts: quantize the operands of the grouped GEMMs ---------------------------------
class _QuantizeOperand(torch.autograd.Function):
    """Forward: the FP8 rounding of an operand (tiles or blocks); backward: straight through."""

    @staticmethod
    def forward(ctx, x, blocks, pow2):
        return (qdq_blocks(x, pow2) if blocks else qdq_tiles(x, pow2)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class _QuantizeGrad(torch.autograd.Function):
    """Forward: identity; backward: the incoming gradient rounded to FP8 in 1x128 tiles, so the
    Dgrad and Wgrad GEMMs behind it see an FP8 operand."""

    @staticmethod
    def forward(ctx, y, pow2):
        ctx.pow2 = pow2
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        return qdq_tiles(grad, ctx.pow2).to(grad.dtype), None


def fp8_activation(x, pow2=False):
    return _QuantizeOperand.apply(x, False, pow2)


def fp8_weight(w, pow2=False):
    return _QuantizeOperand.apply(w, True, pow2)


def fp8_grad(y, pow2=False):
    return _QuantizeGrad.apply(y, pow2)
