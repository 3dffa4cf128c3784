"""Accounting against instantiated models and the DeepSeek-V3 report's published numbers."""

import pytest
import torch

from model import ModelConfig, Transformer
from model.accounting import account

V3_671B = dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432,
               moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
               n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, n_group=8,
               topk_group=4, num_attention_heads=128, q_lora_rank=1536, kv_lora_rank=512,
               qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
               max_position_embeddings=4096, num_nextn_predict_layers=1)


@pytest.mark.parametrize("kw", [{}, {"q_lora_rank": None, "first_k_dense_replace": 0},
                                {"num_nextn_predict_layers": 2, "n_shared_experts": 2}])
def test_total_params_equal_instantiated_model(kw):
    config = ModelConfig(**kw)
    model = Transformer(config)
    acc = account(config)
    assert acc.total_params == sum(p.numel() for p in model.parameters())
    mtp = sum(p.numel() for p in model.mtp_layers.parameters())
    assert acc.mtp_params == mtp


def test_active_params_count_only_selected_experts():
    config = ModelConfig()
    model = Transformer(config)
    per_expert = 3 * config.hidden_size * config.moe_intermediate_size
    unused = (config.n_routed_experts - config.num_experts_per_tok) * per_expert
    moe_layers = config.num_hidden_layers - config.first_k_dense_replace
    main = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.mtp_layers.parameters())
    assert account(config).active_params == main - moe_layers * unused


def test_deepseek_v3_671b_numbers():
    acc = account(ModelConfig(**V3_671B), seq_len=4096)
    assert acc.main_params / 1e9 == pytest.approx(671.0, abs=0.1)  # report: 671B total
    assert acc.active_params / 1e9 == pytest.approx(37.5, abs=0.2)  # report: 37B (+ embed/head)
    assert acc.mtp_params / 1e9 == pytest.approx(11.6, abs=0.1)  # README_WEIGHTS: 11.5B unique
    assert acc.kv_bytes_per_token == 61 * 576 * 2  # 70,272 bytes: latent 512 + rope key 64, bf16


def test_flops_per_token_matches_palm_formula():
    config = ModelConfig(num_nextn_predict_layers=0)
    acc = account(config, seq_len=256)
    matmul_params = acc.active_params - acc.embedding_params  # the lookup does no FLOPs
    norms = sum(p.numel() for n, p in Transformer(config).named_parameters() if "norm" in n)
    attn = 6 * config.num_hidden_layers * config.num_attention_heads * (32 + 16 + 32) * 256
    assert acc.flops_per_token == pytest.approx(6 * (matmul_params - norms) + attn, rel=0.01)
