"""What the model costs: parameters (total / active), training FLOPs per token (for MFU) and
KV-cache bytes per token (nanochat keeps this on the model so every loop can print MFU).

Counts are derived from the config alone, so they also work for configs too big to build here;
tests check them against the parameters of an instantiated model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model.config import ModelConfig


@dataclass
class ModelAccount:
    total_params: int  # everything, MTP modules included
    main_params: int  # without MTP modules (what DeepSeek calls 671B)
    mtp_params: int
    active_params: int  # per token in the main model: shared + top-k routed experts only
    embedding_params: int
    flops_per_token: float  # training (fwd + bwd) at seq_len, MTP included
    kv_bytes_per_token: int  # latent + rope key, all main layers, at kv_dtype_bytes
    seq_len: int
    num_dense_layers: int
    num_moe_layers: int

    def as_dict(self) -> dict:
        return asdict(self)


def _attention_params(c: ModelConfig) -> int:
    d, h = c.hidden_size, c.num_attention_heads
    qk = c.qk_nope_head_dim + c.qk_rope_head_dim
    q = d * h * qk if c.q_lora_rank is None else d * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * h * qk
    kv = d * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank
    kv += c.kv_lora_rank * h * (c.qk_nope_head_dim + c.v_head_dim)
    return q + kv + h * c.v_head_dim * d


def _ffn_params(c: ModelConfig, moe: bool, active: bool) -> int:
    d = c.hidden_size
    if not moe:
        return 3 * d * c.intermediate_size
    experts = c.num_experts_per_tok if active else c.n_routed_experts
    shared = 3 * d * c.moe_intermediate_size * c.n_shared_experts
    return shared + experts * 3 * d * c.moe_intermediate_size + c.n_routed_experts * d  # + router


def layer_params(c: ModelConfig, moe: bool, active: bool = False) -> int:
    norms = 2 * c.hidden_size
    return _attention_params(c) + _ffn_params(c, moe, active) + norms


def account(c: ModelConfig, seq_len: int | None = None, kv_dtype_bytes: int = 2) -> ModelAccount:
    """Parameter, FLOP and cache accounting. FLOPs follow the PaLM convention:
    6 * (matmul params touched per token) + 6 * layers * heads * (qk_dim + v_dim) * seq_len."""
    seq_len = seq_len or c.max_position_embeddings
    d, vocab = c.hidden_size, c.vocab_size
    dense = c.first_k_dense_replace or 0
    moe = c.num_hidden_layers - dense
    embed = vocab * d
    head = vocab * d
    mtp_layer = layer_params(c, True) + 2 * d * d + 3 * d  # eh_proj + enorm/hnorm/head norm
    main = embed + head + d + dense * layer_params(c, False) + moe * layer_params(c, True)
    mtp = c.num_mtp_modules * mtp_layer
    active = (embed + head + d + dense * layer_params(c, False)
              + moe * layer_params(c, True, active=True))
    active_mtp_matmul = c.num_mtp_modules * (layer_params(c, True, active=True) + 2 * d * d)
    # Matmul params per token: active minus the embedding lookup (no FLOPs) and the norms.
    matmul = active - embed + active_mtp_matmul + c.num_mtp_modules * head
    attn_layers = c.num_hidden_layers + c.num_mtp_modules
    attn = 6 * attn_layers * c.num_attention_heads * (
        c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim) * seq_len
    kv = c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * kv_dtype_bytes
    return ModelAccount(main + mtp, main, mtp, active, embed, float(6 * matmul + attn), kv,
                        seq_len, dense, moe)
