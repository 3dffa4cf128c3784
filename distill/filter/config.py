"""What `distillery filter` reads: the recipe's `filter:` section, as checked dataclasses.

    load_config(FilterConfig, "recipe.yaml", overrides, section="filter")

Groups: where the samples come from (`inputs`, `fields`), how they are verified (`verify`),
the R1 hygiene rules (`hygiene`), dedup and decontamination (`dedup`, `decontam`), which
correct samples become SFT rows (`selection`), the RL prompt band (`rl`) and the output form
(`output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Field names of the sample-row contract (shared/DESIGN.md) that a field map may rename.
SAMPLE_FIELDS = ("id", "problem_id", "sample_index", "prompt", "problem", "completion", "reasoning",
                 "answer_text", "finish_reason", "prompt_tokens", "completion_tokens", "reference",
                 "kind", "teacher", "source", "style", "generations", "correct")


@dataclass
class VerifyConfig:
    """Verification through `verifiers.VerifierPool`.

    workers / timeout_s: the pool's processes and hard per-sample deadline.
    batch_rows: input rows read, verified and stored per step (a kill loses at most one batch).
    options: per-kind verifier options, e.g. {code: {test_timeout_s: 2}}.
    use_given: take correctness from the input's `correct` field (e.g. OpenR1-Math's
        `correctness_math_verify`) instead of running a verifier; rows without it are verified.
    """

    workers: int | None = None
    timeout_s: float = 10.0
    batch_rows: int = 256
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_given: bool = False

    def __post_init__(self):
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")


@dataclass
class HygieneConfig:
    """The R1 paper's SFT filters (arXiv 2501.12948 §2.3.3) plus truncation and repetition.
    Each rule has a name (the reject reason) and is off when its threshold is null / false.
    The paper gives no thresholds; these defaults are ours.

    think_format: exactly one closed think block at the start (`verifiers.format`).
    truncated: finish_reason == "length", or the think block never closed.
    empty_answer: nothing after `</think>`.
    language_min_share: least share of target-language words in the reasoning (`language`).
    max_paragraph_chars: longest allowed reasoning paragraph (`long_paragraph`).
    max_code_blocks: fenced code blocks allowed in the reasoning of a non-code problem
        (`code_in_reasoning`).
    max_ngram_repetition: share of word `repetition_n`-grams repeating an earlier one
        (`repetition`); max_line_repetition: share of non-empty reasoning lines (of at least
        `min_line_chars`) that repeat an earlier line (`repeated_lines`).
    think_in_prompt: the chat template opened `<think>` in the prompt (R1-distill templates), for
        inputs whose rows do not say so themselves (a row's `think_opened`, as generate writes it, wins).
    """

    think_format: bool = True
    truncated: bool = True
    empty_answer: bool = True
    language: str = "en"
    language_min_share: float | None = 0.95
    max_paragraph_chars: int | None = 3000
    max_code_blocks: int | None = 0
    repetition_n: int = 10
    max_ngram_repetition: float | None = 0.2
    max_line_repetition: float | None = 0.3
    min_line_chars: int = 20
    think_in_prompt: bool = False

    def __post_init__(self):
        if self.repetition_n < 1:
            raise ValueError(f"repetition_n must be >= 1, got {self.repetition_n}")
        for name in ("language_min_share", "max_ngram_repetition", "max_line_repetition"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] or null, got {value}")


@dataclass
class DedupConfig:
    """Exact duplicates (hash of the normalised completion) and near duplicates (MinHash over
    word `shingle`-grams, LSH with `bands` x rows; a pair whose estimated Jaccard similarity is
    >= `threshold` is a duplicate). The first sample in input order is kept.
    scope: "problem" compares samples of one problem; "global" all samples."""

    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    shingle: int = 5
    num_perm: int = 128
    bands: int = 32
    scope: Literal["problem", "global"] = "problem"

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm {self.num_perm} must be a multiple of bands {self.bands}")


@dataclass
class DecontamConfig:
    """Problems sharing a word `ngram`-gram with a benchmark question are dropped (s1 / open-r1
    use 8). benchmarks: files (JSONL/Parquet/CSV/datasets dir, with a question/problem column),
    evals benchmark names with a path (`math500=data/math500.jsonl`), or synthetic names
    (`synthetic:arithmetic?n=500&split=test`)."""

    benchmarks: list[str] = field(default_factory=list)
    ngram: int = 8

    def __post_init__(self):
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")


@dataclass
class SelectionConfig:
    """Which correct, clean, unique samples become SFT rows.

    policy: all | shortest (Kimi k1.5's long2short: the shortest correct per problem) |
        k_shortest (the `k` shortest). Ties in length go to the lower sample_index.
    max_per_problem: at most m rows per problem after the policy (null: no cap).
    max_tokens + budget_mode: a per-sample completion-token budget. drop: samples over it are
        rejected. keep_under: samples over it are rejected unless none of the problem's is under,
        then its shortest one stays (no problem is lost to the budget).
    pairing: DeepSeek-V3's two sample types per problem (§5.1): off | both (keep a problem only
        with a correct sample of each of `styles`, selecting within each style) | prefer (the
        `prefer` style's samples when the problem has one, else the others).
    mix: target shares of styles in the SFT set, e.g. {reflective: 0.7, plain: 0.3}; the
        largest set with those shares is kept (which rows go: a seeded hash of the id).
    """

    policy: Literal["all", "shortest", "k_shortest"] = "all"
    k: int = 2
    max_per_problem: int | None = None
    max_tokens: int | None = None
    budget_mode: Literal["drop", "keep_under"] = "drop"
    pairing: Literal["off", "both", "prefer"] = "off"
    styles: list[str] = field(default_factory=lambda: ["reflective", "plain"])
    prefer: str = "plain"
    mix: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.max_per_problem is not None and self.max_per_problem < 1:
            raise ValueError(f"max_per_problem must be >= 1 or null, got {self.max_per_problem}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or null, got {self.max_tokens}")
        if any(v < 0 for v in self.mix.values()) or (self.mix and sum(self.mix.values()) <= 0):
            raise ValueError(f"mix shares must be >= 0 with a positive sum, got {self.mix}")
        if self.pairing != "off" and len(set(self.styles)) < 2:
            raise ValueError(f"pairing {self.pairing!r} needs two styles, got {self.styles}")


@dataclass
class RLConfig:
    """The GRPO prompt set: problems whose teacher pass rate lies in [min_pass_rate,
    max_pass_rate] with at least `min_samples` counted verdicts (an unparseable reference or a
    verifier error is not counted)."""

    min_pass_rate: float = 0.1
    max_pass_rate: float = 0.9
    min_samples: int = 2

    def __post_init__(self):
        if not 0.0 <= self.min_pass_rate <= self.max_pass_rate <= 1.0:
            raise ValueError(f"need 0 <= min_pass_rate <= max_pass_rate <= 1, got "
                             f"{self.min_pass_rate}, {self.max_pass_rate}")


@dataclass
class OutputConfig:
    """style: r1 (assistant turn = `<think>\\n` reasoning `\\n</think>\\n\\n` answer) or short
    (the answer only). dataset: also write `sft/` with datasets.save_to_disk. plots: PNGs."""

    style: Literal["r1", "short"] = "r1"
    dataset: bool = True
    plots: bool = True


@dataclass
class FilterConfig:
    """`distillery filter`: teacher samples -> SFT set, RL prompt set, rejected rows, report.

    inputs: sample files: JSONL, Parquet, or directories of them (a `distillery generate`
        RowStore directory of part-NNNNN.jsonl shards).
    out: the output directory (verdict store, sft.jsonl, sft/, rl_prompts.jsonl, rejected.jsonl,
        report.md, summary.json, plots); re-running resumes from its verdict store.
    fields: our field name -> the input's column (SAMPLE_FIELDS), e.g. OpenR1-Math:
        {problem: problem, reference: answer, generations: generations,
         correct: correctness_math_verify}.
    kind: verifier kind for rows without one. prompt_template: the user turn built from a
        `problem` text when a row has no chat `prompt` ({problem} is replaced).
    """

    inputs: list[str] = field(default_factory=list)
    out: str = "runs/filter"
    fields: dict[str, str] = field(default_factory=dict)
    kind: str = "math"
    prompt_template: str = "{problem}"
    progress: bool = True
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    hygiene: HygieneConfig = field(default_factory=HygieneConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self):
        unknown = sorted(set(self.fields) - set(SAMPLE_FIELDS))
        if unknown:
            raise ValueError(f"fields: unknown field(s) {unknown}; known: {list(SAMPLE_FIELDS)}")
        if "{problem}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {problem}")
