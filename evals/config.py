"""What `distillery eval` reads: the recipe's `eval:` section, as checked dataclasses.

    load_config(EvalConfig, "recipes/eval/tiny.yaml", overrides, section="eval")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

BACKENDS = ("engine", "transformers", "vllm", "openai")


@dataclass
class ModelSpec:
    """One model to evaluate.

    name: its label in samples.jsonl, results.json and the report (unique within a run).
    path: a local checkpoint directory (engine, transformers, vllm); for `openai` the model name
        the endpoint serves.
    backend: engine (the in-repo KV-cache engine, our checkpoints), transformers
        (AutoModelForCausalLM + generate, any local HF model), vllm (needs `pip install vllm`),
        openai (an OpenAI-compatible /v1/chat/completions endpoint).
    dtype: torch dtype name for local backends; None = the checkpoint's own.
    device: None = cuda when available, else cpu.
    batch_size: sequences per engine/transformers call. 1 gives every sample its own seeded
        generator, so a resumed eval redraws exactly the same tokens; above 1 a batch is seeded
        by its first sample, faster on a GPU but only reproducible for the same batches.
    base_url: openai: the endpoint, e.g. http://localhost:8000/v1; api_key_env names the
        environment variable with the key (unset: no Authorization header).
    options: extra keyword arguments for the backend (vLLM's `LLM(...)`, e.g.
        tensor_parallel_size; openai: concurrency, timeout_s).
    """

    name: str
    path: str
    backend: Literal["engine", "transformers", "vllm", "openai"] = "engine"
    dtype: str | None = None
    device: str | None = None
    batch_size: int = 1
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name:
            raise ValueError("model name must not be empty")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url (e.g. http://localhost:8000/v1)")


@dataclass
class BenchmarkSpec:
    """One benchmark (`evals.benchmarks.load_benchmark` names: gsm8k, math500, aime24, aime25,
    amc, gpqa, jsonl, synthetic:<task>?n=..&split=..&seed=..).

    path: the local file or HF dataset directory (synthetic tasks need none).
    limit: evaluate the first `limit` problems only.
    k: samples per problem (the DeepSeek k, the n of pass@k); None = the benchmark's default
        (open-r1: AIME 64, MATH-500 4, GPQA 8).
    field_map: for jsonl: our field -> the file's field, e.g. {question: prompt, reference: gold}.
    seed: the loader's seed (GPQA option shuffles, synthetic tasks).
    """

    name: str
    path: str | None = None
    limit: int | None = None
    k: int | None = None
    field_map: dict[str, str] | None = None
    seed: int = 0

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise ValueError(f"k (samples per problem) must be >= 1, got {self.k}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class SamplingParams:
    """DeepSeek-R1's evaluation protocol by default (README; docs/verification-and-eval.md
    §2.4): temperature 0.6, top-p 0.95, 32,768 new tokens. Each sample's seed derives from
    (seed, model, benchmark, problem id, sample index), never from its batch."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 32768
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class EvalConfig:
    """An evaluation run: every model on every benchmark.

    Models and data:
        models: ModelSpec list; benchmarks: BenchmarkSpec list.
    Generation:
        sampling: SamplingParams.
        chat_template: wrap each prompt as a user message in the tokenizer's chat template;
            False feeds the formatted prompt text as is (base models).
        enable_thinking: the template's `enable_thinking` variable: the generation prompt ends in
            `<think>\\n`, as DeepSeek-R1 recommends (models otherwise sometimes skip thinking).
        system_prompt: None = no system message (DeepSeek's advice).
    Metrics:
        pass_k: the k of pass@k and maj@k; empty = 1, 2, 4, ... up to each benchmark's samples.
            A k above a benchmark's samples per problem is an error before generation.
    Budget forcing (s1, arXiv:2501.19393 §3.1), evals/budget.py:
        budgets: thinking-token caps to sweep (empty: no sweep). Each sweep point generates
            `budget_k` samples per problem (None = the benchmark's k).
        budget_waits: how many times an early end of thinking is replaced by "Wait".
        budget_answer_tokens: the token limit for the answer after the forced `</think>`.
    Verification:
        verify_workers, verify_timeout_s: the VerifierPool's processes and hard per-sample
            deadline.
    Output:
        out_dir: samples.jsonl (the cache: a re-run reuses every matching row), results.json,
            report.md, PNG plots, eval_config.yaml.
    """

    models: list[ModelSpec] = field(default_factory=list)
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    chat_template: bool = True
    enable_thinking: bool = True
    system_prompt: str | None = None
    pass_k: list[int] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    budget_k: int | None = None
    budget_waits: int = 0
    budget_answer_tokens: int = 64
    verify_workers: int = 2
    verify_timeout_s: float = 10.0
    out_dir: str = "runs/eval"

    def __post_init__(self):
        for what, names in (("models", [m.name for m in self.models]),
                            ("benchmarks", [b.name for b in self.benchmarks])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate name(s) {dupes}; names key the results")
        if any(k < 1 for k in self.pass_k):
            raise ValueError(f"pass_k: every k must be >= 1, got {self.pass_k}")
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets: every budget must be >= 1 token, got {self.budgets}")
        if self.budget_k is not None and self.budget_k < 1:
            raise ValueError(f"budget_k must be >= 1, got {self.budget_k}")
        if self.budget_waits < 0 or self.budget_answer_tokens < 1:
            raise ValueError("budget_waits must be >= 0 and budget_answer_tokens >= 1")
        if self.verify_workers < 1 or self.verify_timeout_s <= 0:
            raise ValueError("verify_workers must be >= 1 and verify_timeout_s > 0")
