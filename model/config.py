"""ModelConfig: transformers' DeepseekV3Config plus our training-only fields.

The field names are HF's, so `config.json` is the HF one and `DeepseekV3ForCausalLM` reads it.
Extra fields (MTP loss weight, bias update speed, sequence-wise balance loss weight, FP8 switch)
are ignored by transformers. The MTP depth is HF's `num_nextn_predict_layers`.

Spec references: ../shared/docs/deepseek-v3-spec.md sections 1-4 ("spec §N" below).
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import DeepseekV3Config


@strict
class ModelConfig(DeepseekV3Config):
    """DeepSeek-V3 architecture config with CPU-friendly defaults (a ~3M-parameter MoE).

    Shape fields (HF names): vocab_size, hidden_size, intermediate_size (dense FFN),
    moe_intermediate_size (per routed and per shared expert), num_hidden_layers,
    first_k_dense_replace, num_attention_heads, q_lora_rank (None = no query compression),
    kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim.

    Routing: n_routed_experts, n_shared_experts, num_experts_per_tok, n_group, topk_group,
    routed_scaling_factor, norm_topk_prob.

    Training-only fields (ours, ignored by transformers):
        mtp_loss_weight: lambda of the MTP loss, spec §4.2 (0.3 early, 0.1 late in DeepSeek-V3).
        bias_update_speed: gamma of the auxiliary-loss-free bias update, spec §3.3.
        seq_aux_loss_alpha: alpha of the sequence-wise balance loss, spec §3.4 (report: 1e-4).
        fp8: FP8 fine-grained mixed precision (model/fp8.py): MLA projections, dense and
            shared-expert FFNs and routed experts run their GEMMs on E4M3 operands; embedding,
            output head, router, norms, MTP projection and the attention core stay high precision.
        fp8_backend: "auto" (blockwise torch._scaled_mm on SM90, else emulated), "emulated",
            or "scaled_mm" (falls back to emulated with a warning where unavailable).
        fp8_pow2_scales: round FP8 scales up to powers of two (DeepSeek-V3.1's ue8m0 scales).
        moe_kernel: routed-expert GEMMs: "auto" (torch._grouped_mm on CUDA, padded bmm on CPU),
            "grouped_mm" (wherever torch supports it) or "bmm".
    """

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    moe_intermediate_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    n_shared_experts: int = 1
    n_routed_experts: int = 16
    routed_scaling_factor: float = 2.5
    kv_lora_rank: int = 64
    q_lora_rank: int | None = 96
    qk_rope_head_dim: int = 16
    v_head_dim: int | None = 32
    qk_nope_head_dim: int = 32
    n_group: int | None = 4
    topk_group: int | None = 2
    num_experts_per_tok: int | None = 4
    first_k_dense_replace: int | None = 1
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    num_mtp_layers: int = 1

    mtp_loss_weight: float = 0.3
    bias_update_speed: float = 1e-3
    seq_aux_loss_alpha: float = 1e-4
    fp8: bool = False
    fp8_backend: str = "auto"
    fp8_pow2_scales: bool = False
    moe_kernel: str = "auto"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_shapes()

    @property
    def num_mtp_modules(self) -> int:
        return int(self.num_nextn_predict_layers or 0)

    @property
    def rope_settings(self) -> dict[str, Any]:
        """The RoPE parameters as a plain dict (HF v5 stores them in `rope_parameters`)."""
        params = dict(self.rope_parameters or {})
        params.setdefault("rope_type", "default")
        params.setdefault("rope_theta", 10000.0)
        return params

    def validate_shapes(self) -> None:
        """Raise ValueError naming the key when dimensions are inconsistent."""
        positive = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
                    "v_head_dim", "max_position_embeddings"]
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model config: {key} must be a positive integer, got {value!r}")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"model config: qk_rope_head_dim must be even (RoPE rotates pairs), "
                             f"got {self.qk_rope_head_dim}")
        if self.q_lora_rank is not None and self.q_lora_rank <= 0:
            raise ValueError("model config: q_lora_rank must be positive, or null for no query "
                             f"compression (DeepSeek's 0 means null here), got {self.q_lora_rank}")
        if self.num_key_value_heads != self.num_attention_heads:
            raise ValueError("model config: MLA has one latent shared by all heads; "
                             "num_key_value_heads must equal num_attention_heads "
                             f"({self.num_key_value_heads} != {self.num_attention_heads})")
        dense = self.first_k_dense_replace or 0
        if not 0 <= dense <= self.num_hidden_layers:
            raise ValueError(f"model config: first_k_dense_replace={dense} must be in "
                             f"[0, num_hidden_layers={self.num_hidden_layers}]")
        if self.num_mtp_modules < 0:
            raise ValueError("model config: num_nextn_predict_layers must be >= 0")
        if self.has_moe:
            self._validate_routing()
        if self.fp8_backend not in ("auto", "emulated", "scaled_mm"):
            raise ValueError(f"model config: fp8_backend must be auto, emulated or scaled_mm, "
                             f"got {self.fp8_backend!r}")
        if self.moe_kernel not in ("auto", "grouped_mm", "bmm"):
            raise ValueError(f"model config: moe_kernel must be auto, grouped_mm or bmm, "
                             f"got {self.moe_kernel!r}")
        rope = self.rope_settings
        if rope["rope_type"] not in ("default", "yarn"):
            raise ValueError(f"model config: rope type {rope['rope_type']!r} is not supported "
                             "(use default or yarn)")
        if rope["rope_type"] == "yarn":
            for key in ("factor", "original_max_position_embeddings"):
                if key not in rope:
                    raise ValueError(f"model config: rope_scaling yarn needs '{key}'")

    @property
    def has_moe(self) -> bool:
        return (self.first_k_dense_replace or 0) < self.num_hidden_layers or self.num_mtp_modules > 0

    def _validate_routing(self) -> None:
        experts, top_k = self.n_routed_experts, self.num_experts_per_tok
        groups, top_groups = self.n_group or 1, self.topk_group or 1
        if experts <= 0 or top_k is None or not 0 < top_k <= experts:
            raise ValueError(f"model config: num_experts_per_tok={top_k} must be in "
                             f"[1, n_routed_experts={experts}]")
        if experts % groups:
            raise ValueError(f"model config: n_routed_experts={experts} must be divisible by "
                             f"n_group={groups}")
        if experts // groups < 2:
            # The group score is the sum of the top-2 affinities in the group (spec §3.2 step 4).
            raise ValueError(f"model config: n_routed_experts/n_group = {experts // groups} "
                             "must be >= 2 (group score = sum of the top-2 experts)")
        if not 0 < top_groups <= groups:
            raise ValueError(f"model config: topk_group={top_groups} must be in [1, n_group={groups}]")
        if top_groups * (experts // groups) < top_k:
            raise ValueError(f"model config: topk_group*experts_per_group = "
                             f"{top_groups * (experts // groups)} < num_experts_per_tok={top_k}: "
                             "not enough experts survive group masking")
        if self.moe_intermediate_size <= 0:
            raise ValueError("model config: moe_intermediate_size must be positive")
        if self.n_shared_experts is None or self.n_shared_experts < 0:
            raise ValueError("model config: n_shared_experts must be >= 0")

    @classmethod
    def from_config_dict(cls, values: dict, where: str) -> "ModelConfig":
        """Build from a recipe mapping; errors name `where` (file and key path)."""
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping of model config fields")
        known = set(cls.__dataclass_fields__) | {"rope_scaling", "num_nextn_predict_layers"}
        derived = {"_name_or_path", "head_dim", "qk_head_dim", "output_attentions",
                   "transformers_version", "architectures", "model_type"}  # written by to_dict()
        values = {k: v for k, v in values.items() if k not in derived}
        unknown = sorted(set(values) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown model config key(s) {unknown}{hint}")
        try:
            return cls(**values)
        except Exception as exc:  # strict-dataclass type errors and our ValueErrors
            raise ValueError(f"{where}: {exc}") from exc


def warn_ignored(setting: str, reason: str) -> None:
    """One place for the 'this setting is ignored' warning the style guide asks for."""
    warnings.warn(f"{setting} is ignored: {reason}", stacklevel=3)
