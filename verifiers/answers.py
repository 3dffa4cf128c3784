"""Answer-span extraction: where in a completion the final answer is, as a short string.

Order (verification-and-eval.md §4, §6.1): only the text after `</think>` counts; the last
`\\boxed{}` / `\\fbox{}` wins (brace-matched, with boxes written right next to it joined into one
multi-answer group, so `\\boxed{1}, \\boxed{2}` cannot smuggle an enumeration past the last-box
rule); then the last GSM8K `#### x`, "Final Answer: x" or "the answer is x" line; then, unless an
anchor is required, the last line of the answer. Every scan is bounded: boxes are brace-matched
over at most MAX_BOX_CHARS, anchors are searched in the last TAIL_CHARS of the text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_BOX_CHARS = 4000
MAX_BOX_GROUP = 20
TAIL_CHARS = 4000

_OPEN_TAG = re.compile(r"<\s*think\s*>", re.I)
_CLOSE_TAG = re.compile(r"<\s*/\s*think\s*>", re.I)


def split_think(completion: str, think_in_prompt: bool = False) -> tuple[str | None, str, bool]:
    """Split a completion into (reasoning, answer_text, closed).

    - `<think>r</think>a` -> (r, a, True); tags are matched case-insensitively, spaces allowed.
    - `r</think>a` (the R1 chat template already put `<think>\\n` in the prompt) -> (r, a, True).
    - `<think>r` with no closing tag, or a `<think>` reopened after the last `</think>`
      -> (r, "", False): a truncated or unfinished completion has no answer.
    - no tags -> (None, text, True), or (text, "", False) when `think_in_prompt` says the prompt
      opened the block, so the whole completion is unfinished reasoning.
    Only the text after the LAST `</think>` is the answer (PrimeIntellect-ai/verifiers PR #213).
    """
    if not isinstance(completion, str):
        completion = "" if completion is None else str(completion)
    first_open = _OPEN_TAG.search(completion)
    last_close = None
    for last_close in _CLOSE_TAG.finditer(completion):
        pass
    if last_close is None:
        if first_open is not None:
            return completion[first_open.end():].strip(), "", False
        if think_in_prompt:
            return completion.strip(), "", False
        return None, completion.strip(), True
    reopened = _OPEN_TAG.search(completion, last_close.end())
    start = first_open.end() if first_open is not None and first_open.start() < last_close.start() else 0
    if reopened is not None:
        return completion[start:].strip(), "", False
    return completion[start:last_close.start()].strip(), completion[last_close.end():].strip(), True


# --------------------------------------------------------------------------------------------
# Boxes

_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_BRACE = re.compile(r"\\\\|\\[{}]|[{}]")
_BARE_BOX = re.compile(r"[^\s$]+")
_BOX_GAP = re.compile(
    r"(?:\s|[,;$]|\\[,;! ]|\\q?quad|\\[()\[\]]|\\text\s*\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b)*", re.I)


class Box(NamedTuple):
    content: str | None  # the joined content of the last box group
    status: str  # "ok", "none", "unclosed", "too long", "empty"


def _read_box(text: str, i: int) -> tuple[str | None, int]:
    """Content and end index of a box whose keyword ends at `i`; (None, -1) if it never closes,
    (None, -2) if it does not close within MAX_BOX_CHARS."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        depth = 0
        for m in _BRACE.finditer(text, i, min(len(text), i + MAX_BOX_CHARS)):
            tok = m.group()
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:m.start()], m.end()
        return None, (-2 if i + MAX_BOX_CHARS < len(text) else -1)
    m = _BARE_BOX.match(text, i)  # `\boxed 42`
    return (m.group(), m.end()) if m else (None, -1)


def last_box(text: str) -> Box:
    """The last box, joined with the boxes written right before it (separated only by commas,
    `and`/`or`, spaces or math delimiters): `\\boxed{3} and \\boxed{5}` -> "3, 5"."""
    boxes = [(m.start(), m.end()) for m in _BOX.finditer(text)]
    if not boxes:
        return Box(None, "none")
    content, end = _read_box(text, boxes[-1][1])
    if content is None:
        return Box(None, "too long" if end == -2 else "unclosed")
    joined, next_start = content, boxes[-1][0]
    for start, keyword_end in reversed(boxes[-MAX_BOX_GROUP:-1]):
        prev, prev_end = _read_box(text, keyword_end)
        gap = text[prev_end:next_start] if prev is not None and prev_end <= next_start else None
        if gap is None or len(gap) > 40 or _BOX_GAP.fullmatch(gap) is None:
            break
        joined = prev + (" or " if re.search(r"\bor\b", gap, re.I) else ", ") + joined
        next_start = start
    if not joined.strip():
        return Box(None, "empty")
    return Box(joined, "ok")


# --------------------------------------------------------------------------------------------
# Anchored lines and the fallback

_ANCHOR = re.compile(
    r"####\s*(?P<g>[^\n]*)"
    r"|final\s+answer\s*(?:is)?\s*[:：]?(?P<f>[^\n]*)"
    r"|answer\s*(?:is|:|：)\s*(?P<a>[^\n]*)", re.I)
_MATH_ENV = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_SEPARATOR_GAP = re.compile(r"\s*(?:,|;|and|or|,\s*and|,\s*or)\s*", re.I)
_PROSE_LEAD = re.compile(r"^[A-Za-z][A-Za-z'’]+\b(?!\s*[=(_^])")
_COPULA = re.compile(r"\b(?:is|are|was|equals|be)\b\s*[:=]?", re.I)
_NUMBER_TOKEN = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?")


def strip_markdown(text: str) -> str:
    text = text.replace("**", "").replace("__", "")
    return re.sub(r"\\textbf\s*\{([^{}]*)\}", r"\1", text)


def math_envs(text: str) -> str | None:
    """The math environments of a sentence, joined when only separators lie between them
    (`$5$ or $6$` -> "5 or 6"), else the last one; None when there is none."""
    envs = [m for m in _MATH_ENV.finditer(text) if any(g and g.strip() for g in m.groups())]
    if not envs:
        return None
    inner = [next(g for g in m.groups() if g is not None) for m in envs]
    joined = inner[-1]
    for k in range(len(envs) - 1, 0, -1):
        gap = text[envs[k - 1].end():envs[k].start()]
        if _SEPARATOR_GAP.fullmatch(gap) is None:
            break
        joined = inner[k - 1] + (" " + gap.strip() + " " if gap.strip() not in ("", ",") else ", ") + joined
    return joined


def trim_sentence(rest: str, fallback: bool = False) -> str | None:
    """The answer inside an anchored sentence such as "The final answer is $28\\%$. I hope it is
    correct." -> "28\\%". Prose before a copula ("The volume of $V$ is 120") is dropped unless
    only words follow it ("Therefore $x \\geq 5$ is the solution"). With `fallback` (an
    unanchored last line), prose with no math falls back to its first number after the copula."""
    rest = re.split(r"I hope it is correct|<\|", rest, maxsplit=1, flags=re.I)[0]
    rest = strip_markdown(rest).strip().lstrip(":：").strip()
    copulas = list(_COPULA.finditer(rest)) if _PROSE_LEAD.match(rest) else []
    if copulas:
        after = rest[copulas[-1].end():]
        rest = after if re.search(r"\d|\$|\\[(\[]", after) else rest[:copulas[-1].start()]
    env = math_envs(rest)
    if env is not None:
        return env.strip() or None
    rest = re.split(r"\.\s|\.$|,\s+(?!(?:and|or)\b)(?=[A-Za-z]{3,})", rest.strip(), maxsplit=1)[0].strip()
    if fallback and (_PROSE_LEAD.match(rest) or re.search(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}", rest)):
        numbers = _NUMBER_TOKEN.findall(rest)
        return numbers[0 if copulas else -1].strip() if numbers else None
    return rest or None


def anchored_span(text: str) -> str | None:
    """The answer after the last `####`, "Final Answer:" or "the answer is" in `text`."""
    matches = list(_ANCHOR.finditer(text))
    for m in reversed(matches):
        rest = m.group("g") if m.group("g") is not None else m.group("f") if m.group("f") is not None else m.group("a")
        if not rest.strip(" *:："):  # "**Final Answer**" on its own line: the answer is on the next
            following = [line for line in text[m.end():].splitlines() if line.strip()]
            rest = following[0] if following else ""
        span = trim_sentence(rest)
        if span:
            return span
    return None


def _tail(text: str) -> str:
    """The last TAIL_CHARS of `text`, moved past a `$` if the cut fell inside a math span."""
    cut = max(0, len(text) - TAIL_CHARS)
    if cut and (text.count("$", 0, cut) - text.count("\\$", 0, cut)) % 2:
        cut = text.find("$", cut) + 1
    return text[cut:]


def extract_span(answer_text: str, require_anchor: bool = False) -> tuple[str | None, str]:
    """(span, how): how is "boxed", "anchor", "last line", or why nothing was found."""
    box = last_box(answer_text)
    if box.status == "unclosed":
        return None, "unclosed \\boxed{}"
    if box.status == "too long":
        return None, f"\\boxed{{}} longer than {MAX_BOX_CHARS} chars (or unclosed)"
    if box.status == "empty":
        return None, "empty \\boxed{}"
    if box.content is not None:
        return box.content, "boxed"
    tail = _tail(answer_text)
    span = anchored_span(tail)
    if span is not None:
        return span, "anchor"
    if require_anchor:
        return None, "no answer found"
    lines = [line for line in strip_markdown(tail).splitlines() if line.strip(" *#>-")]
    if not lines:
        return None, "no answer found"
    span = trim_sentence(lines[-1], fallback=True)
    return (span, "last line") if span else (None, "no answer found")


# --------------------------------------------------------------------------------------------
# Cleaning and splitting a span into answers

_DELIMS = re.compile(r"^(?:\$\$|\$|\\\(|\\\[)\s*|\s*(?:\$\$|(?<!\\)\$|\\\)|\\\])$")
_TEXT_SEP = re.compile(r"\\(?:text|textrm|mbox|mathrm|textnormal)\s*\{\s*(and|or|,)\s*\}", re.I)
_HEDGE = re.compile(r"\beither\b|\band\s*/\s*or\b|\bor\b|\\lor\b|\\vee\b", re.I)
_SPLIT = re.compile(r",|;|\s+(?:and\s*/\s*or|and|or)\s+|\\q?quad\b", re.I)
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")


def clean_span(span: str) -> str:
    """Strip markdown, math delimiters, `\\displaystyle`, trailing punctuation; collapse spaces."""
    s = strip_markdown(span).strip().strip("`*").strip()
    s = re.sub(r"\\displaystyle\b", "", s)
    for _ in range(3):
        s = _DELIMS.sub("", s).strip()
        while s and s[-1] in ".;,:" and not s.endswith("\\."):
            s = s[:-1].rstrip()
    s = re.sub(r"(?:\\[,;! ]|\\q?quad)+$", "", s).strip()
    return " ".join(s.split())


def strip_outer_set(s: str) -> str:
    """`\\{1, 2\\}` -> `1, 2` when the opening `\\{` is matched by the final `\\}`."""
    m = re.match(r"^(?:\\left\s*)?\\\{", s)
    if not m or not re.search(r"(?:\\right\s*)?\\\}$", s):
        return s
    depth = 0
    for t in re.finditer(r"\\\{|\\\}", s):
        depth += 1 if t.group() == "\\{" else -1
        if depth == 0:
            if t.end() != len(s):
                return s
            inner = s[m.end():t.start()]
            return re.sub(r"\\right\s*$", "", inner).strip()
    return s


def split_answers(span: str, decimal_comma: bool = False) -> tuple[list[str], bool]:
    """Split a span into its top-level answers; returns (answers, hedged).

    Separators at bracket depth 0: `,` `;` `and` `or` `\\quad`, also as `\\text{ and }`. A comma
    inside a thousands group (`1,234`) or, with decimal_comma, between digits is not one.
    `hedged` is True when the span offers alternatives (`or`, `either`, `and/or`)."""
    s = _TEXT_SEP.sub(lambda m: f" {m.group(1)} " if m.group(1) != "," else ",", strip_outer_set(span))
    s = s.replace(",\\!", ",").replace("{,}", ",")  # MATH's thousands separators: 10,\!000, 14{,}916
    hedged = _HEDGE.search(s) is not None
    s = re.sub(r"^\s*either\s+", "", s, flags=re.I)
    protect = _DECIMAL_COMMA if decimal_comma else None
    s = _THOUSANDS.sub(lambda m: m.group().replace(",", "\0"), s)
    if protect is not None:
        s = protect.sub("\0", s)
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif depth == 0 and (m := _SPLIT.match(s, i)) and not s.startswith("\\,", i - 1):
            parts.append(s[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(s[start:])
    answers = [p.replace("\0", ",").strip() for p in parts]
    return [a for a in answers if a], hedged
