"""`distillery generate`: n teacher samples per problem into a sharded, resumable row store.

    out_dir = run_generate(load_config(GenerateConfig, path, overrides, section="generate"))

Order of work: (1) check everything before any generation: the problems (fields, ids), the
template on every problem, the teacher's path or endpoint (an openai endpoint is asked for its
models), and that rows already in out_dir were made by the same teacher, sampling and prompts;
(2) generate only the (problem_id, sample_index) pairs the store lacks, appending each row,
flushed, as soon as its sample is done, so a `kill -9` loses at most the samples in flight and a
re-run never writes a row twice; (3) write summary.json (and the optional exports).

Rows follow DESIGN.md's sample-row contract: id, problem_id, sample_index, prompt (chat
messages), completion (the raw new text; `think_opened` says the prompt opened `<think>`),
reasoning, answer_text, think_closed, finish_reason, truncated, prompt_tokens,
completion_tokens, reasoning_tokens, reference, kind, gen_hash, and teacher {backend, model,
path, sampling, seed, template {name, variant, hash, budget}, budget_forcing}.

A sample the backend could not produce (the openai backend after its retries, or its request
budget spent) is not written: it goes to failures.jsonl with its cause, is counted in the
summary, and is generated again by the next run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from distill.generate.config import GenerateConfig
from distill.generate.problems import load_problems
from distill.generate.summary import export_rows, format_summary, summarize
from distill.generate.templates import Template
from evals.budget import force_budget
from evals.generation import CHUNK, check_backend, make_generator, reasoning_tokens, sample_seed
from evals.metrics import is_truncated, split_response
from evals.store import RowStore
from evals.types import Problem

SAMPLES, SUMMARY, FAILURES, CONFIG = "samples", "summary.json", "failures.jsonl", \
    "generate_config.yaml"


def row_key(row: dict) -> tuple:
    return (row["problem_id"], row["sample_index"])


def gen_hash(cfg: GenerateConfig) -> str:
    """What shapes a sample besides its prompt and seed: the teacher and the sampling. The
    openai options (concurrency, retries) and batch sizes do not change what is drawn."""
    t = cfg.teacher
    parts = {"teacher": [t.backend, t.path, t.dtype, t.base_url,
                         t.options.get("use_mtp", False) if t.backend == "engine" else None],
             "sampling": asdict(cfg.sampling), "thinking": cfg.enable_thinking,
             "force_think": cfg.prompt.force_think,
             "budget": [cfg.budget, cfg.budget_waits, cfg.budget_answer_tokens]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class _Plan:
    """The checked inputs of a run: problems, template, and every sample's prompt and seed."""

    def __init__(self, cfg: GenerateConfig):
        if not cfg.problems:
            raise ValueError("generate: problems: name the problems to generate for")
        if not cfg.teacher.path:
            raise ValueError("generate: teacher.path: name the teacher checkpoint (or, for "
                             "backend openai, the served model name)")
        check_backend(cfg.teacher, "generate: teacher")
        self.problems: list[Problem] = load_problems(
            cfg.problems, cfg.field_map, kind=cfg.kind, limit=cfg.limit, dedupe=cfg.dedupe,
            seed=cfg.problems_seed)
        if not self.problems:
            raise ValueError(f"generate: {cfg.problems}: no problems")
        self.template = Template(cfg.prompt)
        for p in self.problems:
            try:
                self.template.check(p)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"generate: prompt template on problem {p.id}: {e}") from e
        self.cfg, self.n, self.hash = cfg, cfg.n, gen_hash(cfg)

    def seed(self, problem: Problem, j: int) -> int:
        return sample_seed(self.cfg.sampling.seed, problem.id, j)

    def prompt(self, problem: Problem, j: int) -> tuple[list[dict], dict]:
        return self.template.build(problem, j, self.cfg.sampling.seed)

    def check_store(self, store: RowStore) -> None:
        """Rows already written must come from this teacher/sampling and this prompt."""
        for p in self.problems:
            for j in range(self.n):
                row = store.get((p.id, j))
                if row is None:
                    continue
                where = f"{store.path}: row {row.get('id')!r}"
                if row.get("gen_hash") != self.hash:
                    raise ValueError(f"{where} was made with another teacher or sampling "
                                     f"(teacher {row.get('teacher', {}).get('path')!r}, sampling "
                                     f"{row.get('teacher', {}).get('sampling')}); use a new "
                                     "out_dir, or restore the settings to resume")
                if row.get("prompt") != self.prompt(p, j)[0]:
                    raise ValueError(f"{where} has another prompt than the problems and template "
                                     "give now (the problem text or the template changed); use "
                                     "a new out_dir")


def run_generate(cfg: GenerateConfig) -> Path:
    """Run (or resume) teacher generation; returns the output directory."""
    from recipes.config import save_config

    plan = _Plan(cfg)
    out = Path(cfg.out_dir)
    store = RowStore(out / SAMPLES, key=row_key, shard_rows=cfg.shard_rows, durable=cfg.durable)
    plan.check_store(store)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / CONFIG)
    todo = [(p, j) for p in plan.problems for j in range(cfg.n) if (p.id, j) not in store]
    run = {"new_rows": 0, "new_tokens": 0, "elapsed_s": 0.0, "failures": Counter(), "retries": 0}
    start = time.perf_counter()
    if todo:
        _generate(plan, store, todo, out, run)
    run["elapsed_s"] = time.perf_counter() - start
    wanted = {(p.id, j) for p in plan.problems for j in range(cfg.n)}
    rows = [r for r in store if row_key(r) in wanted]
    summary = summarize(rows, len(wanted), run)
    from evals.report import write_json_atomic

    write_json_atomic(out / SUMMARY, summary)
    print(format_summary(summary))
    if cfg.export and summary["missing_rows"] == 0:
        for path in export_rows(rows, out, list(cfg.export)):
            print(f"exported {path}")
    elif cfg.export:
        print(f"export skipped: {summary['missing_rows']} rows are still missing")
    return out


def _generate(plan: _Plan, store: RowStore, todo: list, out: Path, run: dict) -> None:
    from tqdm.auto import tqdm

    cfg = plan.cfg
    generator = make_generator(cfg.teacher, enable_thinking=cfg.enable_thinking,
                               force_think=cfg.prompt.force_think, on_error="mark")
    if generator.thread_choice is not None:
        print(f"{cfg.teacher.backend} decode on CPU: {generator.thread_choice.reason}")
    bar = tqdm(total=len(todo), desc=f"generate {cfg.teacher.name}", unit="sample",
               disable=None, mininterval=1.0)
    started = time.perf_counter()
    try:
        if hasattr(generator, "check"):
            generator.check()
        size = cfg.chunk or CHUNK.get(cfg.teacher.backend, 16) * cfg.teacher.batch_size
        for first in range(0, len(todo), size):
            chunk = todo[first:first + size]
            prompts = [plan.prompt(p, j) for p, j in chunk]
            seeds = [plan.seed(p, j) for p, j in chunk]
            for i, sample in _samples(generator, cfg, [m for m, _ in prompts], seeds):
                (problem, j), (messages, info) = chunk[i], prompts[i]
                if sample.error is not None:
                    _record_failure(out, problem, j, sample.error, run)
                else:
                    row = _row(plan, generator, problem, j, messages, info, seeds[i], sample)
                    run["new_rows"] += store.append([row])
                    run["new_tokens"] += sample.completion_tokens
                bar.update(1)
                elapsed = time.perf_counter() - started
                bar.set_postfix(tok_s=f"{run['new_tokens'] / max(elapsed, 1e-9):.1f}",
                                failed=sum(run["failures"].values()), refresh=False)
    finally:
        bar.close()
        run["retries"] = getattr(generator, "retries", 0)
        generator.close()


def _samples(generator, cfg: GenerateConfig, prompts, seeds):
    if cfg.budget is None:
        yield from generator.iter_generate(prompts, seeds, cfg.sampling)
        return
    samples = force_budget(generator, prompts, cfg.budget, cfg.sampling, seeds=seeds,
                           num_waits=cfg.budget_waits, answer_max_tokens=cfg.budget_answer_tokens)
    yield from enumerate(samples)


def _record_failure(out: Path, problem: Problem, j: int, error: str, run: dict) -> None:
    cause = error.split(":", 1)[0]
    run["failures"][cause] += 1
    line = json.dumps({"problem_id": problem.id, "sample_index": j, "cause": cause,
                       "error": error, "time": time.time()}, ensure_ascii=False)
    with open(out / FAILURES, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _row(plan: _Plan, generator, problem: Problem, j: int, messages, info, seed, sample) -> dict:
    cfg = plan.cfg
    reasoning, answer, closed = split_response(sample.text, sample.think_opened)
    teacher = {"backend": cfg.teacher.backend, "model": cfg.teacher.name,
               "path": cfg.teacher.path, "sampling": asdict(cfg.sampling), "seed": seed,
               "template": {"budget": None, **info},
               "budget_forcing": None if cfg.budget is None else
               {"budget": cfg.budget, "waits": cfg.budget_waits,
                "answer_tokens": cfg.budget_answer_tokens}}
    return {
        "id": f"{problem.id}/{j}", "problem_id": problem.id, "sample_index": j,
        "prompt": messages, "completion": sample.text, "think_opened": sample.think_opened,
        "reasoning": reasoning, "answer_text": answer, "think_closed": closed,
        "finish_reason": sample.finish_reason,
        "truncated": is_truncated(sample.text, sample.finish_reason, sample.think_opened),
        "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
        "reasoning_tokens": reasoning_tokens(generator, sample, reasoning),
        "reference": problem.reference, "kind": problem.kind, "gen_hash": plan.hash,
        "teacher": teacher,
    }
