"""The hygiene rules: measured once per sample (stored with its verdict), judged by thresholds.

    m = measure(sample, cfg.hygiene)        # numbers only, kept in the verdict store
    failed = hygiene_failures(m, kind, cfg.hygiene)   # rule names, in RULES order

Splitting measurement from judgement lets a re-run with other thresholds reuse every stored
verdict. The measures come from `verifiers.format` (the R1 paper's filters, arXiv 2501.12948
§2.3.3: language mixing, long paragraphs, code blocks in the CoT) plus truncation, an empty
answer and repetition (repeated word n-grams, repeated lines).
"""

from __future__ import annotations

import re

from distill.filter.config import HygieneConfig
from distill.filter.inputs import Sample
from verifiers.format import (code_blocks_in_reasoning, language_mixing, ngram_repetition,
                              verify_format)

RULES = ("think_format", "truncated", "empty_answer", "language", "long_paragraph",
         "code_in_reasoning", "repetition", "repeated_lines")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")  # the blank-line split of verifiers.format.long_paragraphs


def measure(sample: Sample, cfg: HygieneConfig) -> dict:
    """Every hygiene measure of one sample (JSON-ready)."""
    fmt = verify_format(sample.completion, think_in_prompt=sample.think_opened)
    reasoning = sample.reasoning
    return {
        "format": fmt.reason,
        "truncated": sample.finish_reason == "length" or not sample.closed,
        "empty_answer": not sample.answer_text.strip(),
        "language_share": round(language_mixing(reasoning, cfg.language), 4),
        "max_paragraph_chars": max((len(p.strip()) for p in _PARAGRAPH.split(reasoning)),
                                   default=0),
        "code_blocks": code_blocks_in_reasoning(reasoning),
        "ngram_repetition": round(ngram_repetition(reasoning, cfg.repetition_n), 4),
        "line_repetition": round(line_repetition(reasoning, cfg.min_line_chars), 4),
    }


def line_repetition(text: str, min_chars: int = 20) -> float:
    """Share of lines (stripped, at least `min_chars` long) that repeat an earlier line; short
    lines ("Wait.", "Step 2:") repeat in healthy reasoning and are not counted."""
    lines = [s for s in (line.strip() for line in text.splitlines()) if len(s) >= min_chars]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def hygiene_failures(m: dict, kind: str, cfg: HygieneConfig) -> list[str]:
    """Names of the rules the measures `m` break (RULES order)."""
    failed = []
    if cfg.think_format and m["format"] != "ok":
        failed.append("think_format")
    if cfg.truncated and m["truncated"]:
        failed.append("truncated")
    if cfg.empty_answer and m["empty_answer"]:
        failed.append("empty_answer")
    if cfg.language_min_share is not None and m["language_share"] < cfg.language_min_share:
        failed.append("language")
    if cfg.max_paragraph_chars is not None and m["max_paragraph_chars"] > cfg.max_paragraph_chars:
        failed.append("long_paragraph")
    if cfg.max_code_blocks is not None and kind != "code" and m["code_blocks"] > cfg.max_code_blocks:
        failed.append("code_in_reasoning")
    if cfg.max_ngram_repetition is not None and m["ngram_repetition"] > cfg.max_ngram_repetition:
        failed.append("repetition")
    if cfg.max_line_repetition is not None and m["line_repetition"] > cfg.max_line_repetition:
        failed.append("repeated_lines")
    return failed
