"""Think-format validity and the hygiene filters the data pipeline and rewards use.

    verify_format(completion, reference=None, think_in_prompt=False, require_reasoning=True) -> Verdict
    split_think(completion, think_in_prompt=False) -> (reasoning | None, answer_text, closed)
    language_mixing(text, target="en") -> float       share of target-language words
    long_paragraphs(text, max_chars=2000) -> int        paragraphs longer than max_chars
    code_blocks_in_reasoning(text) -> int               fenced code blocks in the reasoning
    ngram_repetition(text, n=10) -> float               share of word n-grams that repeat an earlier one
    is_truncated(completion, finish_reason=None, think_in_prompt=False) -> bool

DeepSeek-R1 (arXiv:2501.12948) filters out chains of thought with mixed languages, long
paragraphs and code blocks before SFT (§2.3.3), and scores language consistency as the
proportion of target-language words in the CoT (§2.3.2). The paper gives no thresholds: the
defaults here are ours, and the filter stage decides where to cut.
"""

from __future__ import annotations

import re

from verifiers.answers import split_think
from verifiers.api import Verdict

__all__ = ["verify_format", "split_think", "language_mixing", "long_paragraphs",
           "code_blocks_in_reasoning", "ngram_repetition", "is_truncated"]

_OPEN_TAG = re.compile(r"<\s*think\s*>", re.I)
_CLOSE_TAG = re.compile(r"<\s*/\s*think\s*>", re.I)


def verify_format(completion: str, reference=None, *, think_in_prompt: bool = False,
                  require_reasoning: bool = True) -> Verdict:
    """Exactly one think block at the start, then a non-empty answer. With `think_in_prompt`
    the prompt already opened the block, so the completion must close it once and never open one.
    `reference` is ignored (the format has no gold); it is there for the verify() contract."""
    opens = [m.start() for m in _OPEN_TAG.finditer(completion)]
    closes = [m.start() for m in _CLOSE_TAG.finditer(completion)]
    if think_in_prompt:
        if opens:
            return Verdict.fail("<think> opened twice (the prompt already opened it)")
    else:
        if not opens:
            return Verdict.fail("no <think> block")
        if len(opens) > 1:
            return Verdict.fail(f"{len(opens)} <think> tags")
        if completion[:opens[0]].strip():
            return Verdict.fail("text before <think>")
    if not closes:
        return Verdict.fail("unclosed <think>")
    if len(closes) > 1:
        return Verdict.fail(f"{len(closes)} </think> tags")
    if opens and closes[0] < opens[0]:
        return Verdict.fail("</think> before <think>")
    reasoning, answer, _ = split_think(completion, think_in_prompt)
    if require_reasoning and not (reasoning or "").strip():
        return Verdict.fail("empty <think> block")
    if not answer.strip():
        return Verdict.fail("no answer after </think>")
    return Verdict(True, 1.0, answer[:200], "ok")


# --------------------------------------------------------------------------------------------
# Language mixing

_SCRIPTS = {
    "latin": r"[A-Za-z\u00c0-\u024f]{2,}",  # one-letter tokens are math variables, not words
    "han": r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]",  # one character = one word
    "kana": r"[\u3040-\u30ff]+",
    "hangul": r"[\uac00-\ud7af\u1100-\u11ff]+",
    "cyrillic": r"[\u0400-\u04ff]{2,}",
    "greek": r"[\u0370-\u03ff]{2,}",  # single Greek letters are variables
    "arabic": r"[\u0600-\u06ff]+",
    "hebrew": r"[\u0590-\u05ff]+",
    "devanagari": r"[\u0900-\u097f]+",
    "thai": r"[\u0e00-\u0e7f]+",
}
_WORD = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _SCRIPTS.items()))
_TARGET_SCRIPTS = {
    **{lang: {"latin"} for lang in ("en", "fr", "de", "es", "it", "pt", "nl", "latin")},
    "zh": {"han"}, "ja": {"han", "kana"}, "ko": {"hangul", "han"}, "ru": {"cyrillic"},
    "uk": {"cyrillic"}, "el": {"greek"}, "ar": {"arabic"}, "he": {"hebrew"}, "hi": {"devanagari"},
    "th": {"thai"},
}
_NOT_LANGUAGE = re.compile(r"```.*?(?:```|$)|\\[A-Za-z]+", re.S)  # code and LaTeX commands


def language_mixing(text: str, target: str = "en") -> float:
    """Proportion of words in the target language's script among all words in `text` (pass the
    reasoning); 1.0 = no mixing, and 1.0 when there are no words at all. Chinese/Japanese
    characters count one word each; LaTeX commands, code blocks and one-letter tokens are skipped."""
    if target not in _TARGET_SCRIPTS:
        raise ValueError(f"target={target!r}; known: {sorted(_TARGET_SCRIPTS)}")
    wanted = _TARGET_SCRIPTS[target]
    total = hits = 0
    for m in _WORD.finditer(_NOT_LANGUAGE.sub(" ", text)):
        total += 1
        hits += m.lastgroup in wanted
    return hits / total if total else 1.0


# --------------------------------------------------------------------------------------------
# Paragraphs, code, repetition, truncation

_FENCE = re.compile(r"^[ \t]*(?:```|~~~)", re.M)


def long_paragraphs(text: str, max_chars: int = 2000) -> int:
    """Paragraphs (blank-line separated) longer than max_chars. 2000 is our default: R1 long CoTs
    are written in short paragraphs, and a wall of text is usually a loop or a dump."""
    return sum(len(p.strip()) > max_chars for p in re.split(r"\n[ \t]*\n", text))


def code_blocks_in_reasoning(text: str) -> int:
    """Fenced code blocks in the reasoning. Given a whole completion with `</think>`, only the
    reasoning part is counted; an unclosed fence counts as a block."""
    reasoning, _, _ = split_think(text) if _CLOSE_TAG.search(text) else (text, "", True)
    fences = len(_FENCE.findall(reasoning or ""))
    return (fences + 1) // 2


def ngram_repetition(text: str, n: int = 10) -> float:
    """Fraction of word n-grams that repeat an earlier n-gram: (total - distinct) / total.
    0.0 for no repetition, near 1.0 for a degenerate loop. n=10 words is long enough that
    ordinary reasoning rarely repeats one, so the ratio measures loops, not style."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    words = text.split()
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    distinct = len({hash(tuple(words[i:i + n])) for i in range(total)})
    return (total - distinct) / total


def is_truncated(completion: str, finish_reason: str | None = None,
                 think_in_prompt: bool = False) -> bool:
    """True when the generation stopped on the length limit, left `<think>` open, or produced
    no final answer after `</think>`."""
    if finish_reason == "length":
        return True
    _, answer, closed = split_think(completion, think_in_prompt)
    return not closed or not answer.strip()
