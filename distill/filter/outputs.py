"""Pass 3: the inputs read again, each sample written where its decision sends it.

    write_outputs(cfg, out, decisions, problems, records)

Files (each written to a temp file and renamed when the pass ends, so a killed run leaves the old
file or none, never half of one):
- sft.jsonl: kept samples in chat form, `messages` = the prompt turns + the assistant turn
  (output.style r1: "<think>\\n{reasoning}\\n</think>\\n\\n{answer}"; short: the answer), with
  provenance columns: id, problem_id, sample_index, source, kind, style, reference (text; code
  tests as JSON), completion_tokens, reasoning_chars, score, extracted, pass_rate, teacher (JSON
  text, so rows of different teachers share one Arrow schema);
- sft/: the same rows via `datasets.save_to_disk` (output.dataset);
- rl_prompts.jsonl: one row per RL problem (first sample's prompt): problem_id, problem, prompt,
  reference, answer (= reference), kind, source, pass_rate, num_samples, num_correct;
- rejected.jsonl: every rejected sample (reject_reason, all reasons, verdict, hygiene measures,
  duplicate_of, contamination, completion) and every bad input row (reject_reason "bad_row",
  where, error).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

from distill.filter.inputs import BadRow, Sample, iter_samples

FILES = ("sft.jsonl", "rl_prompts.jsonl", "rejected.jsonl")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def assistant_content(s: Sample, style: str) -> str:
    if style == "short":
        return s.answer_text
    return f"<think>\n{s.reasoning}\n</think>\n\n{s.answer_text}"


def sft_row(s: Sample, r: dict, problem: dict, style: str) -> dict:
    return {
        "messages": [*s.prompt, {"role": "assistant", "content": assistant_content(s, style)}],
        "id": s.id, "problem_id": s.problem_id, "sample_index": s.sample_index,
        "source": s.source, "kind": s.kind, "style": s.style, "reference": _text(s.reference),
        "completion_tokens": s.completion_tokens, "reasoning_chars": len(s.reasoning),
        "score": r["verdict"]["score"], "extracted": r["verdict"]["extracted"],
        "pass_rate": problem["pass_rate"], "teacher": _text(s.teacher),
    }


def rl_row(s: Sample, p: dict) -> dict:
    return {"problem_id": s.problem_id, "problem": s.problem, "prompt": s.prompt,
            "reference": s.reference, "answer": s.reference, "kind": s.kind, "source": s.source,
            "pass_rate": p["pass_rate"], "num_samples": p["num_samples"],
            "num_correct": p["num_correct"]}


def rejected_row(s: Sample, r: dict, d: dict) -> dict:
    return {"id": s.id, "problem_id": s.problem_id, "sample_index": s.sample_index,
            "where": s.where, "source": s.source, "kind": s.kind,
            "reject_reason": d["reject_reason"], "reasons": d["reasons"], "verdict": r["verdict"],
            "hygiene": r["hygiene"], "duplicate_of": d["duplicate_of"],
            "similarity": d["similarity"], "contamination": r["contamination"],
            "completion_tokens": s.completion_tokens, "completion": s.completion}


def _line(f, row: dict) -> None:
    f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _atomic_files(paths: list[Path], write) -> None:
    """write(*temp_paths) once, then every file renamed into place (model.checkpoint.atomic_write
    nested: a failure anywhere leaves every old file untouched)."""
    from distill.filter.writers import atomic_write

    if not paths:
        return write()
    atomic_write(paths[0], lambda tmp: _atomic_files(paths[1:], lambda *rest: write(tmp, *rest)))


def write_outputs(cfg, out: Path, reader, decisions: dict, problems: dict,
                  records: dict[str, dict]) -> dict[str, int]:
    """Stream the inputs into sft.jsonl, rl_prompts.jsonl, rejected.jsonl; returns row counts."""
    counts = dict.fromkeys(FILES, 0)

    def write(sft_tmp, rl_tmp, rejected_tmp):
        written_rl = set()
        with ExitStack() as stack:
            sft, rl, rejected = (stack.enter_context(open(p, "w", encoding="utf-8"))
                                 for p in (sft_tmp, rl_tmp, rejected_tmp))
            for s in iter_samples(cfg.inputs, reader):
                if isinstance(s, BadRow):
                    _line(rejected, {"reject_reason": "bad_row", "where": s.where, "error": s.error})
                    counts["rejected.jsonl"] += 1
                    continue
                r, d, p = records[s.id], decisions[s.id], problems[s.problem_id]
                if d["kept"]:
                    _line(sft, sft_row(s, r, p, cfg.output.style))
                    counts["sft.jsonl"] += 1
                else:
                    _line(rejected, rejected_row(s, r, d))
                    counts["rejected.jsonl"] += 1
                if p["rl"] and s.problem_id not in written_rl:
                    written_rl.add(s.problem_id)
                    _line(rl, rl_row(s, p))
                    counts["rl_prompts.jsonl"] += 1

    _atomic_files([out / name for name in FILES], write)
    return counts


def write_dataset(jsonl: Path, target: Path) -> None:
    """`datasets.save_to_disk` of a JSONL file: built beside `target`, then swapped in."""
    import datasets

    tmp, cache = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.cache")
    for p in (tmp, cache):
        shutil.rmtree(p, ignore_errors=True)
    try:
        if jsonl.stat().st_size:
            data = datasets.Dataset.from_json(str(jsonl), cache_dir=str(cache))
        else:
            data = datasets.Dataset.from_dict({"messages": []})
        data.save_to_disk(str(tmp))
        del data
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        for p in (tmp, cache):
            shutil.rmtree(p, ignore_errors=True)
