"""Multiple choice (GPQA, MMLU): a letter extractor that never guesses.

    verify_choice(completion, reference, letters="ABCD", think_in_prompt=False) -> Verdict

Where the letter comes from, in order (verification-and-eval.md §4 "MCQ formats", §6.4):
1. the last answer line: `Answer: C`, `**Answer:** (C)`, `the answer is (C)`, `Final answer: C`,
   `the correct option is C` -- a lower-case letter only inside brackets or alone;
2. the last box: `\\boxed{C}`, `\\boxed{\\text{C}}`, `\\boxed{(C)}`;
3. a bracketed letter `(C)` at the very end of the answer.
There is no bare-letter fallback: a stray capital in prose is never an answer (lighteval's
lowest-priority fallback is how stray capitals get extracted). Alternatives (`A or B`) and lists
(`A, B, C, D`) score 0. Only the text after `</think>` counts.
"""

from __future__ import annotations

import re

from verifiers.answers import TAIL_CHARS, last_box, split_think, strip_markdown
from verifiers.api import Verdict

ALL_LETTERS = "ABCDEFGHIJ"

_ANCHOR = re.compile(r"\b(?:answer|option|choice)\s*(?:is\s*[:：]?|[:：])", re.I)
_WRAPPER = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|textrm)\s*\{([^{}]*)\}")
_FIRST = re.compile(r"\s*(?:either\s+)?(?:(?P<b>[(\[])\s*(?P<l1>[A-Ja-j])\s*[)\]]|(?P<l2>[A-J])(?![A-Za-z0-9'’]))")
_NEXT = re.compile(r"\s*(?:,\s*(?:and|or)\b|,|/|&|\band\b|\bor\b)\s*(?:[(\[]\s*)?([A-Ja-j])(?![A-Za-z0-9'’])", re.I)
_TRAILING = re.compile(r"[(\[]\s*([A-J])\s*[)\]][\s.*!)\]$]*$")


def verify_choice(completion: str, reference, *, letters: str = ALL_LETTERS[:4],
                  think_in_prompt: bool = False) -> Verdict:
    """Score a completion against the gold letter (`"C"`, `"(C)"` or `"c"`)."""
    if not isinstance(letters, str) or not letters or any(c not in ALL_LETTERS for c in letters) \
            or len(set(letters)) != len(letters):
        raise ValueError(f"letters={letters!r}: a string of distinct options from {ALL_LETTERS}")
    gold = _gold_letter(reference, letters)
    if gold is None:
        return Verdict.fail(f"reference unparseable: {str(reference)[:40]!r} is not one of {letters}")
    _, answer_text, closed = split_think(completion, think_in_prompt)
    if not closed:
        return Verdict.fail("unclosed <think>")
    if not answer_text:
        return Verdict.fail("no answer after </think>" if completion.strip() else "empty completion")
    found, reason = extract_choice(answer_text, letters)
    if found is None:
        return Verdict.fail(reason)
    ok = found == gold
    return Verdict(ok, 1.0 if ok else 0.0, found, "ok" if ok else "wrong answer")


def _gold_letter(reference, letters: str) -> str | None:
    if not isinstance(reference, str):
        return None
    m = re.fullmatch(r"\s*[(\[]?\s*([A-Ja-j])\s*[)\]]?\s*\.?\s*", reference)
    letter = m.group(1).upper() if m else None
    return letter if letter is not None and letter in letters else None


def extract_choice(answer_text: str, letters: str = ALL_LETTERS[:4]) -> tuple[str | None, str]:
    """(letter, "ok") or (None, why): "hedged answer", "several options", "no answer found",
    or "X is not an option"."""
    tail = strip_markdown(answer_text[-TAIL_CHARS:])
    for anchor in reversed(list(_ANCHOR.finditer(tail))):
        rest = tail[anchor.end():].split("\n", 1)[0]
        found = _read_letters(rest)
        if found is not None:
            return _decide(found, letters)
    box = last_box(tail)
    if box.content is not None:
        found = _read_letters(box.content)
        if found is not None:
            return _decide(found, letters)
    m = _TRAILING.search(tail[-200:])
    if m:
        return _decide(([m.group(1)], False), letters)
    return None, "no answer found"


def _read_letters(rest: str) -> tuple[list[str], bool] | None:
    """The option letters at the start of `rest` and whether they are offered as alternatives;
    None when `rest` does not start with an option letter."""
    s = rest
    for _ in range(3):
        s = _WRAPPER.sub(r"\1", s)
    s = s.replace("$", " ").strip()
    s = re.sub(r"^(?:option|choice)\s+", "", s, flags=re.I)
    if re.fullmatch(r"[a-j]\.?", s):  # a lower-case letter alone on the answer line
        return [s[0].upper()], False
    m = _FIRST.match(s)
    if not m:
        return None
    first = (m.group("l1") or m.group("l2")).upper()
    after = s[m.end():]
    if m.group("l1") is None and after.strip():
        if not re.match(r"[\s.,:;)!]", after):
            return None
        if first in "AI" and re.match(r"\s+(?!(?:and|or)\b)[a-z]", after):
            return None  # "Answer: A particle ..." -- the article, not option A
    found, hedged, pos = [first], bool(re.match(r"\s*either\b", s, re.I)), m.end()
    while (n := _NEXT.match(s, pos)) is not None and len(found) < len(ALL_LETTERS):
        sep = s[pos:n.start(1)]
        hedged = hedged or bool(re.search(r"\bor\b|/", sep, re.I))
        found.append(n.group(1).upper())
        pos = n.end()
    return found, hedged


def _decide(found: tuple[list[str], bool], letters: str) -> tuple[str | None, str]:
    picked, hedged = found
    if len(set(picked)) > 1:
        return None, "hedged answer" if hedged else "several options"
    letter = picked[0]
    if letter not in letters:
        return None, f"{letter} is not an option"
    return letter, "ok"
