"""The pretraining loop: `distillery pretrain --config R` or `torchrun ... -m pretrain.train`.

One optimizer step = grad_accum micro-batches on every data-parallel rank. After the step the
auxiliary-loss-free bias update runs on loads summed over the whole global batch (spec §3.3).
Losses: main CE + MTP (scheduled weight) + sequence-wise balance loss (model/transformer.py).
Data: packed documents with per-document attention (pretrain/data.py). Checkpoints: HF-layout
model + optimizer + data position + RNG (pretrain/checkpoint.py); `--resume` continues them, bit
for bit on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from model import Transformer
from model.accounting import account
from model.balance import routers, update_expert_bias
from pretrain import checkpoint
from pretrain import expert_parallel as ep_training
from pretrain.config import PretrainConfig
from pretrain.metrics import MetricsWriter, device_peak_flops
from pretrain.optim import AdamWStateDtype
from pretrain.schedule import bias_speed_at, lr_at, mtp_weight_at
from recipes.config import config_to_dict, load_config


@dataclass
class Runtime:
    rank: int
    world: int
    device: torch.device
    autocast: torch.dtype | None
    ep: ep_training.ExpertParallel | None = None  # set under train.parallel=ep

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(cfg: PretrainConfig) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is visible")
    device = torch.device("cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return Runtime(rank, world, device, torch.bfloat16 if precision == "bf16" else None)


def build_model(cfg: PretrainConfig, tokenizer, device) -> Transformer:
    torch.manual_seed(cfg.train.seed)
    if cfg.init_from:
        model = Transformer.from_pretrained(cfg.init_from)
    else:
        model = Transformer(cfg.model)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(f"model.vocab_size={model.config.vocab_size} is smaller than the "
                         f"tokenizer's {len(tokenizer)} tokens ({cfg.data.tokenizer})")
    model.config.bos_token_id, model.config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).train()


def compile_model(model: Transformer, mode, backend: str = "inductor") -> None:
    """torch.compile in place (nn.Module.compile), so parameter names and checkpoints stay the
    same: per layer ("layer" or True) or the whole forward with its losses ("model")."""
    if mode in (True, "layer"):
        for layer in model.model.layers:
            layer.compile(backend=backend)
    elif mode == "model":
        model.compile(backend=backend)


def wrap(model: Transformer, cfg: PretrainConfig, rt: Runtime):
    """DDP or FSDP2 across ranks (or, under EP, over the non-expert weights). DDP must not
    broadcast buffers: each rank's router load counts are its own until update_expert_bias
    all-reduces them."""
    if rt.world == 1:
        return model
    if rt.ep is not None:
        return ep_training.wrap(model, rt.ep, cfg.train.ep_dense, rt.device)
    if cfg.train.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard
        # Main decoder layers each get their own group; the MTP modules stay in the root group,
        # whose parameters are gathered for the whole forward (the MTP loss calls their norms
        # and eh_proj outside the layer's own forward).
        for layer in model.main_layers:
            fully_shard(layer)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def make_optimizer(model, cfg: PretrainConfig, device, ep=None) -> torch.optim.AdamW:
    """AdamW; no weight decay on vectors (norm gains); optionally bf16 moments. Under EP the
    sharded experts form a group of their own (a fused step must not mix them with DTensors)."""
    experts = {id(p) for p in ep.expert_params} if ep is not None else set()
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in experts]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if ep is not None:
        groups.append({"params": list(ep.expert_params), "weight_decay": cfg.optim.weight_decay})
    o = cfg.optim
    if o.moments_dtype == "bf16":
        return AdamWStateDtype(groups, lr=o.lr, betas=o.betas, eps=o.eps, state_dtype=torch.bfloat16)
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                             fused=device.type == "cuda")


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(rt: Runtime):
    if rt.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=rt.autocast)


def _mean_over_ranks(values: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.world > 1:
        dist.all_reduce(values)
        values = values / rt.world
    return values


def train_step(model, core, optimizer, batches, cfg: PretrainConfig, rt: Runtime, step: int):
    """Forward/backward over the micro-batches, clip, step, bias update. Returns metrics."""
    total, accum = cfg.train.max_steps, cfg.train.grad_accum
    core.config.mtp_loss_weight = mtp_weight_at(step, total, cfg.balance, cfg.model.mtp_loss_weight)
    lr = lr_at(step, total, cfg.optim)
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = torch.zeros(4, device=rt.device)  # loss, lm, mtp, balance
    for micro in range(accum):
        batch = _to(next(batches), rt.device)
        last = micro == accum - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(rt):
                out = model(**batch)
            (out.loss / accum).backward()
        parts = [out.loss, out.lm_loss, out.mtp_loss, out.balance_loss]
        sums += torch.stack([p.detach().float() if p is not None else sums.new_zeros(()) for p in parts])
    if rt.ep is not None:
        rt.ep.reduce_expert_grads()
        grad_norm = rt.ep.clip_grad_norm(model, cfg.optim.grad_clip)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor
        grad_norm = grad_norm.full_tensor()
    sums = _mean_over_ranks(sums / accum, rt)
    finite = bool(torch.isfinite(sums[0]) & torch.isfinite(grad_norm))  # same on every rank
    balance = None
    if finite:
        optimizer.step()
        gamma = bias_speed_at(step, total, cfg.balance, cfg.model.bias_update_speed)
        balance = update_expert_bias(core, gamma, ep_size=rt.ep.size if rt.ep else 1)
    else:
        for router in routers(core):  # a skipped step must not steer the bias either
            router.load_counts.zero_()
    optimizer.zero_grad(set_to_none=True)
    loss, lm, mtp, bal = sums.tolist()
    row = {"loss": loss, "lm_loss": lm, "mtp_loss": mtp, "balance_loss": bal, "lr": lr,
           "grad_norm": float(grad_norm), "mtp_weight": core.config.mtp_loss_weight,
           "skipped": not finite}
    if balance is not None:
        row["maxvio"] = balance.max_violation
        row["maxvio_mean"] = balance.mean_max_violation
        if balance.ep_max_violation is not None:
            row["maxvio_ep"] = balance.ep_max_violation
    return row


@torch.no_grad()
def evaluate(model, loader_factory, num_batches: int, rt: Runtime) -> float:
    """Mean main-model loss on the held-out documents (the same batches every time)."""
    was_training = model.training
    model.eval()
    batches = loader_factory()
    total = torch.zeros((), device=rt.device)
    for _ in range(num_batches):
        batch = _to(next(batches), rt.device)
        with _autocast(rt):
            total += model(**batch).lm_loss.float()
    model.train(was_training)
    return float(_mean_over_ranks(total / num_batches, rt))


def run(cfg: PretrainConfig, resume: bool = False, where: str = "config",
        stop_after: int | None = None) -> Path:
    """Train per `cfg`; returns the output directory. `stop_after` ends the process early at that
    step without changing any schedule (tests use it to simulate a kill)."""
    from transformers import AutoTokenizer

    from pretrain.data import PackedLoader
    from pretrain.shards import build_shards, load_shards

    cfg.validate(where)
    rt = setup(cfg)
    out_dir = Path(cfg.out_dir)
    if not resume and rt.is_main and (out_dir / "checkpoints" / "latest").exists():
        raise ValueError(f"{out_dir} already holds checkpoints: pass --resume to continue, or "
                         "choose another out_dir")
    if not Path(cfg.data.tokenizer).is_dir():
        raise FileNotFoundError(f"data.tokenizer: {cfg.data.tokenizer} is not a tokenizer directory "
                                "(run `distillery tokenizer` first)")
    tokenizer = AutoTokenizer.from_pretrained(cfg.data.tokenizer)
    if rt.is_main:
        shards = build_shards(cfg.data.sources, tokenizer, cfg.data.shard_dir,
                              text_field=cfg.data.text_field, val_fraction=cfg.data.val_fraction,
                              seed=cfg.data.seed)
    if rt.world > 1:
        dist.barrier()
    if not rt.is_main:
        shards = load_shards(cfg.data.shard_dir)

    core = build_model(cfg, tokenizer, rt.device)
    cfg.model = core.config
    ep_training.warn_unused(cfg.train, rt.world)
    if cfg.train.parallel == "ep" and rt.world > 1:
        rt.ep = ep_training.setup(core, cfg.train, rt.world, rt.device)
    compile_model(core, cfg.train.compile, cfg.train.compile_backend)
    model = wrap(core, cfg, rt)
    optimizer = make_optimizer(model, cfg, rt.device, rt.ep)
    t = cfg.train
    loader = PackedLoader(shards, t.batch_size, t.seq_len, seed=t.seed, rank=rt.rank,
                          world_size=rt.world, split="train")
    has_val = cfg.data.val_fraction > 0 and t.eval_every > 0

    def val_batches():
        return iter(PackedLoader(shards, t.batch_size, t.seq_len, seed=t.seed, rank=rt.rank,
                                 world_size=rt.world, split="val"))

    start = 0
    latest = checkpoint.latest_checkpoint(out_dir) if resume else None
    if latest is not None:
        state = checkpoint.load(latest, model, optimizer, rt.ep)
        loader.load_state_dict(state["loader"])
        start = state["step"]
    batches = iter(loader)
    acc = account(core.config, t.seq_len)
    peak = device_peak_flops(rt.device)
    tokens_per_step = t.batch_size * t.seq_len * t.grad_accum * rt.world
    writer = MetricsWriter(out_dir, t.max_steps, rt.is_main, cfg.logging, config_to_dict(cfg), start)
    if rt.is_main and start:
        writer.message(f"resumed from {latest} at step {start}")
    try:
        for step in range(start, t.max_steps):
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            row = train_step(model, core, optimizer, batches, cfg, rt, step)
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - began
            done = step + 1
            row = {"step": done, **row, "tokens": done * tokens_per_step,
                   "tokens_per_s": tokens_per_step / elapsed, "step_s": elapsed,
                   "mfu": (tokens_per_step / elapsed * acc.flops_per_token / (peak * rt.world)
                           if peak else None)}
            if rt.device.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(rt.device) / 2**30
            if row["skipped"]:
                writer.message(f"step {done}: non-finite loss or gradient, step skipped")
            if has_val and (done % t.eval_every == 0 or done == t.max_steps):
                row["val_loss"] = evaluate(model, val_batches, t.eval_batches, rt)
            if done % t.log_every == 0 or done == t.max_steps or "val_loss" in row:
                writer.log(row)
            if done % t.save_every == 0 or done == t.max_steps:
                checkpoint.save(out_dir, done, model, optimizer, loader.state_dict(), cfg,
                                tokenizer, rt.is_main, ep=rt.ep)
            if stop_after is not None and done >= stop_after:
                break
        else:
            if rt.is_main:
                _publish_final(out_dir)
    finally:
        writer.close()
        if rt.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return out_dir


def _publish_final(out_dir: Path) -> None:
    """`<out_dir>/final`: the last checkpoint's model and tokenizer, for later stages."""
    latest = checkpoint.latest_checkpoint(out_dir)
    tmp = out_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(latest, tmp, ignore=shutil.ignore_patterns(checkpoint.STATE_FILE))
    shutil.rmtree(out_dir / "final", ignore_errors=True)
    os.replace(tmp, out_dir / "final")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pretrain.train")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    cfg = load_config(PretrainConfig, args.config, args.overrides, section="pretrain")
    run(cfg, resume=args.resume, where=args.config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
