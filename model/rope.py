"""Rotary position embedding for MLA's decoupled rope dims: interleaved pairs, optional YaRN.

DeepSeek rotates adjacent pairs (2i, 2i+1) as complex numbers (spec §2.2). We keep that
interleaved layout in the output; transformers (rope_interleave=True) emits the rotated pairs
de-interleaved, which is the same permutation on q and k, so q.k and the logits are equal.

YaRN (spec §2.2, HF `_compute_yarn_parameters`): frequencies blend between the original and
the factor-scaled ones with a linear ramp over pair index; `attention_factor` multiplies cos/sin
and the softmax scale gains mscale(factor, mscale_all_dim)^2 (`softmax_scale`). We mirror HF
exactly so checkpoints give the same logits there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.config import ModelConfig


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_inv_freq(dim: int, base: float, rope: dict) -> tuple[torch.Tensor, float]:
    """YaRN inverse frequencies for `dim` rope dims and the cos/sin attention factor."""
    factor = rope["factor"]
    original = rope["original_max_position_embeddings"]
    beta_fast, beta_slow = rope.get("beta_fast") or 32, rope.get("beta_slow") or 1
    mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
    attention_factor = rope.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolation = 1.0 - ramp  # 1 keeps the original frequency (high-frequency pairs)
    inv_freq = (1.0 / (factor * pos_freqs)) * ramp + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention_factor)


def softmax_scale(config: ModelConfig) -> float:
    """(d_nope + d_rope)^-0.5, times mscale^2 under YaRN with mscale_all_dim (spec §2.1 item 5)."""
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    rope = config.rope_settings
    if rope["rope_type"] != "default" and rope.get("mscale_all_dim"):
        m = _yarn_mscale(rope["factor"], rope["mscale_all_dim"])
        scale *= m * m
    return scale


class RotaryEmbedding(nn.Module):
    """Produces (cos, sin) of shape (..., rope_dim/2) for integer positions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim, rope = config.qk_rope_head_dim, config.rope_settings
        base = float(rope["rope_theta"])
        if rope["rope_type"] == "yarn":
            inv_freq, self.attention_factor = yarn_inv_freq(dim, base, rope)
        else:
            inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            self.attention_factor = 1.0
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[..., None] * self.inv_freq.to(positions.device)
        return freqs.cos() * self.attention_factor, freqs.sin() * self.attention_factor


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (..., T, R) by angles whose cos/sin are (..., T, R/2).

    cos/sin broadcast over any head dimension between the batch and T (caller unsqueezes).
    Computed in fp32 and cast back (HF computes cos/sin in the activation dtype; the fp32
    difference is below bf16 resolution).
    """
    x32 = x.float()
    even, odd = x32[..., 0::2], x32[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
