"""HF-layout checkpoints (spec §7.1, §4.4): bit-exact round trips, the on-disk key layout, and
clear errors (never a silent re-initialisation) for broken checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model import Transformer
from model.checkpoint import load_checkpoint, save_checkpoint

BIAS = "e_score_correction_bias"


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, tensor in sa.items():
        assert sb[name].dtype == tensor.dtype, name
        assert torch.equal(sb[name], tensor), name


@pytest.mark.parametrize("q_lora_rank", [48, None])
def test_round_trip_is_bit_exact(tmp_path, make_model, q_lora_rank):
    model = make_model(seed=21, q_lora_rank=q_lora_rank)
    model.save_pretrained(tmp_path)
    _assert_same_state(model, Transformer.from_pretrained(tmp_path))


def _bf16_model_with_fine_bias(make_model, seed):
    model = make_model(seed=seed).to(torch.bfloat16)
    biases = {n: b for n, b in model.named_buffers() if n.endswith(BIAS)}
    assert biases and all(b.dtype == torch.float32 for b in biases.values())
    for b in biases.values():  # values bf16 cannot hold: a bf16 trip anywhere would change them
        b.add_(1e-4)
    return model, biases


def test_bf16_round_trip_keeps_weights_and_fp32_bias_dtype(tmp_path, make_model):
    model, biases = _bf16_model_with_fine_bias(make_model, seed=22)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():
            expected = torch.float32 if key.endswith(BIAS) else torch.bfloat16
            assert handle.get_tensor(key).dtype == expected, key
            if key in biases:  # written exactly, in fp32 (spec §3.3)
                assert torch.equal(handle.get_tensor(key), biases[key]), key
    loaded = Transformer.from_pretrained(tmp_path, dtype=torch.bfloat16)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert theirs[name].dtype == tensor.dtype, name
        assert torch.equal(theirs[name], tensor), name


def test_bf16_cast_and_load_keep_fp32_bias_values(tmp_path, make_model):
    model, biases = _bf16_model_with_fine_bias(make_model, seed=22)
    before = {n: b.clone() for n, b in biases.items()}
    model.save_pretrained(tmp_path)
    loaded = Transformer.from_pretrained(tmp_path, dtype=torch.bfloat16)
    for name, value in before.items():
        assert torch.equal(loaded.get_buffer(name), value), name
    model.to(torch.bfloat16)  # a no-op cast must not touch the fp32 bias either
    for name, value in before.items():
        assert torch.equal(model.get_buffer(name), value), name


def test_dtype_auto_loads_the_checkpoint_dtype(tmp_path, make_model):
    make_model(seed=23).to(torch.bfloat16).save_pretrained(tmp_path)
    loaded = Transformer.from_pretrained(tmp_path, dtype="auto")
    assert loaded.lm_head.weight.dtype == torch.bfloat16


def test_experts_are_per_expert_keys_on_disk(tmp_path, make_model):
    model = make_model(seed=24)
    model.save_pretrained(tmp_path)
    on_disk = load_file(str(tmp_path / "model.safetensors"))
    assert not [k for k in on_disk if k.endswith(("experts.gate_up_proj", "experts.down_proj"))]
    F_ = model.config.moe_intermediate_size
    for layer in (1, 2):  # the MoE main layer and the MTP layer
        experts = model.model.layers[layer].mlp.experts
        for e in range(model.config.n_routed_experts):
            prefix = f"model.layers.{layer}.mlp.experts.{e}"
            # HF v5 layout: gate rows first, then up rows (spec §7.1).
            assert torch.equal(on_disk[f"{prefix}.gate_proj.weight"], experts.gate_up_proj[e, :F_])
            assert torch.equal(on_disk[f"{prefix}.up_proj.weight"], experts.gate_up_proj[e, F_:])
            assert torch.equal(on_disk[f"{prefix}.down_proj.weight"], experts.down_proj[e])


def test_sharded_save_loads_back(tmp_path, make_model):
    model = make_model(seed=25)
    save_checkpoint(model, tmp_path, max_shard_bytes=40_000)
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 2 and "model.safetensors" not in shards
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    for name in shards:
        assert (tmp_path / name).stat().st_size < 40_000 + 8_192  # a tensor + the header
    _assert_same_state(model, Transformer.from_pretrained(tmp_path))


@pytest.fixture
def saved(tmp_path, make_model):
    make_model(seed=26).save_pretrained(tmp_path)
    return tmp_path


def _rewrite(directory, edit) -> None:
    path = str(directory / "model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, {"format": "pt"})


@pytest.mark.parametrize("key", [
    "model.layers.0.self_attn.kv_b_proj.weight",
    "model.layers.1.mlp.gate.e_score_correction_bias",
    "model.layers.1.mlp.experts.3.up_proj.weight",
    "model.layers.2.eh_proj.weight",  # MTP present but incomplete: an error, not "MTP off"
    "lm_head.weight",
])
def test_missing_tensor_is_named(saved, key):
    _rewrite(saved, lambda t: t.pop(key))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        Transformer.from_pretrained(saved)


@pytest.mark.parametrize("key", [
    "model.layers.0.self_attn.q_b_proj.weight",
    "model.layers.1.mlp.gate.weight",
    "model.norm.weight",
])
def test_misshaped_tensor_is_named(saved, key):
    def edit(t):
        t[key] = torch.cat((t[key], t[key][:1]))
    _rewrite(saved, edit)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        Transformer.from_pretrained(saved)


def test_misshaped_expert_is_an_error(saved):
    key = "model.layers.1.mlp.experts.5.down_proj.weight"
    _rewrite(saved, lambda t: t.update({key: t[key][:, :-1].contiguous()}))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.experts"):
        Transformer.from_pretrained(saved)


@pytest.mark.parametrize("key", ["model.layers.0.self_attn.extra.weight",
                                 "model.layers.1.mlp.experts.8.gate_proj.weight"])
def test_unexpected_tensor_is_an_error(saved, key):
    def edit(t):
        if ".experts.8." in key:  # a ninth expert: all three matrices
            for kind in ("gate_proj", "up_proj", "down_proj"):
                name = f"model.layers.1.mlp.experts.7.{kind}.weight"
                t[name.replace(".7.", ".8.")] = t[name].clone()
        else:
            t[key] = torch.zeros(3)
    _rewrite(saved, edit)
    with pytest.raises(ValueError, match=r"model\.layers\.(0\.self_attn\.extra|1\.mlp\.experts)"):
        Transformer.from_pretrained(saved)


def test_missing_config_is_named(saved):
    (saved / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Transformer.from_pretrained(saved)


def test_missing_weights_file_is_named(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_checkpoint(Transformer, saved)


def test_nonexistent_path_is_named(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        Transformer.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        load_checkpoint(Transformer, missing)
