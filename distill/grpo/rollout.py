"""Group rollouts with the in-repo engine (model/engine.py) through TRL's `rollout_func` hook.

    GRPOTrainer(..., rollout_func=EngineRollout(use_mtp=False))

TRL calls `rollout_func(prompts, trainer)` with this process's prompts (each already repeated
num_generations times) instead of `model.generate`. The prompts are tokenized by TRL's own
`_tokenize_prompts` (same chat template and kwargs as its generate path); the engine then
samples every completion in one batch over the static MLA latent cache (optionally with MTP
self-speculation, which leaves the sampled distribution unchanged). The engine wraps the live
policy module, so every rollout uses the current weights (no weight sync). It returns no
sampling logprobs (TRL then computes old logprobs itself where it needs them).
Per-rollout `rollout/tokens_per_s` and `rollout/seconds` go into TRL's metrics.
"""

from __future__ import annotations

import time


class EngineRollout:
    """use_mtp: MTP speculative decoding (the policy needs MTP modules)."""

    def __init__(self, use_mtp: bool = False):
        self.use_mtp = use_mtp
        self.calls = 0

    def __call__(self, prompts: list, trainer) -> dict:
        from model.engine import Engine

        if getattr(trainer, "is_fsdp_enabled", False) or (
                getattr(trainer, "is_deepspeed_enabled", False)
                and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3):
            raise ValueError("rollout: engine reads the full weights, which FSDP / ZeRO-3 shard across "
                             "processes; use rollout: trl there (TRL gathers them for generation)")
        model = trainer.accelerator.unwrap_model(trainer.model)
        if not hasattr(model, "mtp_layers"):
            raise ValueError("rollout: engine needs our model class as the policy (a DeepSeek-V3 "
                             f"checkpoint of ours), got {type(model).__name__}")
        prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        prompt_ids = [list(map(int, ids)) for ids in prompt_ids]
        args = trainer.args
        seed = args.seed * 1_000_003 + trainer.state.global_step * 1009 + \
            trainer.accelerator.process_index * 101 + self.calls
        self.calls += 1
        engine = Engine(model, trainer.processing_class)
        start = time.perf_counter()
        result = engine.generate(prompt_ids, max_new_tokens=args.max_completion_length,
                                 temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or 0,
                                 seed=seed, use_mtp=self.use_mtp)
        seconds = time.perf_counter() - start
        metrics = trainer._metrics["train" if model.training else "eval"]
        metrics["rollout/tokens_per_s"].append(result.tokens_per_s)
        metrics["rollout/seconds"].append(seconds)
        return {"prompt_ids": prompt_ids, "completion_ids": result.tokens, "logprobs": None}
