"""The recipe's `trl:` mapping -> TRL's SFTConfig: every SFTConfig field passes through; a name
SFTConfig does not know is an error with a suggestion, or, for a field that TRL or transformers
removed or renamed (recipes written for older stacks, distillation-methods.md §1.7), the reason.

A few fields belong to our recipe and are set from it (output_dir, assistant_only_loss, seed);
setting them under `trl:` is an error that says where they live.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

# Old name -> what to write now. Checked against trl 1.16 / transformers 5 (SFTConfig fields).
MOVED = {
    "max_seq_length": "renamed to max_length (TRL 0.20)",
    "evaluation_strategy": "renamed to eval_strategy (transformers 4.46)",
    "torch_dtype": "renamed to dtype; it belongs in model_init_kwargs (TRL 1.x, transformers 5)",
    "use_liger": "renamed to use_liger_kernel",
    "dataset_batch_size": "removed in TRL 0.20: tokenization is no longer batched by this setting",
    "num_of_sequences": "removed with the old ConstantLengthDataset; packing uses max_length",
    "chars_per_token": "removed with the old ConstantLengthDataset; packing uses max_length",
    "overwrite_output_dir": "removed in transformers 5: the run directory is sft.out_dir",
    "logging_dir": "removed in transformers 5: trackers write under the run directory",
    "no_cuda": "renamed to use_cpu",
    "use_mps_device": "removed: the device is chosen automatically",
    "per_gpu_train_batch_size": "renamed to per_device_train_batch_size",
    "per_gpu_eval_batch_size": "renamed to per_device_eval_batch_size",
    "push_to_hub_token": "renamed to hub_token",
    "fp16_backend": "removed (use fp16/bf16)",
    "tpu_num_cores": "removed in transformers 5",
}
# Ours: where the recipe sets them instead.
OWNED = {
    "output_dir": "set sft.out_dir (TRL checkpoints go to OUT/checkpoints)",
    "assistant_only_loss": "always on: the loss falls on assistant tokens only (issue 12)",
    "seed": "set sft.seed",
    "resume_from_checkpoint": "use `distillery sft --resume` or sft.resume: true",
}


def check_trl_keys(values: dict[str, Any], sft_config_cls) -> None:
    """ValueError naming the first bad key of the recipe's `trl:` mapping."""
    known = {f.name for f in dataclasses.fields(sft_config_cls) if f.init}
    for key in values:
        if key in OWNED:
            raise ValueError(f"sft.trl.{key}: not a TRL setting here: {OWNED[key]}")
        if key in known:
            continue
        if key in MOVED:
            raise ValueError(f"sft.trl.{key}: {MOVED[key]}")
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"sft.trl.{key}: not an SFTConfig field{hint}")
    init_kwargs = values.get("model_init_kwargs") or {}
    if isinstance(init_kwargs, dict) and "torch_dtype" in init_kwargs:
        raise ValueError("sft.trl.model_init_kwargs.torch_dtype: renamed to dtype (transformers 5)")


def build_sft_config(values: dict[str, Any], output_dir: str, seed: int, cpu: bool):
    """SFTConfig from the recipe's `trl:` mapping plus the fields we own. On a machine without
    CUDA the defaults that need a GPU (bf16) are turned off unless the recipe sets them."""
    from trl import SFTConfig

    check_trl_keys(values, SFTConfig)
    kwargs = dict(values)
    if cpu:
        kwargs.setdefault("use_cpu", True)
        kwargs.setdefault("bf16", False)
    kwargs.setdefault("report_to", "none")
    # DDP must not broadcast buffers: each rank's router load counts are its own until the
    # expert-bias update all-reduces them (as in pretrain/train.py).
    kwargs.setdefault("ddp_broadcast_buffers", False)
    kwargs.setdefault("logging_steps", 1)
    kwargs.update(output_dir=output_dir, assistant_only_loss=True, seed=seed)
    try:
        return SFTConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sft.trl: {e}") from e
