"""What `distillery generate` reads: the recipe's `generate:` section.

    cfg = load_config(GenerateConfig, "recipes/generate/tiny.yaml", overrides, section="generate")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distill.generate.templates import PromptConfig
from evals.config import ModelSpec, SamplingParams


def _teacher() -> ModelSpec:
    return ModelSpec("teacher", "")


def _sampling() -> SamplingParams:
    return SamplingParams(max_new_tokens=1024)  # R1 uses 32,768; a CPU-sized default


@dataclass
class GenerateConfig:
    """Teacher long-CoT generation: n samples per problem into a resumable sharded row store.

    Problems (distill/generate/problems.py):
        problems: a file (JSONL/JSON/Parquet/CSV), a datasets.save_to_disk directory,
            `synthetic:<task>?n=..` (train split by default) or `<benchmark>:<path>`.
        field_map: our field (problem, reference, id, kind) -> the file's column; public schemas
            (NuminaMath/OpenR1, GSM8K, MATH, AIME, code with tests) need none.
        kind: one verifier kind for every problem (None: the schema's or the kind column's).
        limit: the first `limit` problems only. dedupe: drop repeated problem texts (files
            without an id column) instead of failing. problems_seed: synthetic tasks' seed.
    Teacher and sampling:
        teacher: an evals ModelSpec (name, path, backend engine|transformers|vllm|openai, dtype,
            device, batch_size, base_url, api_key_env, options). openai options: concurrency,
            timeout_s, max_retries, backoff_s, max_backoff_s, max_requests (the run's request
            budget), extra_body, prompt_opens_think (evals/openai_client.py); engine: use_mtp;
            vllm: LLM(...) arguments (tensor_parallel_size, data_parallel_size, ...) and
            n_per_request. The openai key is read from the variable api_key_env names.
        sampling: temperature, top_p, top_k, max_new_tokens, seed; sample j of problem p is
            seeded by (seed, p, j), so a resumed run draws what a full run would have.
        n: samples per problem. enable_thinking: the chat template's switch.
        prompt: PromptConfig (template r1 | v3 | l1 | file).
    Budget forcing (s1, evals/budget.py; engine/transformers/vllm only):
        budget: cap on thinking tokens (None: off); budget_waits: "Wait" extensions;
        budget_answer_tokens: the answer's token limit after the forced `</think>`.
    Output:
        out_dir: samples/ (part-NNNNN.jsonl shards of shard_rows rows), generate_config.yaml,
            summary.json, failures.jsonl. durable: fsync every row (slower; survives power loss,
            not only kill -9). export: also write samples.parquet and/or a datasets dir
            (samples_dataset/) at the end. chunk: samples per backend call (None: the backend's
            default, evals.runner.CHUNK x batch_size).
    """

    problems: str = ""
    field_map: dict[str, str] | None = None
    kind: str | None = None
    limit: int | None = None
    dedupe: bool = False
    problems_seed: int = 0
    teacher: ModelSpec = field(default_factory=_teacher)
    sampling: SamplingParams = field(default_factory=_sampling)
    n: int = 1
    enable_thinking: bool = True
    prompt: PromptConfig = field(default_factory=PromptConfig)
    budget: int | None = None
    budget_waits: int = 0
    budget_answer_tokens: int = 64
    out_dir: str = "runs/generate"
    shard_rows: int = 10_000
    durable: bool = False
    export: list[Literal["parquet", "datasets"]] = field(default_factory=list)
    chunk: int | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n (samples per problem) must be >= 1, got {self.n}")
        if self.shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {self.shard_rows}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if self.budget is not None:
            if self.budget < 1 or self.budget_waits < 0 or self.budget_answer_tokens < 1:
                raise ValueError("budget must be >= 1, budget_waits >= 0 and "
                                 "budget_answer_tokens >= 1")
            if self.teacher.backend == "openai":
                raise ValueError("budget forcing continues raw text; teacher.backend openai "
                                 "cannot do it (use engine, transformers or vllm)")
        if len(set(self.export)) != len(self.export):
            raise ValueError(f"export: repeated entries {self.export}")
