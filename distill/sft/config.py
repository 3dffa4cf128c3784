"""The `sft:` recipe section (SFTRecipe), mapped one to one by recipes.config.load_config.

Our settings (data sources, style, length, LoRA, MTP) are typed fields; everything TRL's
`SFTConfig` knows goes under `trl:` and passes straight through (distill/sft/trl_args.py checks
the names: typos get a suggestion, removed or renamed TRL fields an explanation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# DeepSeek-V3 report sec. 5.1 (distillation-methods.md §3.7): the R1-response sample carries a
# system prompt asking for reflection and verification. The report does not publish its wording;
# this is ours.
REFLECTION_SYSTEM_PROMPT = (
    "Think step by step inside <think> </think> before answering. Reflect on each step, verify "
    "intermediate results and correct any mistake before giving the final answer.")


@dataclass
class SFTSource:
    """One training set. `path`: a JSONL or Parquet file, or a `datasets` directory
    (save_to_disk). `fields` maps our column names to the file's: `messages` (chat turns; the
    default, as `distillery filter` writes it), or `prompt` + `response`, or `prompt` +
    `reasoning` + `answer`; optionally `system` (a per-sample system prompt). `weight` scales
    the source in the mix: 0.5 keeps a random half, 2.0 repeats it twice (open-r1's dataset
    mixture, with repeats). `system_prompt` applies to every sample of this source that has
    none of its own."""

    path: str
    fields: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    system_prompt: str | None = None
    max_samples: int | None = None

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        unknown = set(self.fields) - {"messages", "prompt", "response", "reasoning", "answer", "system"}
        if unknown:
            raise ValueError(f"fields: unknown key(s) {sorted(unknown)}; use messages, prompt, "
                             "response, reasoning, answer, system")


@dataclass
class StyleConfig:
    """format: `r1` keeps `<think>\\nreasoning\\n</think>\\n\\nanswer`; `short` trains the answer
    alone (reasoning removed); `v3_mix` makes two samples per instance as in DeepSeek-V3 sec. 5.1:
    <problem, short answer> and <reflection system prompt, problem, R1 response>.
    `system_prompt`: a system prompt for every sample without one (per-source prompts win)."""

    format: Literal["r1", "short", "v3_mix"] = "r1"
    reflection_system_prompt: str = REFLECTION_SYSTEM_PROMPT
    system_prompt: str | None = None


@dataclass
class LengthConfig:
    """max_tokens: budget on the assistant turn in tokens (null = none); over_budget `drop`
    removes longer samples, `cap` cuts their reasoning so the turn fits (the answer is kept).
    think_for_n: append "Think for N tokens." (L1, arXiv 2503.04697) to the user prompt with N the
    sample's real reasoning length in tokens, so a budget can be asked for at inference."""

    max_tokens: int | None = None
    over_budget: Literal["drop", "cap"] = "drop"
    think_for_n: bool = False
    think_for_n_template: str = "Think for {n} tokens."

    def __post_init__(self):
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or null, got {self.max_tokens}")
        if "{n}" not in self.think_for_n_template:
            raise ValueError("think_for_n_template must contain {n}")


@dataclass
class LoraSettings:
    """LoRA through PEFT. quantize_4bit: QLoRA (NF4 base via bitsandbytes, CUDA only).
    merge: also write the merged full model (final/) next to the adapter (adapter/)."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    quantize_4bit: bool = False
    merge: bool = False


@dataclass
class SFTRecipe:
    """model: our checkpoint directory or any local HF causal-LM directory. tokenizer: its own
    directory (default: the model's). out_dir gets config.yaml (resolved), metrics.jsonl,
    checkpoints/ (TRL's, for resume), final/ (HF layout; with LoRA and no merge, adapter/).
    mtp_loss_weight: keep our MTP loss on during SFT with this weight (null/0 = off).
    bias_update_speed: gamma of the auxiliary-loss-free expert-bias update after each optimizer
    step (null = the model config's; 0 = frozen, loads still measured)."""

    model: str = ""
    data: list[SFTSource] = field(default_factory=list)
    tokenizer: str | None = None
    out_dir: str = "runs/sft"
    seed: int = 0
    style: StyleConfig = field(default_factory=StyleConfig)
    length: LengthConfig = field(default_factory=LengthConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    mtp_loss_weight: float | None = None
    bias_update_speed: float | None = None
    resume: bool = False
    trl: dict[str, Any] = field(default_factory=dict)
