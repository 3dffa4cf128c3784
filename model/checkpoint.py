"""HF-layout checkpoints: config.json + safetensors with HF DeepseekV3 parameter names.

On disk the routed experts are per-expert keys (`mlp.experts.{e}.{gate,up,down}_proj.weight`),
as in the official checkpoints and as transformers v4 and v5 both read them (spec §7.1); in memory
they are stacked (E, 2F, D) / (E, D, F). MTP modules are decoder layers at index
>= num_hidden_layers, which transformers' DeepseekV3ForCausalLM ignores.

Loading checks every tensor: a missing, unexpected or mis-shaped one is an error that names it.
Nothing is re-initialised silently: a checkpoint without MTP weights (e.g. one transformers
wrote) loads with MTP switched off and a warning.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.config import ModelConfig
from model.fp8 import dequantize_blocks, quantize_blocks
from model.moe import Router
from model.rope import RotaryEmbedding

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_STACKED = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")
_PER_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
# Copies of the shared embedding/head that official files may carry inside the MTP layer (spec §4.4).
_MTP_DUPLICATES = re.compile(r"^model\.layers\.\d+\.(embed_tokens|shared_head\.head)\.weight$")


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stacked experts -> per-expert keys; everything else keeps its (HF) name."""
    out = {}
    for name, tensor in state.items():
        match = _STACKED.match(name)
        if not match:
            out[name] = tensor
            continue
        prefix, kind = match.groups()
        for e, expert in enumerate(tensor.unbind(0)):
            if kind == "gate_up_proj":
                gate, up = expert.chunk(2, dim=0)
                out[f"{prefix}.{e}.gate_proj.weight"] = gate
                out[f"{prefix}.{e}.up_proj.weight"] = up
            else:
                out[f"{prefix}.{e}.down_proj.weight"] = expert
    return {k: v.detach().contiguous() for k, v in out.items()}


def from_hf_state_dict(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Per-expert keys -> stacked tensors. Gaps in expert numbering are errors."""
    out, experts = {}, {}
    for name, tensor in tensors.items():
        match = _PER_EXPERT.match(name)
        if match:
            prefix, e, kind = match.groups()
            experts.setdefault(prefix, {}).setdefault(int(e), {})[kind] = tensor
        elif not _MTP_DUPLICATES.match(name):
            out[name] = tensor
    for prefix, by_expert in experts.items():
        ids = sorted(by_expert)
        if ids != list(range(len(ids))):
            raise ValueError(f"{source}: experts under {prefix} are not numbered 0..{len(ids) - 1}")
        for e in ids:
            missing = {"gate_proj", "up_proj", "down_proj"} - set(by_expert[e])
            if missing:
                raise ValueError(f"{source}: missing tensor {prefix}.{e}.{sorted(missing)[0]}.weight")
        try:
            out[f"{prefix}.gate_up_proj"] = torch.stack(
                [torch.cat((by_expert[e]["gate_proj"], by_expert[e]["up_proj"])) for e in ids])
            out[f"{prefix}.down_proj"] = torch.stack([by_expert[e]["down_proj"] for e in ids])
        except RuntimeError as exc:
            raise ValueError(f"{source}: expert tensors under {prefix} have mismatched shapes: {exc}")
    return out


# Linear weights inside decoder layers: FP8 in the official checkpoints (spec §5.6). Embedding,
# lm_head, norms, the router and its bias, and the MTP eh_proj stay in high precision.
_FP8_WEIGHT = re.compile(
    r"^model\.layers\.\d+\.(self_attn\.(q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj)|mlp\.shared_experts\.(gate_proj|up_proj|down_proj)"
    r"|mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj))\.weight$")
FP8_QUANTIZATION_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                           "weight_block_size": [128, 128]}


def to_fp8_tensors(tensors: dict[str, torch.Tensor], pow2: bool = False) -> dict[str, torch.Tensor]:
    """float8_e4m3fn `weight` + float32 `weight_scale_inv` (ceil(out/128), ceil(in/128))."""
    out = {}
    for name, tensor in tensors.items():
        if _FP8_WEIGHT.match(name):
            q, scale = quantize_blocks(tensor, pow2)
            out[name], out[name + "_scale_inv"] = q.contiguous(), scale.contiguous()
        else:
            out[name] = tensor
    return out


def dequantize_fp8_tensors(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """W = float(W_fp8) * scale_inv[i // 128, j // 128]; scales that do not fit are an error."""
    out = {}
    for name, tensor in tensors.items():
        if name.endswith("_scale_inv"):
            if name.removesuffix("_scale_inv") not in tensors:
                raise ValueError(f"{source}: {name} has no weight tensor")
            continue
        scale = tensors.get(name + "_scale_inv")
        if scale is None:
            if tensor.dtype == torch.float8_e4m3fn:
                raise ValueError(f"{source}: FP8 tensor {name} has no {name}_scale_inv")
            out[name] = tensor
            continue
        rows, cols = tensor.shape
        expected = (-(-rows // 128), -(-cols // 128))
        if tuple(scale.shape) != expected:
            raise ValueError(f"{source}: {name}_scale_inv has shape {tuple(scale.shape)}, but a "
                             f"{rows}x{cols} weight in 128x128 blocks needs {expected}")
        out[name] = dequantize_blocks(tensor, scale.float())
    return out


def save_checkpoint(model, directory: str | os.PathLike, max_shard_bytes: int = 5 * 2**30,
                    state_dict: dict[str, torch.Tensor] | None = None, fp8: bool = False) -> None:
    """Write config.json, generation_config.json and safetensors (sharded past max_shard_bytes).
    `state_dict` overrides model.state_dict() (e.g. a full state gathered from FSDP shards);
    `fp8` writes the official DeepSeek-V3 FP8 format (block-quantized linear weights)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(model.state_dict() if state_dict is None else state_dict)
    if fp8:
        tensors = to_fp8_tensors(tensors, model.config.fp8_pow2_scales)
    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        if current and size + tensor.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += tensor.nbytes
    shards.append(current)
    names = ([WEIGHTS_NAME] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    for name, shard in zip(names, shards):
        atomic_write(directory / name, lambda tmp, shard=shard: save_file(shard, tmp, {"format": "pt"}))
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
                 "weight_map": {k: n for n, s in zip(names, shards) for k in s}}
        atomic_write(directory / INDEX_NAME, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2)))
    config = model.config
    config.architectures = ["DeepseekV3ForCausalLM"]
    config.quantization_config = dict(FP8_QUANTIZATION_CONFIG) if fp8 else None
    weight = tensors["model.embed_tokens.weight"]  # the high-precision dtype, also under FP8
    config.dtype = str(weight.dtype).removeprefix("torch.")
    atomic_write(directory / "config.json", lambda tmp: Path(tmp).write_text(config.to_json_string()))
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
                  "pad_token_id": config.pad_token_id}
    atomic_write(directory / "generation_config.json",
            lambda tmp: Path(tmp).write_text(json.dumps(generation, indent=2)))


def atomic_write(path: str | os.PathLike, write) -> None:
    """`write(tmp_path)` into a temp file beside `path`, then rename it into place, so a crash
    never leaves half a file. The result is world-readable (mkstemp alone would leave 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json (not a model checkpoint directory)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    if values.get("model_type") != "deepseek_v3":
        raise ValueError(f"{path}: model_type is {values.get('model_type')!r}, expected 'deepseek_v3'")
    try:
        return ModelConfig.from_dict(values)
    except Exception as exc:
        raise ValueError(f"{path}: {exc}") from exc


def read_tensors(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    directory = Path(directory)
    if (directory / INDEX_NAME).is_file():
        files = sorted(set(json.loads((directory / INDEX_NAME).read_text())["weight_map"].values()))
    elif (directory / WEIGHTS_NAME).is_file():
        files = [WEIGHTS_NAME]
    else:
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} or {INDEX_NAME}")
    tensors = {}
    for name in files:
        with safe_open(str(directory / name), framework="pt") as handle:
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    return tensors


def load_checkpoint(cls, directory, dtype=None, device=None, config_overrides=None):
    """Build `cls` from a checkpoint directory, checking every tensor against the config."""
    config = read_config(directory)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    tensors = from_hf_state_dict(dequantize_fp8_tensors(read_tensors(directory), str(directory)),
                                 str(directory))
    config.quantization_config = None  # weights are dequantized in memory
    n = config.num_hidden_layers
    mtp_keys = [k for k in tensors if _layer_index(k) is not None and _layer_index(k) >= n]
    if config.num_mtp_modules and not mtp_keys:
        warnings.warn(f"{directory}: config asks for {config.num_mtp_modules} MTP module(s) but the "
                      "checkpoint has no MTP weights (e.g. written by transformers); loading "
                      "with MTP disabled (num_nextn_predict_layers=0)")
        config.num_nextn_predict_layers = 0
    with torch.device("meta"):
        model = cls(config)
    expected = model.state_dict()
    _check_tensors(expected, tensors, str(directory))
    model = model.to_empty(device=device or "cpu")
    model.load_state_dict(tensors, strict=True)
    # Non-persistent buffers hold garbage after to_empty: rebuild them.
    model.model.rotary_emb = RotaryEmbedding(config).to(device or "cpu")
    for module in model.modules():
        if isinstance(module, Router):
            module.load_counts.zero_()
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def _layer_index(key: str) -> int | None:
    match = re.match(r"^model\.layers\.(\d+)\.", key)
    return int(match.group(1)) if match else None


def _check_tensors(expected, found, source):
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"{source}: checkpoint is missing tensor {missing[0]}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: checkpoint has unexpected tensor {unexpected[0]}"
                         + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{source}: tensor {key} has shape {tuple(found[key].shape)}, "
                             f"config expects {tuple(tensor.shape)}")
