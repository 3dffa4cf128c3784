"""DAPO dynamic sampling on top of TRL's GRPOTrainer (Yu et al. 2025, arXiv 2503.14476 §3.2).

A prompt group whose rewards all agree (all right, all wrong, or equal in every reward) has zero
advantage for every completion, so it adds nothing to the gradient but still dilutes the token-
level loss. DAPO over-samples: drop such groups and refill the batch with groups from new
prompts until it is full. TRL only logs `frac_reward_zero_std`; `DynamicSamplingTrainer`
wraps `_generate_and_score_completions`:

1. score the generation batch as TRL does (rewards gathered and advantages computed globally);
2. gather the advantages, mark the groups (num_generations consecutive completions of one
   prompt) whose advantages are all zero, keep this process's samples of the other groups;
3. while any process is short, draw a fresh generation batch from a refill sampler (same
   RepeatSampler layout, its own seed) and repeat, at most `max_rounds` times;
4. concatenate the kept samples (prompt tensors re-padded on the left, completion tensors on the
   right), top up a still-short batch with dropped samples (zero gradient), recompute
   num_items_in_batch, and log `dynamic_sampling/dropped_share` (dropped / generated groups this
   step), `dynamic_sampling/rounds` and `dynamic_sampling/topped_up` (samples padded in).
Every process makes the same number of rounds (the decision is taken on gathered counts), so the
collective calls inside TRL line up.
"""

from __future__ import annotations

import torch
from accelerate.utils import gather
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler

ZERO_ADVANTAGE = 1e-6  # |A| below this counts as zero (float error on equal rewards is ~1e-12)
LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}
RIGHT_PADDED = {"completion_ids": "pad", "completion_mask": 0, "old_per_token_logps": 0.0,
                "sampling_per_token_logps": 0.0, "ref_per_token_logps": 0.0,
                "importance_sampling_ratio": 0.0, "tool_mask": 1}
PER_SAMPLE = {"advantages"}


def informative_mask(advantages_global: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) bool: True for samples whose group has at least one non-zero advantage."""
    groups = advantages_global.view(-1, group_size)
    keep = (groups.abs() > ZERO_ADVANTAGE).any(dim=1)
    return keep.repeat_interleave(group_size)


def _pad_to(t: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
    extra = width - t.size(1)
    if extra <= 0:
        return t
    fill = t.new_full((t.size(0), extra), value)
    return torch.cat([fill, t] if left else [t, fill], dim=1)


def concat_batches(parts: list[dict], pad_token_id: int) -> dict:
    """One batch from several TRL scored batches (same keys), re-padding the ragged dims."""
    keys = set(parts[0])
    unknown = keys - set(LEFT_PADDED) - set(RIGHT_PADDED) - PER_SAMPLE - {"num_items_in_batch"}
    if unknown:
        raise ValueError(f"dynamic sampling cannot merge batch fields {sorted(unknown)} "
                         "(multimodal / tool inputs are not supported with it)")
    out = {}
    for key in keys - {"num_items_in_batch"}:
        tensors = [p[key] for p in parts]
        if key in PER_SAMPLE or tensors[0].dim() == 1 or key == "importance_sampling_ratio" and \
                tensors[0].size(1) == 1:
            out[key] = torch.cat(tensors, dim=0)
            continue
        left = key in LEFT_PADDED
        value = (LEFT_PADDED if left else RIGHT_PADDED)[key]
        value = pad_token_id if value == "pad" else value
        width = max(t.size(1) for t in tensors)
        out[key] = torch.cat([_pad_to(t, width, value, left) for t in tensors], dim=0)
    return out


def select(batch: dict, index: torch.Tensor) -> dict:
    return {k: v if k == "num_items_in_batch" else v[index] for k, v in batch.items()}


class DynamicSamplingTrainer(GRPOTrainer):
    """GRPOTrainer with DAPO dynamic sampling (see the module docstring). max_rounds: extra
    generation rounds per step at most."""

    def __init__(self, *args, dynamic_sampling: bool = True, max_rounds: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling, self.max_rounds = dynamic_sampling, max_rounds
        self._refill = None

    def _refill_batches(self):
        """Endless generation batches from a reshuffled sampler (new seed each pass)."""
        epoch = 0
        G = self.num_generations
        while True:
            seed = self.args.seed + 7919 * (epoch + 1)

            def sampler(dataset, seed=seed):
                return RepeatSampler(dataset, mini_repeat_count=G,
                                     batch_size=self.args.generation_batch_size // G,
                                     repeat_count=1, shuffle=True, seed=seed)

            loader = self._get_dataloader(self.train_dataset, "Refill",
                                          batch_size=self._train_batch_size * self.args.steps_per_generation,
                                          sampler_fn=sampler, is_training=True)
            yield from loader
            epoch += 1

    def _generate_and_score_completions(self, inputs):
        if not self.dynamic_sampling or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        G, rank = self.num_generations, self.accelerator.process_index
        need = len(inputs)
        kept, dropped = [], []
        n_kept = generated_groups = dropped_groups = rounds = 0
        while True:
            batch = super()._generate_and_score_completions(inputs)
            everyone = gather(batch["advantages"].detach())
            keep_global = informative_mask(everyone, G)
            generated_groups += everyone.numel() // G
            dropped_groups += int((~keep_global).sum().item()) // G
            local = keep_global[rank * need:(rank + 1) * need]  # processes' batches in rank order
            idx_keep = local.nonzero(as_tuple=True)[0]
            idx_drop = (~local).nonzero(as_tuple=True)[0]
            if idx_keep.numel():
                kept.append(select(batch, idx_keep[: need - n_kept]))
                n_kept += min(idx_keep.numel(), need - n_kept)
            if idx_drop.numel():
                dropped.append(select(batch, idx_drop))
            short = gather(torch.tensor([need - n_kept], device=self.accelerator.device)).max().item()
            if short == 0 or rounds >= self.max_rounds:
                break
            rounds += 1
            if self._refill is None:
                self._refill = self._refill_batches()
            inputs = next(self._refill)
        topped_up = 0
        for part in dropped:
            if n_kept >= need:
                break
            take = min(need - n_kept, part["advantages"].numel())
            kept.append(select(part, torch.arange(take, device=part["advantages"].device)))
            n_kept += take
            topped_up += take
        out = concat_batches(kept, self._tokenizer.pad_token_id)
        mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
        out["num_items_in_batch"] = gather(mask.sum()).sum()
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/dropped_share"].append(dropped_groups / max(1, generated_groups))
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/topped_up"].append(
            gather(torch.tensor([float(topped_up)], device=self.accelerator.device)).sum().item())
        return out
