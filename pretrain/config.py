"""PretrainConfig: what `distillery pretrain` reads (the `pretrain:` section of a recipe).

Defaults run on a laptop CPU in a minute or two; recipes scale them up. Fields are grouped by
concern in the dataclasses below; unknown keys in a recipe are errors (recipes/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model import ModelConfig


@dataclass
class DataConfig:
    """Where tokens come from.

    sources: JSONL / Parquet / .txt files or local HF dataset directories.
    text_field: the column holding the document text.
    tokenizer: an HF tokenizer directory (`distillery tokenizer` writes one).
    shard_dir: token shards are built here once and reused.
    val_fraction: share of documents held out for the validation loss.
    seed: which documents are held out (kept apart from train.seed so that a new training seed
        reuses the same shards).
    """

    sources: list[str] = field(default_factory=list)
    text_field: str = "text"
    tokenizer: str = "runs/tokenizer"
    shard_dir: str = "runs/shards"
    val_fraction: float = 0.02
    seed: int = 0  # picks the validation documents; part of the shard set's identity


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (DeepSeek-V3: betas 0.9/0.95, wd 0.1, clip 1.0).

    schedule: "cosine" = linear warmup then cosine to lr * min_lr_ratio; "wsd" = warmup, stable,
        then linear decay to lr * min_lr_ratio over the last `decay_fraction` of the steps.
    moments_dtype: storage of AdamW's moments ("bf16": pretrain/optim.py).
    """

    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    schedule: Literal["cosine", "wsd"] = "cosine"
    warmup_steps: int = 20
    decay_fraction: float = 0.2
    moments_dtype: Literal["fp32", "bf16"] = "fp32"  # bf16 as in DeepSeek-V3's FP8 recipe


@dataclass
class BalanceConfig:
    """Auxiliary-loss-free balancing and MTP weight schedules (spec §3.3, §4.2, §6).

    bias_update_speed: gamma; None = the model config's. Set to 0 for the last
        `bias_freeze_fraction` of the steps (DeepSeek-V3: the last 500B of 14.8T tokens).
    mtp_loss_weight / mtp_loss_weight_late / mtp_switch_fraction: lambda is the first value
        until that fraction of the steps, then the second (DeepSeek-V3: 0.3, then 0.1 after
        10T of 14.8T tokens). None = the model config's value throughout.
    """

    bias_update_speed: float | None = None
    bias_freeze_fraction: float = 0.0
    mtp_loss_weight: float | None = None
    mtp_loss_weight_late: float | None = None
    mtp_switch_fraction: float = 0.68


@dataclass
class TrainConfig:
    """The loop. A step = grad_accum micro-batches of batch_size rows of seq_len tokens, on each
    process (global batch = batch_size * grad_accum * world size).

    parallel: with more than one process, "ddp", "fsdp" (FSDP2), or "ep": routed experts sharded
        over expert-parallel groups of ep_size ranks, tokens moved by all-to-all (a DP x EP
        mesh; pretrain/expert_parallel.py). Under ep:
    ep_size: ranks per EP group (0 = all processes); must divide the process count and
        model.n_routed_experts.
    ep_overlap: split each micro-batch in two so one half's dispatch/combine overlaps the other
        half's compute (async all-to-all); false = one blocking all-to-all each way.
    ep_fp8_dispatch: send dispatched activations as E4M3 with power-of-2 1x128 scales.
    ep_dense: how the non-expert weights are kept: "ddp" (replicated) or "fsdp" (FSDP2).
    compile: torch.compile, in place (parameter names and checkpoints unchanged): "layer" (or
        true) compiles each decoder/MTP layer; "model" compiles the whole forward, losses (main,
        MTP, balance) included, one graph when the experts run torch._grouped_mm (bf16).
    compile_backend: torch.compile's backend ("inductor"; "aot_eager" to check tracing cheaply).
    """

    batch_size: int = 8
    seq_len: int = 256
    grad_accum: int = 1
    max_steps: int = 200
    eval_every: int = 50
    eval_batches: int = 4
    save_every: int = 100
    log_every: int = 1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: Literal[False, True, "layer", "model"] = False
    compile_backend: str = "inductor"
    parallel: Literal["ddp", "fsdp", "ep"] = "ddp"  # used when launched with more than one process
    ep_size: int = 0
    ep_overlap: bool = True
    ep_fp8_dispatch: bool = False
    ep_dense: Literal["ddp", "fsdp"] = "ddp"


@dataclass
class LoggingConfig:
    """metrics.jsonl is always written; these add trackers (extras: pip install -e '.[logging]')."""

    wandb: bool = False
    tensorboard: bool = False
    trackio: bool = False
    project: str = "distillery"


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    init_from: str | None = None  # start from this checkpoint instead of a random model
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    out_dir: str = "runs/pretrain"

    def validate(self, where: str) -> None:
        """Cross-field checks the types cannot express; errors name the key."""
        t, o, b = self.train, self.optim, self.balance
        for key, value in (("train.batch_size", t.batch_size), ("train.seq_len", t.seq_len),
                           ("train.grad_accum", t.grad_accum), ("train.max_steps", t.max_steps)):
            if value <= 0:
                raise ValueError(f"{where}: {key} must be positive, got {value}")
        if t.seq_len > self.model.max_position_embeddings:
            raise ValueError(f"{where}: train.seq_len={t.seq_len} exceeds "
                             f"model.max_position_embeddings={self.model.max_position_embeddings}")
        if not 0 <= b.bias_freeze_fraction <= 1 or not 0 <= b.mtp_switch_fraction <= 1:
            raise ValueError(f"{where}: balance fractions must lie in [0, 1]")
        if not 0 <= self.data.val_fraction < 1:
            raise ValueError(f"{where}: data.val_fraction must lie in [0, 1)")
        if o.lr <= 0 or not 0 <= o.min_lr_ratio <= 1:
            raise ValueError(f"{where}: optim.lr must be > 0 and optim.min_lr_ratio in [0, 1]")
        if t.ep_size < 0:
            raise ValueError(f"{where}: train.ep_size must be >= 0 (0 = all processes)")
        if t.parallel == "ep" and t.ep_size and self.model.n_routed_experts % t.ep_size:
            raise ValueError(f"{where}: train.ep_size={t.ep_size} must divide "
                             f"model.n_routed_experts={self.model.n_routed_experts}")
        if not self.data.sources:
            raise ValueError(f"{where}: data.sources is empty: list at least one corpus file")
