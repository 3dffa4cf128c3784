"""Training checkpoints: the HF-layout model plus everything needed to continue bit-exactly.

Layout under `<out_dir>/checkpoints/step-NNNNNN/`:
    config.json, model.safetensors, tokenizer files   (loadable by later stages and transformers)
    trainer_state.pt   optimizer state (FQN-keyed, full), step, data-loader position, RNG states
    pretrain_config.yaml   the resolved config
`<out_dir>/checkpoints/latest` names the newest complete one. A checkpoint is written into a
temporary directory and renamed into place, and `latest` is replaced atomically after that, so a
crash mid-write never damages the last good checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from recipes.config import save_config

STATE_FILE = "trainer_state.pt"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"{pointer} names {path.name}, which is incomplete (no {STATE_FILE})")
    return path


def save(out_dir, step: int, model, optimizer, loader_state: dict, config, tokenizer,
         is_main: bool, keep: int = 2, ep=None) -> Path:
    """Collective under DDP/FSDP/EP (all ranks call it); rank 0 writes. Under expert parallelism
    (`ep`: pretrain.expert_parallel.ExpertParallel) the experts are gathered first, so the files
    hold every expert, as without EP."""
    model_sd, optim_sd = get_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ep is not None:
        model_sd, optim_sd = ep.gather_state(optimizer, model_sd, optim_sd)
    root = Path(out_dir) / "checkpoints"
    final = root / f"step-{step:06d}"
    if not is_main:
        return final
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    core = getattr(model, "module", model)
    core.save_pretrained(tmp, state_dict=model_sd)
    tokenizer.save_pretrained(tmp)
    save_config(config, tmp / "pretrain_config.yaml")
    torch.save({"step": step, "optimizer": optim_sd, "loader": loader_state, "rng": rng_state()},
               tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / ".latest.tmp"
    pointer_tmp.write_text(final.name)
    os.replace(pointer_tmp, root / "latest")
    for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, model, optimizer, ep=None) -> dict:
    """Restore weights and optimizer state into (possibly wrapped) model; return the state.
    Under expert parallelism (`ep`) each rank takes its own experts out of the full files, so
    the EP size may differ from the run that wrote them."""
    from model.checkpoint import from_hf_state_dict, read_config, read_tensors

    saved = read_config(path)
    current = getattr(model, "module", model).config
    mismatched = [k for k in ("hidden_size", "num_hidden_layers", "n_routed_experts", "vocab_size",
                              "num_nextn_predict_layers", "moe_intermediate_size", "kv_lora_rank")
                  if getattr(saved, k) != getattr(current, k)]
    if mismatched:
        key = mismatched[0]
        raise ValueError(f"resume: checkpoint {path} was trained with model.{key}="
                         f"{getattr(saved, key)} but the config says {getattr(current, key)}")
    model_sd = from_hf_state_dict(read_tensors(path), str(path))
    state = torch.load(path / STATE_FILE, weights_only=False)
    optim_sd = state["optimizer"]
    if ep is not None:
        model_sd, optim_sd = ep.shard_state(model_sd, optim_sd)
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                   options=StateDictOptions(full_state_dict=True))
    set_rng_state(state["rng"])
    return state
