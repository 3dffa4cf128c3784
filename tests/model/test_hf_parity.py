"""Logit parity with transformers' own DeepseekV3ForCausalLM, in both checkpoint directions.

transformers is the independent reference here (spec §7): our checkpoint must load there with the
same logits, and a checkpoint transformers wrote must load here with the same logits. fp32
throughout, max abs diff <= 1e-4.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors import safe_open
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from model import Transformer

TOL = 1e-4
YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
# mscale != mscale_all_dim: cos/sin gain a factor mscale(0.707)/mscale(1.0) != 1 (spec §2.1 item 5).
YARN_MSCALE = {**YARN, "mscale": 0.707}
ROPES = {"default": None, "yarn": YARN, "yarn_mscale": YARN_MSCALE}


def _hf_from(directory) -> DeepseekV3ForCausalLM:
    return DeepseekV3ForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _keys(directory) -> set[str]:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        return set(handle.keys())


def _max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("rope", list(ROPES))
@pytest.mark.parametrize("first_k_dense_replace", [0, 1])
@pytest.mark.parametrize("q_lora_rank", [48, None])
def test_our_checkpoint_loads_in_transformers(tmp_path, make_model, q_lora_rank,
                                              first_k_dense_replace, rope):
    overrides = dict(q_lora_rank=q_lora_rank, first_k_dense_replace=first_k_dense_replace)
    T = 16
    if ROPES[rope] is not None:
        # Longer than original_max_position_embeddings so the extension is exercised.
        overrides.update(rope_scaling=dict(ROPES[rope]), max_position_embeddings=256)
        T = 96
    ours = make_model(seed=1, **overrides)
    ours.save_pretrained(tmp_path)

    n = ours.config.num_hidden_layers
    keys = _keys(tmp_path)
    for name in ("eh_proj.weight", "enorm.weight", "hnorm.weight", "shared_head.norm.weight",
                 "mlp.gate.e_score_correction_bias", "mlp.experts.7.down_proj.weight",
                 "self_attn.kv_b_proj.weight"):
        assert f"model.layers.{n}.{name}" in keys
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "deepseek_v3"
    assert saved["architectures"] == ["DeepseekV3ForCausalLM"]

    hf = _hf_from(tmp_path)
    if ROPES[rope] is not None:
        assert hf.config.rope_parameters["rope_type"] == "yarn"
    ids = torch.randint(0, ours.config.vocab_size, (2, T), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours_logits = ours(ids).logits
        hf_logits = hf(ids).logits
        assert _max_diff(ours_logits, hf_logits) <= TOL
        # The router bias was randomised and must matter, or the parity above proves little.
        for name, buf in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.zero_()
        assert _max_diff(ours_logits, hf(ids).logits) > 1e-3


def test_parity_with_non_default_rms_norm_eps(tmp_path, make_model):
    ours = make_model(seed=1, rms_norm_eps=1e-3)
    ours.save_pretrained(tmp_path)
    hf = _hf_from(tmp_path)
    ids = torch.randint(0, ours.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _max_diff(ours(ids).logits, hf(ids).logits) <= TOL


@pytest.mark.parametrize("q_lora_rank", [48, None])
def test_transformers_checkpoint_loads_here(tmp_path, randomize, config_values, q_lora_rank):
    torch.manual_seed(0)
    values = config_values(q_lora_rank=q_lora_rank, num_nextn_predict_layers=0)
    hf = randomize(DeepseekV3ForCausalLM(DeepseekV3Config(**values)), seed=3).eval()
    hf.save_pretrained(tmp_path)

    ours = Transformer.from_pretrained(tmp_path)
    ids = torch.randint(0, values["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert _max_diff(ours(ids).logits, hf(ids).logits) <= TOL
    for name, buf in ours.named_buffers():  # the fp32 bias survived the trip
        if name.endswith("e_score_correction_bias"):
            assert torch.equal(buf, dict(hf.named_buffers())[name])


def test_transformers_checkpoint_without_mtp_weights_disables_mtp(tmp_path, randomize,
                                                                  config_values):
    torch.manual_seed(0)
    values = config_values(num_nextn_predict_layers=1)  # config says MTP, transformers writes none
    hf = randomize(DeepseekV3ForCausalLM(DeepseekV3Config(**values)), seed=5).eval()
    hf.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["num_nextn_predict_layers"] == 1
    assert not any(k.startswith(f"model.layers.{values['num_hidden_layers']}.")
                   for k in _keys(tmp_path))

    with pytest.warns(UserWarning, match="MTP"):
        ours = Transformer.from_pretrained(tmp_path)
    assert ours.config.num_nextn_predict_layers == 0
    assert len(ours.model.layers) == values["num_hidden_layers"]
    ids = torch.randint(0, values["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = ours(ids, labels=ids)
        assert _max_diff(out.logits, hf(ids).logits) <= TOL
    assert out.mtp_loss is None


def _left_padded(vocab, lengths, T, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (len(lengths), T), generator=gen)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, T - n:] = 1
    return ids, mask


@pytest.mark.parametrize("positions", ["from_mask", "default"])
def test_left_padded_batch_matches_transformers(tmp_path, make_model, positions):
    ours = make_model(seed=7)
    ours.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = _hf_from(tmp_path)
    T = 12
    ids, mask = _left_padded(ours.config.vocab_size, [12, 9, 5], T, seed=8)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0) if positions == "from_mask" else None
    real = mask.bool()
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, position_ids=position_ids).logits
        b = hf(ids, attention_mask=mask, position_ids=position_ids).logits
        assert _max_diff(a[real], b[real]) <= TOL
        if positions == "from_mask":
            # Padding is invisible: each row equals transformers on the unpadded row alone.
            for row in range(ids.shape[0]):
                alone = hf(ids[row, real[row]][None]).logits
                assert _max_diff(a[row, real[row]], alone[0]) <= TOL
