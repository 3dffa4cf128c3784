"""TRL's SFTTrainer with what our model adds: the MTP loss kept on during SFT, the routers'
sequence-wise balance loss, the auxiliary-loss-free expert-bias update after each optimizer step,
and metrics.jsonl in the run directory.

TRL computes the loss with its fused LM head, which runs only the backbone (`model.model`) and
`lm_head`. With `mtp_loss_weight` set, the loss instead comes from our model's own forward
(labels in: main loss + weight * MTP loss, both token sums / num_items_in_batch, the same
normalisation TRL uses), since the MTP modules need the backbone's pre-norm hidden states.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback
from trl import SFTTrainer

from model.balance import update_expert_bias


def core_model(model):
    """The model under DDP/DeepSpeed/PEFT wrappers."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class DistillSFTTrainer(SFTTrainer):
    def __init__(self, *args, mtp_loss_weight: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mtp_loss_weight = mtp_loss_weight or 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        core = core_model(self.model)
        if self.mtp_loss_weight and self.model.training and not return_outputs:
            loss = self._mtp_loss(model, inputs, num_items_in_batch)
        else:
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        balance = core.balance_loss() if hasattr(core, "balance_loss") else None
        if balance is not None and self.model.training:
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            if isinstance(loss, tuple):
                loss = (loss[0] + balance / steps, *loss[1:])
            else:
                loss = loss + balance / steps
            self._metrics["train"]["balance_loss"].append(float(balance.detach()))
        return loss

    def _mtp_loss(self, model, inputs, num_items_in_batch):
        inputs = {**inputs, "use_cache": False}
        out = model(**inputs, num_items_in_batch=num_items_in_batch)
        loss = out.lm_loss + self.mtp_loss_weight * out.mtp_loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
        metrics = self._metrics["train"]
        scale = 1.0
        if num_items_in_batch is not None:  # report per-token means, like TRL's own loss
            labels = inputs["labels"][:, 1:]
            scale = float(num_items_in_batch) / max(int((labels != -100).sum()), 1)
        metrics["lm_loss"].append(float(out.lm_loss.detach()) * scale)
        metrics["mtp_loss"].append(float(out.mtp_loss.detach()) * scale)
        return loss


class ExpertBiasCallback(TrainerCallback):
    """After each optimizer step: b += gamma * sign(mean load - load) (spec §3.3), loads
    all-reduced over ranks, and MaxVio logged. gamma None = the model config's."""

    def __init__(self, trainer: DistillSFTTrainer, gamma: float | None):
        self.trainer, self.gamma = trainer, gamma

    def on_step_end(self, args, state, control, **kwargs):
        core = core_model(self.trainer.model)
        gamma = self.gamma
        if gamma is None:
            gamma = getattr(core.config, "bias_update_speed", 0.0)
        stats = update_expert_bias(core, gamma)
        if stats is not None:
            self.trainer._metrics["train"]["maxvio"].append(stats.mean_max_violation)


class MetricsFileCallback(TrainerCallback):
    """Every log row into OUT/metrics.jsonl (main process), flushed per row; on resume, rows
    past the checkpoint's step are dropped since they will be redone."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / "metrics.jsonl"

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a crash
                    break
                if row.get("step", 0) <= state.global_step:
                    rows.append(row)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        for key, value in logs.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            row[key] = value
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
