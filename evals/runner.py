"""`distillery eval`: every model on every benchmark, k samples per problem, verified, summarised.

    out_dir = run_eval(load_config(EvalConfig, path, overrides, section="eval"))

Order of work: (1) check everything (models, benchmark files and fields, k against pass@k) and
fail before generating anything; (2) per model, generate only the samples that samples.jsonl does
not hold yet, verify them in a VerifierPool and append each row, flushed, so a killed run loses at
most the rows it was generating; (3) compute results.json from the rows and write report.md and
the plots (evals/report.py).

The cache key of a row is (model, benchmark, problem id, sample index, budget) plus `gen_hash`, a
hash of everything that shapes the generation: the model's path, backend and dtype, the sampling
parameters, the prompt as sent, `enable_thinking` and the budget-forcing options. A re-run, or a
new metric, reuses every row whose key matches; changing any of those settings regenerates. Every
sample's seed comes from (seed, benchmark, problem id, sample index, budget), not from its batch,
so regenerated samples equal the ones a full run would have drawn (engine/transformers with
batch_size 1, vLLM always).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from evals.budget import budget_curve, force_budget
from evals.config import EvalConfig, ModelSpec
from evals.generation import (CHUNK, Generator, Sample, check_backend, make_generator,
                              reasoning_tokens, sample_seed)
from evals.metrics import (format_ok, is_truncated, ks_up_to, length_stats, maj_at_k,
                           mean_pass_at_k, pass_at_1, response_stats, split_response)
from evals.report import write_json_atomic, write_report
from evals.store import RowStore
from evals.types import Benchmark, Problem

SAMPLES, RESULTS = "samples.jsonl", "results.json"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- seams onto the benchmark loaders (evals/benchmarks.py) -------------------------------------

def _load_benchmark(spec) -> Benchmark:
    from evals.benchmarks import load_benchmark

    return load_benchmark(spec.name, spec.path, field_map=spec.field_map, seed=spec.seed,
                          limit=spec.limit)


def _format_prompt(benchmark: Benchmark, problem: Problem) -> str:
    from evals.benchmarks import format_prompt

    return format_prompt(benchmark, problem)


def _with_repeat(problem: Problem, repeat: int, seed: int) -> Problem:
    from evals.benchmarks import with_repeat

    return with_repeat(problem, repeat, seed)


# -- planning and validation --------------------------------------------------------------------

@dataclass
class Job:
    """One benchmark, ready to generate: its problems, the sample counts, and how each sample's
    prompt is made. Multiple choice with stored options (GPQA) presents sample j in repeat j's
    option order (simple-evals' n_repeats, docs/verification-and-eval.md §2.5, §6.4), so its
    prompt and gold letter depend on j; everything else has one prompt per problem."""

    name: str
    benchmark: Benchmark
    k: int  # samples per problem
    ks: list[int]  # pass@k / maj@k values
    budget_k: int
    template_hash: str
    seed: int  # the loader's seed, which also orders the choices of later repeats
    wrap: Callable[[str], object]  # user text -> chat messages (or the text itself)
    _cache: dict = field(default_factory=dict)

    def presented(self, pi: int, j: int) -> tuple[Problem, object]:
        """(problem as presented to sample j, its prompt)."""
        key = (pi, j) if self._repeats(pi) else (pi, 0)
        if key not in self._cache:
            problem = self.benchmark.problems[pi]
            if key[1] > 0:
                problem = _with_repeat(problem, key[1], self.seed)
            self._cache[key] = (problem, self.wrap(_format_prompt(self.benchmark, problem)))
        return self._cache[key]

    def _repeats(self, pi: int) -> bool:
        problem = self.benchmark.problems[pi]
        return problem.kind == "choice" and "options" in problem.meta


def plan(cfg: EvalConfig) -> list[Job]:
    """Check every model and benchmark and build the jobs; raises before anything is generated."""
    if not cfg.models:
        raise ValueError("eval: models: name at least one model to evaluate")
    if not cfg.benchmarks:
        raise ValueError("eval: benchmarks: name at least one benchmark")
    for i, m in enumerate(cfg.models):
        check_backend(m, f"models[{i}] ({m.name})")
        if cfg.budgets and m.backend == "openai":
            raise ValueError(f"models[{i}] ({m.name}): budget forcing needs a backend that "
                             "continues raw text (engine, transformers, vllm), not openai")
    return [_job(cfg, i, spec) for i, spec in enumerate(cfg.benchmarks)]


def _job(cfg: EvalConfig, i: int, spec) -> Job:
    where = f"benchmarks[{i}] ({spec.name})"
    if spec.path is not None and not Path(spec.path).exists():
        raise FileNotFoundError(f"{where}: benchmark file {spec.path} does not exist")
    try:
        bench = _load_benchmark(spec)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{where}: {e}") from e
    except (ValueError, KeyError) as e:
        raise ValueError(f"{where}: {e}") from e
    if not bench.problems:
        raise ValueError(f"{where}: the benchmark has no problems")
    ids = [p.id for p in bench.problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: problem ids are not unique (they key the sample cache)")
    k = spec.k or bench.default_k
    ks = sorted(set(cfg.pass_k)) if cfg.pass_k else ks_up_to(k)
    if ks[-1] > k:
        raise ValueError(f"{where}: pass_k {[x for x in ks if x > k]} needs more samples than the "
                         f"{k} per problem (pass@k needs n >= k samples); raise "
                         f"benchmarks[{i}].k or lower pass_k")
    template = [bench.prompt_template, cfg.chat_template, cfg.enable_thinking, cfg.system_prompt]
    job = Job(spec.name, bench, k, ks, cfg.budget_k or k, _hash(template), spec.seed,
              lambda text: _prompt(cfg, text))
    try:
        for pi in range(len(bench.problems)):
            job.presented(pi, 0)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{where}: cannot format the prompt template: {e}") from e
    return job


def _prompt(cfg: EvalConfig, text: str):
    if not cfg.chat_template:
        return text
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return system + [{"role": "user", "content": text}]


# -- the sample cache ---------------------------------------------------------------------------

def sample_key(row: dict) -> tuple:
    """The cache key of an eval sample row (see the module doc)."""
    return (row["model"], row["benchmark"], row["problem_id"], row["sample_index"],
            row["budget"], row["gen_hash"])


# -- generation ---------------------------------------------------------------------------------

class _Work:
    """Generation for one model: the generator is loaded on first need (a fully cached model is
    never loaded), and rows are verified and appended chunk by chunk."""

    def __init__(self, cfg: EvalConfig, spec: ModelSpec, store: RowStore, pool):
        self.cfg, self.spec, self.store, self.pool = cfg, spec, store, pool
        self.generator: Generator | None = None

    def key(self, job: Job, pi: int, j: int, budget: int | None) -> tuple:
        """The cache key of one sample: its identity plus the hash of what shapes it."""
        s = self.spec
        problem, prompt = job.presented(pi, j)
        parts = {"model": [s.path, s.backend, s.dtype], "sampling": asdict(self.cfg.sampling),
                 "prompt": prompt, "reference": problem.reference,
                 "thinking": self.cfg.enable_thinking}
        if budget is not None:
            parts["budget"] = [self.cfg.budget_waits, self.cfg.budget_answer_tokens]
        return (s.name, job.name, problem.id, j, budget, _hash(parts))

    def missing(self, job: Job, budget: int | None) -> list[tuple]:
        """(problem index, sample index, key) of every row not in the cache."""
        n = job.k if budget is None else job.budget_k
        keys = [(pi, j, self.key(job, pi, j, budget))
                for pi in range(len(job.benchmark.problems)) for j in range(n)]
        return [(pi, j, key) for pi, j, key in keys if self.store.get(key) is None]

    def run(self, job: Job, budget: int | None) -> None:
        todo = self.missing(job, budget)
        if not todo:
            return
        if self.generator is None:
            self.generator = make_generator(self.spec, enable_thinking=self.cfg.enable_thinking)
        label = f"eval {self.spec.name}/{job.name}" + (f" budget={budget}" if budget else "")
        bar = tqdm(total=len(todo), desc=label, unit="sample", disable=None, mininterval=1.0)
        size = CHUNK[self.spec.backend] * self.spec.batch_size
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            samples = self._generate(job, chunk, budget)
            verdicts = self._verify(job, chunk, samples)
            self.store.append([self._row(job, c, s, v, budget)
                               for c, s, v in zip(chunk, samples, verdicts)])
            bar.update(len(chunk))
        bar.close()

    def _seed(self, job: Job, pi: int, j: int, budget: int | None) -> int:
        problem_id = job.benchmark.problems[pi].id
        return sample_seed(self.cfg.sampling.seed, job.name, problem_id, j, budget)

    def _generate(self, job: Job, chunk, budget) -> list[Sample]:
        prompts = [job.presented(pi, j)[1] for pi, j, _ in chunk]
        seeds = [self._seed(job, pi, j, budget) for pi, j, _ in chunk]
        if budget is None:
            out = self.generator.generate(prompts, 1, self.cfg.sampling, seeds=[[s] for s in seeds])
            return [row[0] for row in out]
        return force_budget(self.generator, prompts, budget, self.cfg.sampling, seeds=seeds,
                            num_waits=self.cfg.budget_waits,
                            answer_max_tokens=self.cfg.budget_answer_tokens)

    def _verify(self, job: Job, chunk, samples: list[Sample]) -> list:
        """Verdicts in chunk order; one pool.map per verifier kind. A prompt that opened
        `<think>` is put back in front of the completion, so the verifier sees the response."""
        problems = [job.presented(pi, j)[0] for pi, j, _ in chunk]
        verdicts = [None] * len(chunk)
        for kind in sorted({p.kind for p in problems}):
            idx = [i for i, p in enumerate(problems) if p.kind == kind]
            responses = [("<think>\n" if samples[i].think_opened else "") + samples[i].text
                         for i in idx]
            references = [problems[i].reference for i in idx]
            for i, v in zip(idx, self.pool.map(kind, responses, references)):
                verdicts[i] = v
        return verdicts

    def _reasoning_tokens(self, sample: Sample, reasoning: str) -> int | None:
        return reasoning_tokens(self.generator, sample, reasoning)

    def _row(self, job: Job, chunk_item, sample: Sample, verdict, budget) -> dict:
        pi, j, key = chunk_item
        (problem, prompt), s = job.presented(pi, j), self.spec
        reasoning, answer, _ = split_response(sample.text, sample.think_opened)
        sampling = asdict(self.cfg.sampling)
        return {
            "id": "/".join([s.name, job.name, problem.id, str(j)]
                           + ([f"b{budget}"] if budget else [])),
            "model": s.name, "benchmark": job.name, "problem_id": problem.id, "sample_index": j,
            "budget": budget, "gen_hash": key[-1], "prompt": prompt,
            "completion": sample.text, "think_opened": sample.think_opened,
            "reasoning": reasoning, "answer_text": answer, "finish_reason": sample.finish_reason,
            "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
            "reasoning_tokens": self._reasoning_tokens(sample, reasoning),
            "reference": problem.reference, "kind": problem.kind,
            "permutation": problem.meta.get("permutation"),
            "teacher": {"backend": s.backend, "model": s.name, "path": s.path, "sampling": sampling,
                        "seed": self._seed(job, pi, j, budget)},
            "verdicts": {problem.kind: asdict(verdict)}, "correct": bool(verdict.correct),
            "extracted": verdict.extracted,
            "format_ok": format_ok(sample.text, sample.think_opened),
            "truncated": is_truncated(sample.text, sample.finish_reason, sample.think_opened),
        }

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
            self.generator = None


# -- results ------------------------------------------------------------------------------------

def job_rows(store: RowStore, work: _Work, job: Job, budget: int | None) -> list[dict]:
    """This run's rows of one model x benchmark (x budget), in problem then sample order."""
    n = job.k if budget is None else job.budget_k
    rows = []
    for pi in range(len(job.benchmark.problems)):
        for j in range(n):
            row = store.get(work.key(job, pi, j, budget))
            assert row is not None, f"sample {pi}/{j} of {job.name} missing after generation"
            rows.append(row)
    return rows


def _vote_answer(row: dict) -> str | None:
    """What a sample votes for in maj@k: the extracted answer, and for multiple choice shown in a
    shuffled order the ORIGINAL option index, so repeats with different orders agree."""
    answer = row["extracted"]
    if answer is None or row["kind"] != "choice":
        return answer
    letter, perm = answer.strip().upper(), row.get("permutation")
    if perm and len(letter) == 1 and 0 <= ord(letter) - ord("A") < len(perm):
        return f"option {perm[ord(letter) - ord('A')]}"
    return letter


def _equivalence(pool, answers: dict[str, list[str | None]], kind: str):
    """maj@k's equivalence for one benchmark (answers per problem): for math, every (later,
    earlier) pair of distinct answers of a problem verified in one pool.map (a timeout counts as
    not equivalent); for multiple choice, the same option. None for kinds without a vote (code)."""
    if kind == "choice":
        return lambda a, b: a == b
    if kind != "math":
        return None
    pairs: set[tuple[str, str]] = set()
    for values in answers.values():
        seen: list[str] = []
        for text in (a.strip() for a in values if a is not None):
            if text not in seen:
                pairs.update((text, earlier) for earlier in seen)
                seen.append(text)
    ordered = sorted(pairs)
    verdicts = pool.map("math", ["\\boxed{" + a + "}" for a, _ in ordered],
                        [b for _, b in ordered]) if ordered else []
    table = {p: v.correct for p, v in zip(ordered, verdicts)}
    return lambda a, b: table.get((a, b), False)


def summarize(job: Job, rows: list[dict], pool) -> dict:
    """pass@1 ± se, pass@k, maj@k, lengths and rates for one model x benchmark."""
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    correct = {pid: [r["correct"] for r in rs] for pid, rs in by_problem.items()}
    mean, se = pass_at_1(list(correct.values()))
    counts = [(len(c), sum(c)) for c in correct.values()]
    answers = {pid: [_vote_answer(r) for r in rs] for pid, rs in by_problem.items()}
    kinds = {r["kind"] for r in rows}
    equivalent = _equivalence(pool, answers, kinds.pop()) if len(kinds) == 1 else None
    maj = None
    if equivalent is not None:
        maj = {str(k): sum(maj_at_k(answers[pid], correct[pid], k, equivalent)
                           for pid in by_problem) / len(by_problem) for k in job.ks}
    return {
        "num_problems": len(by_problem), "samples_per_problem": job.k, "num_samples": len(rows),
        "pass@1": {"mean": mean, "se": se},
        "pass@k": {str(k): mean_pass_at_k(counts, k) for k in job.ks},
        "maj@k": maj,
        "completion_tokens": length_stats(r["completion_tokens"] for r in rows),
        "reasoning_tokens": length_stats(r["reasoning_tokens"] for r in rows),
        **response_stats(rows),
    }


def run_eval(cfg: EvalConfig) -> Path:
    """Run (or resume) an evaluation; returns the output directory."""
    from recipes.config import config_to_dict, save_config
    from verifiers import VerifierPool

    jobs = plan(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "eval_config.yaml")
    store = RowStore(out / SAMPLES, key=sample_key)
    results, all_rows = [], []
    with VerifierPool(cfg.verify_workers, cfg.verify_timeout_s, progress=False) as pool:
        for spec in cfg.models:
            work = _Work(cfg, spec, store, pool)
            try:
                for job in jobs:
                    for budget in [None, *cfg.budgets]:
                        work.run(job, budget)
            finally:
                work.close()
            for job in jobs:
                rows = job_rows(store, work, job, None)
                curve_rows = [r for b in cfg.budgets for r in job_rows(store, work, job, b)]
                all_rows += rows
                results.append({**_provenance(cfg, spec, job), **summarize(job, rows, pool),
                                "budget_curve": budget_curve(curve_rows) if curve_rows else []})
    document = {"config": config_to_dict(cfg), "samples": SAMPLES, "results": results}
    write_json_atomic(out / RESULTS, document)
    write_report(document, all_rows, out)
    return out


def _provenance(cfg: EvalConfig, spec: ModelSpec, job: Job) -> dict:
    return {"model": spec.name, "model_path": spec.path, "backend": spec.backend,
            "benchmark": job.name, "benchmark_revision": job.benchmark.revision,
            "kind": job.benchmark.kind, "seed": cfg.sampling.seed,
            "sampling": asdict(cfg.sampling), "chat_template": cfg.chat_template,
            "enable_thinking": cfg.enable_thinking, "prompt_template_hash": job.template_hash}
