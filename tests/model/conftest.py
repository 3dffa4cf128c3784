"""Tiny DeepSeek-V3 configs and randomisation helpers for the model tests.

Weights are drawn at roughly unit-variance activations (std = fan_in^-0.5) rather than the
0.02 init, so attention is far from uniform, RMSNorm gains are not all ones and the router's
affinities are spread widely: a wrong RoPE layout, a swapped norm or an ignored bias then moves
the outputs by far more than the tolerances. The router bias is randomised at the scale of the
sigmoid spread so that it changes which experts are selected.
"""

from __future__ import annotations

import pytest
import torch

TINY = dict(
    vocab_size=97, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
    n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=2, n_shared_experts=1,
    kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
    first_k_dense_replace=1, max_position_embeddings=128, num_nextn_predict_layers=1,
    routed_scaling_factor=2.5, norm_topk_prob=True, rms_norm_eps=1e-6,
)


def tiny_values(**overrides) -> dict:
    values = dict(TINY)
    values.update(overrides)
    return values


def tiny_config(**overrides):
    from model import ModelConfig

    return ModelConfig(**tiny_values(**overrides))


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int, bias_scale: float = 0.3) -> torch.nn.Module:
    """Redraw every parameter and router bias of `module` (ours or transformers') in place.

    Matrices (incl. stacked experts, whose last dim is the input dim): N(0, fan_in^-0.5).
    Vectors (norm gains): 1 + N(0, 0.2). Router bias: U(-bias_scale, bias_scale), fp32.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters()):
        if p.ndim >= 2:
            values = torch.randn(p.shape, generator=gen) * p.shape[-1] ** -0.5
        else:
            values = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
        p.copy_(values.to(p.dtype))
    for name, b in sorted(module.named_buffers()):
        if name.endswith("e_score_correction_bias"):
            b.copy_((torch.rand(b.shape, generator=gen) * 2 - 1) * bias_scale)
    return module


def tiny_model(seed: int = 0, **overrides):
    from model import Transformer

    torch.manual_seed(seed)
    return randomize_(Transformer(tiny_config(**overrides)), seed).eval()


# Fixtures hand out the helpers so test modules need not import conftest (which breaks as soon as
# tests/model becomes a package).
@pytest.fixture
def config_values():
    return tiny_values


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def make_model():
    return tiny_model


@pytest.fixture
def randomize():
    return randomize_
