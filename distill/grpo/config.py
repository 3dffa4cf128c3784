"""What `distillery grpo` reads: the recipe's `grpo:` section, as checked dataclasses.

    cfg = load_config(GRPORecipe, "recipes/grpo/tiny.yaml", overrides, section="grpo")

`trainer` holds TRL `GRPOConfig` fields as is (loss_type, epsilon_high, scale_rewards,
mask_truncated_completions, num_iterations, use_vllm/vllm_mode, ...): they are checked against
the installed TRL's field names here, so a typo or a field TRL removed fails with a suggestion
before a model is loaded (see `check_trainer_fields`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from distill.rewards import RewardSpec

# Fields a TRL-0.x recipe (open-r1's) may still carry, and what replaced them (distillation-methods §1.7).
REMOVED_FIELDS = {
    "max_prompt_length": "removed in TRL 1.x (trl #4847); prompts are no longer truncated, "
                        "filter long prompts in the data instead",
    "vllm_device": "removed; use vllm_mode (colocate | server)",
    "torch_dtype": "renamed to dtype, and it belongs in grpo.policy.dtype here",
    "max_seq_length": "renamed to max_length (SFT); GRPO uses max_completion_length",
    "vllm_importance_sampling_cap": "deprecated; use vllm_importance_sampling_clip_max",
}
# Set by the run from other sections, so the recipe cannot contradict them.
OWNED_FIELDS = {"output_dir": "grpo.output_dir", "reward_weights": "grpo.rewards[].weight",
                "resume_from_checkpoint": "grpo.resume"}


@dataclass
class PolicySpec:
    """path: one of our checkpoints or any local HF causal-LM directory (tokenizer files with a
    chat template included). impl: "auto" loads our model class for our checkpoints
    (model_type deepseek_v3 with our config) and transformers' AutoModelForCausalLM otherwise.
    dtype: torch dtype name, None = the checkpoint's own."""

    path: str
    impl: Literal["auto", "ours", "transformers"] = "auto"
    dtype: str | None = None


@dataclass
class LengthBudget:
    """LCPO prompts (L1): append "Think for N tokens." (exact) or "Think for maximum N tokens."
    (max) to the last user turn, N ~ Uniform[min_tokens, max_tokens] per prompt (seeded), stored
    in the `length_budget` column for the lcpo_* rewards. L1 samples N from [100, 4000]."""

    mode: Literal["exact", "max"] = "exact"
    min_tokens: int = 100
    max_tokens: int = 4000
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.min_tokens <= self.max_tokens:
            raise ValueError(f"length_budget: need 0 < min_tokens <= max_tokens, got "
                             f"{self.min_tokens}..{self.max_tokens}")


@dataclass
class DataSpec:
    """The prompt set.

    path: the RL prompt set from `distillery filter` (JSONL / Parquet / a saved datasets
        directory; columns problem_id, prompt or problem, reference, kind, pass_rate), any such
        file with `fields`, or `synthetic:<task>?n=..&split=train&seed=..` (evals' task families).
    fields: our column -> the file's column, e.g. {prompt: question, reference: answer}. Our
        columns: prompt (chat messages or text), reference, kind, problem_id, language.
    pass_rate: keep rows whose `pass_rate` lies in [lo, hi] (the filter's band); None keeps all.
    system_prompt: prepended as a system turn to text prompts.
    prompt_template: str.format template for text prompts with {question}; None = as is.
    limit: the first `limit` prompts only.
    length_budget: add L1 "Think for N tokens." prompts (needed by lcpo_exact / lcpo_max).
    """

    path: str
    fields: dict[str, str] = field(default_factory=dict)
    pass_rate: list[float] | None = None
    system_prompt: str | None = None
    prompt_template: str | None = None
    limit: int | None = None
    length_budget: LengthBudget | None = None

    def __post_init__(self):
        if self.pass_rate is not None:
            if len(self.pass_rate) != 2 or not 0 <= self.pass_rate[0] <= self.pass_rate[1] <= 1:
                raise ValueError(f"pass_rate must be [lo, hi] with 0 <= lo <= hi <= 1, got {self.pass_rate}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class LoraSpec:
    """PEFT LoRA on the policy (TRL's peft_config). target_modules: None = PEFT's default for the
    architecture, "all-linear" for every linear layer."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str | None = "all-linear"


@dataclass
class DynamicSampling:
    """DAPO dynamic sampling: drop prompt groups whose advantages are all zero (every reward in
    the group agrees) and refill the batch with groups from new prompts. max_rounds: extra
    generation rounds per step at most; a batch still short after them is topped up with dropped
    groups (zero gradient) and the shortfall is logged."""

    enabled: bool = False
    max_rounds: int = 4

    def __post_init__(self):
        if self.max_rounds < 0:
            raise ValueError(f"dynamic_sampling.max_rounds must be >= 0, got {self.max_rounds}")


@dataclass
class JudgeSpec:
    """How correctness is judged: workers > 0 verifies in a VerifierPool with a hard per-sample
    deadline (timeout_s); options go to every verifier call (e.g. units: match)."""

    workers: int = 0
    timeout_s: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GRPORecipe:
    """`grpo:` section. output_dir: the run directory (TRL checkpoints, metrics.jsonl, plots,
    the resolved config, the final model in `final/`). rollout: "trl" = GRPOTrainer's own
    generation (transformers generate, or vLLM with trainer.use_vllm); "engine" = our in-repo
    engine through TRL's rollout_func (our checkpoints only); resume: continue from the last
    checkpoint in output_dir (true) or a given checkpoint directory. "auto" = engine for our
    checkpoints without LoRA or vLLM (the faster on our models; benchmarks/grpo_rollout.py
    measures both), trl otherwise. rollout_mtp: engine rollouts with MTP self-speculative
    decoding (same sampled distribution; the policy needs MTP modules)."""

    policy: PolicySpec
    data: DataSpec
    output_dir: str = "runs/grpo"
    rewards: list[RewardSpec] = field(default_factory=lambda: [RewardSpec("accuracy")])
    trainer: dict[str, Any] = field(default_factory=dict)
    lora: LoraSpec | None = None
    dynamic_sampling: DynamicSampling = field(default_factory=DynamicSampling)
    judge: JudgeSpec = field(default_factory=JudgeSpec)
    rollout: Literal["auto", "trl", "engine"] = "auto"
    rollout_mtp: bool = False
    resume: bool | str = False
    plots: bool = True

    def __post_init__(self):
        check_trainer_fields(self.trainer)


def check_trainer_fields(trainer: dict) -> None:
    """ValueError for a key that is not a GRPOConfig field (with a suggestion), a field TRL
    removed (with what replaced it), or one this recipe sets elsewhere."""
    from trl import GRPOConfig

    names = [f.name for f in dataclasses.fields(GRPOConfig) if f.init]
    for key in trainer:
        if key in OWNED_FIELDS:
            raise ValueError(f"trainer.{key}: set it as {OWNED_FIELDS[key]}")
        if key in REMOVED_FIELDS:
            raise ValueError(f"trainer.{key}: {REMOVED_FIELDS[key]}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"trainer.{key}: not a TRL GRPOConfig field{hint}")
