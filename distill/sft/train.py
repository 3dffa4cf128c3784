"""`run_sft(cfg) -> Path`: the whole SFT stage, from recipe to final model directory.

OUT = cfg.out_dir holds: config.yaml (the resolved recipe), sft_config.json (TRL's resolved
SFTConfig), data_stats.json (what style/length control did), metrics.jsonl, checkpoints/ (TRL's
checkpoint-N, for --resume), final/ (HF layout, loadable by `distillery eval` and transformers)
and, with LoRA, adapter/ (PEFT; final/ too when merge is on).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from distill.sft.checks import check_model_tokens, check_tokenizer
from distill.sft.config import SFTRecipe
from distill.sft.data import load_sources
from distill.sft.style import build_conversations
from distill.sft.trainer import DistillSFTTrainer, ExpertBiasCallback, MetricsFileCallback
from distill.sft.trl_args import build_sft_config
from model.checkpoint import atomic_write
from recipes.config import save_config


def _is_ours(model_dir: Path) -> bool:
    """DeepSeek-V3 checkpoints (ours, or transformers' DeepseekV3) load into our model class."""
    try:
        return json.loads((model_dir / "config.json").read_text()).get("model_type") == "deepseek_v3"
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"sft.model {model_dir}: cannot read config.json ({e})") from e


def load_model(cfg: SFTRecipe):
    """Our Transformer for deepseek_v3 checkpoints, else AutoModelForCausalLM (local only)."""
    path = Path(cfg.model)
    if not cfg.model or not (path / "config.json").is_file():
        raise FileNotFoundError(f"sft.model {cfg.model!r}: not a model directory with config.json")
    if _is_ours(path):
        from model import Transformer

        if cfg.lora.quantize_4bit:
            raise ValueError("sft.lora.quantize_4bit (QLoRA) needs a transformers model class and "
                             "bitsandbytes on CUDA; our DeepSeek-V3 class has no 4-bit path")
        model = Transformer.from_pretrained(path)
        if cfg.mtp_loss_weight:
            if not len(model.mtp_layers):
                raise ValueError(f"sft.mtp_loss_weight={cfg.mtp_loss_weight}: {path} has no MTP module")
            model.config.mtp_loss_weight = cfg.mtp_loss_weight
        else:
            # No MTP loss: the MTP modules get no gradient; frozen, DDP does not wait for them.
            model.mtp_layers.requires_grad_(False)
        return model.train()
    if cfg.mtp_loss_weight:
        raise ValueError("sft.mtp_loss_weight: the MTP loss needs one of our DeepSeek-V3 checkpoints")
    from transformers import AutoModelForCausalLM

    kwargs = {"local_files_only": True}
    if cfg.lora.quantize_4bit:
        kwargs["quantization_config"] = _bnb_4bit()
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def _bnb_4bit():
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ValueError("sft.lora.quantize_4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes") from e
    if not torch.cuda.is_available():
        raise ValueError("sft.lora.quantize_4bit (QLoRA) needs a CUDA device")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)


def load_tokenizer(cfg: SFTRecipe):
    from transformers import AutoTokenizer

    path = cfg.tokenizer or cfg.model
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"sft.tokenizer {path}: cannot load a tokenizer ({e})") from e


def peft_config(cfg: SFTRecipe):
    if not cfg.lora.enabled:
        if cfg.lora.quantize_4bit or cfg.lora.merge:
            raise ValueError("sft.lora.quantize_4bit / merge need sft.lora.enabled: true")
        return None
    from peft import LoraConfig

    lora = cfg.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def latest_checkpoint(directory: Path) -> str | None:
    steps = [(int(m.group(1)), p) for p in directory.glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    return str(max(steps)[1]) if steps else None


def prepare(cfg: SFTRecipe):
    """Everything that can fail on bad input, before any model weights are touched: tokenizer
    and template checks, data reading and styling, TRL config. Returns (tok, rows, stats, args)."""
    out = Path(cfg.out_dir)
    tok = load_tokenizer(cfg)
    check_tokenizer(tok, f"sft.tokenizer {cfg.tokenizer or cfg.model}")
    instances = load_sources(cfg.data, cfg.seed)
    rows, stats = build_conversations(instances, cfg.style, cfg.length, tok)
    args = build_sft_config(cfg.trl, str(out / "checkpoints"), cfg.seed,
                            cpu=not torch.cuda.is_available())
    rows = drop_truncated(rows, stats, tok, args.max_length)
    return tok, rows, stats, args


def drop_truncated(rows: list[dict], stats: dict, tok, max_length: int | None) -> list[dict]:
    """TRL truncates a conversation longer than max_length, which cuts off its EOS (and maybe
    the answer): such samples would teach the model not to stop. Drop them and say so."""
    if max_length is None:
        return rows
    kept = [r for r in rows if len(tok.apply_chat_template(r["messages"], tokenize=True,
                                                           return_dict=True)["input_ids"]) <= max_length]
    if len(kept) < len(rows):
        stats["dropped_over_max_length"] = len(rows) - len(kept)
        warnings.warn(f"sft: dropped {len(rows) - len(kept)} of {len(rows)} samples longer than "
                      f"trl.max_length={max_length} (truncation would cut their EOS); use "
                      "sft.length.max_tokens to cap them instead", stacklevel=2)
    if not kept:
        raise ValueError(f"sft: every sample is longer than trl.max_length={max_length}")
    stats["samples"] = len(kept)
    return kept


def run_sft(cfg: SFTRecipe) -> Path:
    """Train and return the final model directory (OUT/final, or OUT/adapter for LoRA without
    merge)."""
    from datasets import Dataset

    out = Path(cfg.out_dir)
    tok, rows, stats, args = prepare(cfg)
    resume = None
    if cfg.resume:
        resume = latest_checkpoint(out / "checkpoints")
        if resume is None:
            raise ValueError(f"sft.resume: no checkpoint-N under {out / 'checkpoints'} to resume from")
    model = load_model(cfg)
    check_model_tokens(model.config, tok, f"sft.model {cfg.model}")
    if args.process_index == 0:
        save_config(cfg, out / "config.yaml")
        atomic_write(out / "sft_config.json", lambda t: Path(t).write_text(args.to_json_string()))
        atomic_write(out / "data_stats.json", lambda t: Path(t).write_text(json.dumps(stats, indent=2)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6.*")
        trainer = DistillSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                    processing_class=tok, peft_config=peft_config(cfg),
                                    mtp_loss_weight=cfg.mtp_loss_weight)
        trainer.add_callback(MetricsFileCallback(out))
        trainer.add_callback(ExpertBiasCallback(trainer, cfg.bias_update_speed))
        trainer.train(resume_from_checkpoint=resume)
    return save_final(trainer, tok, cfg, out)


def save_final(trainer, tok, cfg: SFTRecipe, out: Path) -> Path:
    """HF-layout final model (+ tokenizer); with LoRA the adapter, and the merged model on request."""
    final = out / "final"
    if not cfg.lora.enabled:
        trainer.save_model(str(final))
        if trainer.args.process_index == 0:
            tok.save_pretrained(final)
        return final
    adapter = out / "adapter"
    trainer.save_model(str(adapter))
    if trainer.args.process_index == 0:
        tok.save_pretrained(adapter)
    if not cfg.lora.merge:
        return adapter
    merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if trainer.args.process_index == 0:
        merged.save_pretrained(final)
        tok.save_pretrained(final)
    return final
