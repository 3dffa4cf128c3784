"""Multi-head Latent Attention (MLA), spec §2.

Shapes: B batch, T query length, S key length, H heads, C = kv_lora_rank (latent),
R = qk_rope_head_dim, Dn = qk_nope_head_dim, Dv = v_head_dim, D = hidden_size.

Two paths over the same weights:
* `forward` (training, prefill, HF-cache generation): the naive form. Keys and values are
  up-projected from the latent for every position and attention runs through SDPA with a
  causal (optionally per-document / padding) mask.
* `forward_absorbed` (our engine's decode): the cache holds only the normalised latent c_kv (C)
  and the rotated shared key k_pe (R) per position; W_UK is folded into the query and W_UV is
  applied after aggregating latents (the "absorb" trick, spec §2.3), so nothing per-head is
  ever materialised for past positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.layers import RMSNorm
from model.rope import apply_rope, softmax_scale


class MLA(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.nope_dim, self.rope_dim = config.qk_nope_head_dim, config.qk_rope_head_dim
        self.v_dim, self.latent_dim = config.v_head_dim, config.kv_lora_rank
        qk_dim = self.nope_dim + self.rope_dim
        d, h = config.hidden_size, self.num_heads
        if config.q_lora_rank is None:
            self.q_proj = nn.Linear(d, h * qk_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(d, config.q_lora_rank, bias=False)
            # The latent norms use a fixed eps of 1e-6 in DeepSeek's and HF's code, whatever
            # rms_norm_eps says.
            self.q_a_layernorm = RMSNorm(config.q_lora_rank)
            self.q_b_proj = nn.Linear(config.q_lora_rank, h * qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, self.latent_dim + self.rope_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(self.latent_dim)
        self.kv_b_proj = nn.Linear(self.latent_dim, h * (self.nope_dim + self.v_dim), bias=False)
        self.o_proj = nn.Linear(h * self.v_dim, d, bias=False)
        self.scale = softmax_scale(config)

    def _query(self, x_BTD, cos, sin):
        B, T, _ = x_BTD.shape
        if hasattr(self, "q_proj"):
            q = self.q_proj(x_BTD)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x_BTD)))
        q_BTHQ = q.view(B, T, self.num_heads, self.nope_dim + self.rope_dim)
        q_nope, q_pe = q_BTHQ.split([self.nope_dim, self.rope_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos[:, :, None], sin[:, :, None])  # heads share the angles
        return q_nope, q_pe

    def latent(self, x_BTD, cos, sin):
        """What the cache stores: the normalised latent (B,T,C) and the rotated k_pe (B,T,R)."""
        c_kv, k_pe = self.kv_a_proj_with_mqa(x_BTD).split([self.latent_dim, self.rope_dim], dim=-1)
        return self.kv_a_layernorm(c_kv), apply_rope(k_pe, cos, sin)

    def forward(self, x_BTD, cos, sin, mask=None, hf_cache=None):
        """Naive MLA. mask: None (plain causal) or bool (B, 1, T, S), True = attend."""
        B, T, _ = x_BTD.shape
        q_nope, q_pe = self._query(x_BTD, cos, sin)
        c_kv, k_pe = self.latent(x_BTD, cos, sin)
        if hf_cache is not None:  # transformers' Cache: store the latent like HF does
            c_kv, k_pe = hf_cache.update(c_kv[:, None], k_pe[:, None], self.layer_idx)
            c_kv, k_pe = c_kv[:, 0], k_pe[:, 0]
        S = c_kv.shape[1]
        kv = self.kv_b_proj(c_kv).view(B, S, self.num_heads, self.nope_dim + self.v_dim)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_pe[:, :, None].expand(-1, -1, self.num_heads, -1)), dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, *, dim)
        if mask is None and S != T:
            raise ValueError("MLA: a cache with past positions needs an explicit mask")
        pad = q.shape[-1] - self.v_dim
        if pad > 0:
            # Flash kernels (CUDA and CPU) need equal q/k/v head dims; otherwise SDPA falls back
            # to the math path (2x slower on CPU). Pad v with zeros, slice after (spec §2.4).
            v = F.pad(v, (0, pad))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                             scale=self.scale)[..., : self.v_dim]
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.v_dim))

    def forward_absorbed(self, x_BTD, cos, sin, cache, positions_BT, key_mask_BTS):
        """Absorbed MLA over a preallocated latent cache; writes this step's latents first."""
        B, T, _ = x_BTD.shape
        q_nope, q_pe = self._query(x_BTD, cos, sin)
        c_new, k_pe_new = self.latent(x_BTD, cos, sin)
        c_kv_BSC, k_pe_BSR = cache.write(self.layer_idx, positions_BT, c_new, k_pe_new,
                                         key_mask_BTS.shape[-1])
        w = self.kv_b_proj.weight.view(self.num_heads, self.nope_dim + self.v_dim, self.latent_dim)
        w_uk_HNC, w_uv_HVC = w.split([self.nope_dim, self.v_dim], dim=1)
        H = self.num_heads
        # Heads folded into the query axis: plain bmms against the one shared latent per row,
        # no broadcast copies of the cache (the decode hot path).
        q_lat_HXC = q_nope.permute(2, 0, 1, 3).reshape(H, B * T, -1) @ w_uk_HNC
        q_lat_BYC = q_lat_HXC.view(H, B, T, -1).transpose(0, 1).reshape(B, H * T, -1)
        q_pe_BYR = q_pe.transpose(1, 2).reshape(B, H * T, -1)
        scores = (torch.bmm(q_lat_BYC, c_kv_BSC.transpose(1, 2))
                  + torch.bmm(q_pe_BYR, k_pe_BSR.transpose(1, 2))).float() * self.scale
        scores = scores.view(B, H, T, -1).masked_fill(~key_mask_BTS[:, None], float("-inf"))
        probs = scores.softmax(dim=-1).to(c_kv_BSC.dtype).view(B, H * T, -1)
        o_lat_BYC = torch.bmm(probs, c_kv_BSC)
        o_lat_HXC = o_lat_BYC.view(B, H, T, -1).transpose(0, 1).reshape(H, B * T, -1)
        out_BTHV = (o_lat_HXC @ w_uv_HVC.transpose(1, 2)).view(H, B, T, -1).permute(1, 2, 0, 3)
        return self.o_proj(out_BTHV.reshape(B, T, self.num_heads * self.v_dim))
