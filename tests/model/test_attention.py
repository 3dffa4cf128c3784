"""Multi-head Latent Attention against a float64 reference written from spec §2.1-2.2.

The reference rotates adjacent pairs (2i, 2i+1) as complex numbers (torch.polar), builds YaRN's
frequencies and temperature from the formulas, and never calls model code.
"""

from __future__ import annotations

import math

import pytest
import torch

from model.attention import MLA
from model.rope import RotaryEmbedding

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _mscale(factor, m):
    return 0.1 * m * math.log(factor) + 1.0


def _rope64(R, yarn=None):
    """(inv_freq (R/2,), magnitude of the rotation, softmax-scale multiplier), spec §2.1-2.2."""
    theta = 10000.0
    inv_freq = theta ** (-torch.arange(0, R, 2, dtype=torch.float64) / R)
    if yarn is None:
        return inv_freq, 1.0, 1.0
    rope = yarn
    s, orig = rope["factor"], rope["original_max_position_embeddings"]

    def dim_for(rotations):  # the pair dimension that turns `rotations` times over orig
        return R * math.log(orig / (2 * math.pi * rotations)) / (2 * math.log(theta))

    low = max(math.floor(dim_for(rope["beta_fast"])), 0)
    high = min(math.ceil(dim_for(rope["beta_slow"])), R - 1)
    ramp = ((torch.arange(R // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    inv_freq = inv_freq / s * ramp + inv_freq * (1 - ramp)
    magnitude = _mscale(s, rope["mscale"]) / _mscale(s, rope["mscale_all_dim"])
    return inv_freq, magnitude, _mscale(s, rope["mscale_all_dim"]) ** 2


def _rotate(x, angles, magnitude):
    """Rotate adjacent pairs of x (..., R) by complex exp(i*angle) scaled by magnitude."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    rot = torch.polar(torch.full_like(angles, magnitude), angles)
    return torch.view_as_real(pairs * rot).flatten(-2)


def reference_mla(attn: MLA, cfg, x, positions, key_mask=None, yarn=None):
    """float64 naive MLA (spec §2.1). key_mask (B, S) bool: False = padding; yarn: the
    rope_scaling dict the layer was built with (None = plain RoPE)."""
    p = {n: t.detach().double() for n, t in attn.named_parameters()}
    eps, H = cfg.rms_norm_eps, cfg.num_attention_heads
    Dn, R, Dv, C = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    B, T, _ = x.shape
    x = x.double()
    if cfg.q_lora_rank is None:
        q = x @ p["q_proj.weight"].T
    else:
        q = _rms(x @ p["q_a_proj.weight"].T, p["q_a_layernorm.weight"], eps) @ p["q_b_proj.weight"].T
    q = q.view(B, T, H, Dn + R)  # head-major rows: [nope | rope] per head
    q_nope, q_pe = q[..., :Dn], q[..., Dn:]
    kv_a = x @ p["kv_a_proj_with_mqa.weight"].T
    c_kv, k_pe = kv_a[..., :C], kv_a[..., C:]  # k_pe is not normalised
    kv = (_rms(c_kv, p["kv_a_layernorm.weight"], eps) @ p["kv_b_proj.weight"].T).view(B, T, H, Dn + Dv)
    k_nope, v = kv[..., :Dn], kv[..., Dn:]

    inv_freq, magnitude, temperature = _rope64(R, yarn)
    angles = positions.double()[..., None] * inv_freq  # (B, T, R/2)
    q_pe = _rotate(q_pe, angles[:, :, None], magnitude)
    k_pe = _rotate(k_pe, angles, magnitude)  # one rope key shared by all heads

    scale = (Dn + R) ** -0.5 * temperature
    scores = (torch.einsum("bthd,bshd->bhts", q_nope, k_nope)
              + torch.einsum("bthr,bsr->bhts", q_pe, k_pe)) * scale
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    probs = scores.masked_fill(~allowed, -math.inf).softmax(-1)
    out = torch.einsum("bhts,bshd->bthd", probs, v).reshape(B, T, H * Dv)
    return out @ p["o_proj.weight"].T


def _layer(make_config, randomize, seed, **overrides):
    cfg = make_config(**overrides)
    return randomize(MLA(cfg, 0), seed).eval(), cfg


@pytest.mark.parametrize("rope", ["default", "yarn"])
@pytest.mark.parametrize("q_lora_rank", [48, None])
def test_mla_matches_float64_reference(make_config, randomize, q_lora_rank, rope):
    overrides = dict(q_lora_rank=q_lora_rank)
    B, T = 2, 20
    if rope == "yarn":
        overrides.update(rope_scaling=dict(YARN), max_position_embeddings=256)
        T = 80  # past original_max_position_embeddings
    attn, cfg = _layer(make_config, randomize, seed=31, **overrides)
    x = torch.randn(B, T, cfg.hidden_size, generator=torch.Generator().manual_seed(32))
    positions = torch.arange(T)[None].expand(B, -1) + torch.tensor([[0], [5]])  # row 1 offset
    cos, sin = RotaryEmbedding(cfg)(positions)
    with torch.no_grad():
        out = attn(x, cos, sin)
    yarn = YARN if rope == "yarn" else None
    expected = reference_mla(attn, cfg, x, positions, yarn=yarn)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    # Teeth: the positions matter (RoPE is live), and so does YaRN.
    unrotated = reference_mla(attn, cfg, x, torch.zeros_like(positions), yarn=yarn)
    assert (unrotated - expected).abs().max() > 1e-3
    if yarn:
        plain = reference_mla(attn, cfg, x, positions)
        assert (plain - expected).abs().max() > 1e-3


def test_padded_prompt_mask(make_config, randomize):
    attn, cfg = _layer(make_config, randomize, seed=33)
    B, T, pad = 2, 12, 4
    x = torch.randn(B, T, cfg.hidden_size, generator=torch.Generator().manual_seed(34))
    real = torch.ones(B, T, dtype=torch.bool)
    real[1, :pad] = False  # left padding in row 1
    positions = (real.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    # True = attend; every query may see itself so padded rows stay finite.
    mask = ((causal[None] & real[:, None, :]) | torch.eye(T, dtype=torch.bool))[:, None]
    cos, sin = RotaryEmbedding(cfg)(positions)
    with torch.no_grad():
        out = attn(x, cos, sin, mask)
        alone = attn(x[1:, pad:], *RotaryEmbedding(cfg)(torch.arange(T - pad)[None]))
    assert torch.isfinite(out).all()
    expected = reference_mla(attn, cfg, x, positions, key_mask=real)
    torch.testing.assert_close(out[real].double(), expected[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, pad:], alone[0], atol=1e-5, rtol=1e-5)


def test_input_longer_than_max_positions_is_rejected(make_model):
    model = make_model(seed=35, max_position_embeddings=16)
    with torch.no_grad():
        assert model(torch.zeros(1, 16, dtype=torch.long)).logits.shape == (1, 16, 97)
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model(torch.zeros(1, 17, dtype=torch.long))
