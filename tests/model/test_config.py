"""ModelConfig: shape validation that names the offending key, config.json round trips, and
recipe-mapping errors that name where they come from."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, DeepseekV3Config

from model import ModelConfig

WHERE = "recipes/tiny.yaml: model"


@pytest.mark.parametrize("overrides, key", [
    (dict(n_routed_experts=9), "n_routed_experts"),  # 9 experts in 4 groups
    (dict(n_group=8), "n_group"),  # one expert per group: no top-2 group score
    (dict(topk_group=1, num_experts_per_tok=3), "topk_group"),  # 1 group of 2 < top-3
    (dict(num_experts_per_tok=9, topk_group=4), "num_experts_per_tok"),
    (dict(qk_rope_head_dim=7), "qk_rope_head_dim"),
    (dict(num_key_value_heads=1), "num_key_value_heads"),
    (dict(first_k_dense_replace=3), "first_k_dense_replace"),  # 2 layers
    (dict(fp8_backend="cuda"), "fp8_backend"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(q_lora_rank=0), "q_lora_rank"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_inconsistent_dimensions_name_the_key(config_values, overrides, key):
    with pytest.raises(ValueError, match=key):
        ModelConfig(**config_values(**overrides))


@pytest.mark.parametrize("first_k_dense_replace", [0, 2])
def test_edge_values_are_accepted(config_values, first_k_dense_replace):
    config = ModelConfig(**config_values(first_k_dense_replace=first_k_dense_replace, q_lora_rank=None))
    assert config.q_lora_rank is None and config.first_k_dense_replace == first_k_dense_replace


def test_config_json_round_trip_keeps_our_fields(tmp_path, config_values):
    ours = dict(mtp_loss_weight=0.1, bias_update_speed=2e-3, seq_aux_loss_alpha=5e-4)
    rope = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
            "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}
    config = ModelConfig(**config_values(**ours, rope_scaling=rope, max_position_embeddings=256,
                                         q_lora_rank=None))
    config.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "deepseek_v3"
    assert saved["num_nextn_predict_layers"] == 1
    assert saved["q_lora_rank"] is None
    for key, value in ours.items():
        assert saved[key] == value

    back = ModelConfig.from_pretrained(tmp_path)
    assert isinstance(back, ModelConfig)
    for key in [*ours, *config_values(), "rope_interleave"]:
        assert getattr(back, key) == getattr(config, key), key
    assert back.rope_settings == config.rope_settings
    assert back.rope_settings["rope_type"] == "yarn" and back.rope_settings["mscale"] == 0.707

    # transformers reads the same file as its own DeepSeek-V3 config.
    hf = AutoConfig.from_pretrained(tmp_path)
    assert type(hf) is DeepseekV3Config
    assert hf.num_nextn_predict_layers == 1 and hf.n_group == config.n_group


def test_from_config_dict_builds_the_config(config_values):
    config = ModelConfig.from_config_dict(config_values(mtp_loss_weight=0.2), WHERE)
    assert config.mtp_loss_weight == 0.2 and config.n_routed_experts == 8


def test_from_config_dict_names_where_and_unknown_keys(config_values):
    with pytest.raises(ValueError) as err:
        ModelConfig.from_config_dict({**config_values(), "hidden_sise": 64, "n_experts": 8}, WHERE)
    message = str(err.value)
    assert WHERE in message and "hidden_sise" in message and "n_experts" in message


def test_from_config_dict_names_where_and_bad_key(config_values):
    with pytest.raises(ValueError) as err:
        ModelConfig.from_config_dict(config_values(n_routed_experts=9), WHERE)
    assert WHERE in str(err.value) and "n_routed_experts" in str(err.value)
    with pytest.raises(ValueError, match=WHERE):
        ModelConfig.from_config_dict(["not", "a", "mapping"], WHERE)
