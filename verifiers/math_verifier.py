"""Math answers: our own extraction and exact fast paths around Math-Verify.

    verify_math(completion, reference, **policy) -> Verdict

Pipeline (verification-and-eval.md §4 and §6.1 list the failures each step exists for):
1. the gold is parsed first and cached per reference string; a gold we cannot read is a verdict
   "reference unparseable: ...", never an exception;
2. only the text after `</think>` counts, an unclosed `<think>` scores 0;
3. the answer span: the last `\\boxed{}` group, else the last `####` / "Final Answer:" /
   "the answer is" line, else (unless `require_anchor`) the last line (verifiers/answers.py);
4. the span is split into answers; alternatives ("5 or 6") score 0 and a multi-answer span
   must equal the gold set (order-insensitive) -- overlap is not enough (MV issue #47);
5. plain numbers on both sides are compared as exact rationals without sympy
   (verifiers/numbers.py); everything else goes to Math-Verify, but only the short span, only
   after a magnitude pre-check, and with its parse checked to cover the whole span;
6. numbers that come back from sympy are compared exactly (Rational) or at 30 digits before
   Math-Verify's 6-decimal rounding could call 1/2^99 equal to 1/2^98 (MV issue #14).

Policy options (keyword arguments, all with defaults):
    decimal_comma=False  `3,5` is two answers (a list); True reads it as 3.5 and `1.234,5` as 1234.5.
    percent="equal"      "equal": `x%` equals both `x` and `x/100` when only one side carries `%`
                         (Math-Verify 0.9 has 9% == 9; many golds write 0.5 for 50%); two bare
                         numbers are never rescaled, so 50 != 0.5 (Qwen's grader gets that wrong).
                         "strict": `x%` is exactly x/100. "strip": `x%` is exactly x.
    units="strip"        trailing unit words are dropped (`10 cm` == 10). "match": when both sides
                         carry unit text it must be the same word (`10 cm` != `10 m`).
    tolerance=0.0        relative tolerance for numeric equality; 0 is exact.
    gold_precision=True  a decimal gold with >= 2 places is taken as rounded (1/3 matches 0.33);
                         a prediction with >= 6 decimal places matches an exact gold that rounds to it.
    timeout_s=5.0        soft deadline (SIGALRM/setitimer) over the sympy stage, only when called
                         in a main thread and no earlier outer timer would fire first; elsewhere the
                         VerifierPool's hard per-sample deadline is the bound. None disables it.
    require_anchor=False True: no box and no answer line means "no answer found" (no last-line guess).
    think_in_prompt=False True: the prompt opened `<think>`, so a completion with no tags is unfinished.
Degrees: `30^\\circ` equals 30, and equals pi/6 when the other side is a rational multiple of pi.
Forms sympy would collapse are settled before it: `\\emptyset`, `\\varnothing`, `\\{\\}`, `\\O`,
`∅` are one empty set (equal to nothing else); `a:b` colon sequences compare part by part when a
part is zero or a clock time (`12:00` != `1:00`, `3:00` == `03:00`), else as ratios in lowest terms;
a division by zero, zoo or nan on either side is never a match ("undefined value"). A prediction
with >= 6 decimals equals an irrational closed form that rounds to it (`1.414214` for `\\sqrt{2}`).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from verifiers.answers import (clean_span, extract_span, last_box, math_envs, split_answers,
                               split_think)
from verifiers.api import Verdict
from verifiers.numbers import (MAX_SPAN_CHARS, Num, close, magnitude_issue, numbers_equal,
                               parse_number, round_half_up, several_numbers, structural_key)

PERCENT_MODES = ("equal", "strict", "strip")
UNIT_MODES = ("strip", "match")
MAX_ANSWERS = 20


@dataclass(frozen=True)
class MathPolicy:
    """The options of verify_math; see the module docstring for what each one means."""

    decimal_comma: bool = False
    percent: str = "equal"
    units: str = "strip"
    tolerance: float = 0.0
    gold_precision: bool = True
    timeout_s: float | None = 5.0
    require_anchor: bool = False
    think_in_prompt: bool = False

    def __post_init__(self):
        if self.percent not in PERCENT_MODES:
            raise ValueError(f"percent={self.percent!r}; choose one of {PERCENT_MODES}")
        if self.units not in UNIT_MODES:
            raise ValueError(f"units={self.units!r}; choose one of {UNIT_MODES}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance={self.tolerance!r} must be in [0, 1)")


def verify_math(completion: str, reference, **options) -> Verdict:
    """Score one completion against a gold answer (a short answer, a `\\boxed{}` solution, or a
    GSM8K rationale ending in `#### x`). Never raises on a completion; bad options raise."""
    try:
        policy = MathPolicy(**options)
    except TypeError as e:
        raise ValueError(f"verify_math: {e}") from None
    try:
        with _soft_deadline(policy.timeout_s):
            return _verify(completion, reference, policy)
    except _Deadline:
        return Verdict.fail("timeout")
    except RecursionError:
        return Verdict.fail("nesting too deep")
    except Exception as e:  # a verifier must not take a run down; the reason keeps it visible
        return Verdict.fail(f"internal error: {type(e).__name__}: {str(e)[:200]}")


def _verify(completion: str, reference, policy: MathPolicy) -> Verdict:
    key = _reference_key(reference)
    if key is None:
        return Verdict.fail(f"reference unparseable: {type(reference).__name__}")
    gold = _parse_gold(key)
    if gold.error:
        return Verdict.fail(f"reference unparseable: {gold.error}")
    _, answer_text, closed = split_think(completion, policy.think_in_prompt)
    if not closed:
        return Verdict.fail("unclosed <think>")
    if not answer_text:
        return Verdict.fail("no answer after </think>" if completion.strip() else "empty completion")
    span, how = extract_span(answer_text, policy.require_anchor)
    if span is None:
        return Verdict.fail(how)
    span = _canonical_empty_set(clean_span(span))
    extracted = span[:500]
    if not span:
        return Verdict.fail("empty answer", extracted)
    if len(span) > MAX_SPAN_CHARS:
        return Verdict.fail(f"answer span too long ({len(span)} chars)", extracted)
    preds, hedged = split_answers(span, policy.decimal_comma)
    if not preds:
        return Verdict.fail("empty answer", extracted)
    golds = _as_set(gold.answers, len(preds))
    if len(golds) == 1:
        if hedged:
            return Verdict.fail("hedged answer", extracted)
        if len(preds) > 1:
            return Verdict.fail("several answers for a single reference", extracted)
        ok, reason = _match(preds[0], gold.answers[0], policy)
    elif len(preds) != len(golds):
        return Verdict.fail(f"{len(preds)} answers for a reference with {len(golds)}", extracted)
    else:
        ok, reason = _match_sets(preds, golds, policy)
    return Verdict(ok, 1.0 if ok else 0.0, extracted, reason)


# --------------------------------------------------------------------------------------------
# The gold side, parsed once per reference string


class GoldAnswer(NamedTuple):
    text: str
    num: Num | None  # set when the answer is a plain number
    expr: object | None  # the sympy object from Math-Verify, when it is not a plain number
    too_big: str | None  # set when only a structural comparison is safe


class Gold(NamedTuple):
    answers: tuple[GoldAnswer, ...]
    error: str | None = None


def _as_set(answers: tuple[GoldAnswer, ...], num_preds: int) -> tuple[GoldAnswer, ...]:
    """A single gold that Math-Verify reads as a finite set (`1 \\pm \\sqrt{19}`) is matched
    element by element when the prediction lists as many answers."""
    import sympy

    if len(answers) != 1 or num_preds < 2 or not isinstance(answers[0].expr, sympy.FiniteSet):
        return answers
    elements = answers[0].expr.args
    if len(elements) != num_preds:
        return answers
    return tuple(GoldAnswer(str(e), None, e, None) for e in elements)


def _reference_key(reference) -> str | None:
    if isinstance(reference, bool) or reference is None:
        return None
    if isinstance(reference, (int, float, Fraction)):
        return str(reference)
    if isinstance(reference, (list, tuple)) and reference and all(isinstance(r, (str, int)) for r in reference):
        return ", ".join(str(r) for r in reference)
    return reference if isinstance(reference, str) else None


def gold_span(reference: str) -> str:
    """The answer part of a reference: its last box, the text after `####`, the math of a
    `$125$ miles` style answer, or the whole string."""
    box = last_box(reference)
    if box.content is not None:
        return box.content
    if "####" in reference:
        lines = reference.rsplit("####", 1)[1].strip().splitlines()
        return lines[0] if lines else ""
    stripped = clean_span(reference)
    if "$" in stripped or "\\(" in stripped:
        return math_envs(reference) or stripped
    return stripped


@functools.lru_cache(maxsize=4096)
def _parse_gold(reference: str) -> Gold:
    """Golds are canonical: a `.` is a decimal point and a comma separates answers or thousands,
    whatever `decimal_comma` says about predictions."""
    span = _canonical_empty_set(clean_span(gold_span(reference)))
    if not span:
        return Gold((), "empty reference")
    if len(span) > MAX_SPAN_CHARS:
        return Gold((), f"answer longer than {MAX_SPAN_CHARS} chars")
    texts, _ = split_answers(span)
    if not texts or len(texts) > MAX_ANSWERS:
        return Gold((), f"{len(texts)} answers in {span[:80]!r}")
    answers = []
    for text in texts:
        num = parse_number(text)
        issue = None if num is not None else magnitude_issue(text)
        if issue is not None and issue.startswith("undefined"):
            return Gold((), f"{issue}: {text[:80]!r}")
        expr = None
        if num is None and issue is None:
            expr, why = _mv_parse(text, check_full=False)
            if expr is None:
                return Gold((), f"{why}: {text[:80]!r}")
        answers.append(GoldAnswer(text, num, expr, issue))
    return Gold(tuple(answers))


# --------------------------------------------------------------------------------------------
# Comparing one predicted answer with one gold answer


def _match_sets(preds: list[str], golds: tuple[GoldAnswer, ...], policy: MathPolicy) -> tuple[bool, str]:
    """Set equality: every gold answer is matched by a distinct predicted answer."""
    unused = list(preds)
    for gold in golds:
        for k, pred in enumerate(unused):
            if _match(pred, gold, policy)[0]:
                del unused[k]
                break
        else:
            return False, "answer set differs from reference"
    return True, "ok"


def _match(pred: str, gold: GoldAnswer, policy: MathPolicy) -> tuple[bool, str]:
    special = _special_forms(pred, gold.text)
    if special is not None:
        return special
    pnum = parse_number(pred, policy.decimal_comma)
    if pnum is None and several_numbers(pred):
        return False, "several numbers in one answer"
    if pnum is not None and gold.num is not None:
        same = numbers_equal(pnum, gold.num, percent=policy.percent, tolerance=policy.tolerance,
                             gold_precision=policy.gold_precision, units=policy.units)
        if same is not None:
            return same, "ok" if same else "wrong answer"
    issue = magnitude_issue(pred) if pnum is None else None
    if issue is not None and issue.startswith("undefined"):
        return False, issue
    if gold.too_big or issue:
        same = structural_key(pred) == structural_key(gold.text)
        return same, "ok (compared as text: too large to evaluate)" if same else (issue or gold.too_big)
    gold_expr = gold.expr if gold.expr is not None else _num_to_sympy(gold.num)
    if _undefined(gold_expr):
        return False, "undefined reference value"
    if pnum is not None and _rounds_from(gold_expr, pnum, policy):
        return True, "ok"
    expr, why = _mv_parse(pred, check_full=True)
    if expr is None:
        return False, why
    if _undefined(expr):  # zoo, nan: `12:00` and `1:00` both parse as 12/0 and 1/0
        return False, "undefined value"
    expr = _value_of_equation(gold_expr, expr, policy)
    if expr is None:
        return False, "equation where a value was expected"
    same = _numbers_exact(gold_expr, expr, gold.num, policy)
    if same is None:
        same = _mv().verify([gold_expr], [expr], float_rounding=6, timeout_seconds=None)
    return bool(same), "ok" if same else "wrong answer"


_EMPTY_SET = re.compile(r"\\(?:emptyset|varnothing|O)(?![A-Za-z])|∅|\\\{\s*\\\}|\\left\\\{\s*\\right\\\}")
_COLON_SEQ = re.compile(r"\d+(?:\s*:\s*\d+)+")
_NAN = re.compile(r"(?:\\(?:text|mathrm)\s*\{\s*)?nan\s*\}?", re.I)


def _canonical_empty_set(span: str) -> str:
    """`\\varnothing`, `\\{\\}`, `\\O`, `∅` are all `\\emptyset` (a bare `\\{\\}` would split into
    no answers at all)."""
    stripped = span.strip().strip("$").strip()
    return "\\emptyset" if _EMPTY_SET.fullmatch(stripped) else span


def _special_forms(pred: str, gold: str) -> tuple[bool, str] | None:
    """Forms that sympy collapses: the empty set, `a:b` colon sequences (`12:00` and `1:00` are
    both 1/0 to Math-Verify), nan. None when neither side is one of them."""
    p_empty, g_empty = pred.strip() == "\\emptyset", gold.strip() == "\\emptyset"
    if p_empty or g_empty:
        return (True, "ok") if p_empty and g_empty else (False, "wrong answer")
    if _NAN.fullmatch(pred.strip()) or _NAN.fullmatch(gold.strip()):
        return False, "undefined value"
    p_seq, g_seq = _colon_parts(pred), _colon_parts(gold)
    if p_seq is None or g_seq is None:
        return None
    return (True, "ok") if _same_colon_seq(p_seq, g_seq) else (False, "wrong answer")


def _colon_parts(text: str) -> list[str] | None:
    t = re.sub(r"\\(?:text|mathrm)\s*\{([^{}]*)\}", r"\1", text).replace("\\,", "").strip()
    return [x.strip() for x in t.split(":")] if _COLON_SEQ.fullmatch(t) else None


def _same_colon_seq(a: list[str], b: list[str]) -> bool:
    """Clock times (`03:00`) and ratios with a zero part compare part by part, exactly; other
    ratios compare in lowest terms (`1:2` == `2:4`)."""
    if len(a) != len(b):
        return False
    ia, ib = [int(x) for x in a], [int(x) for x in b]
    clock = any(len(x) == 2 and x[0] == "0" for x in a[1:] + b[1:])
    if clock or 0 in ia or 0 in ib:
        return ia == ib
    ga, gb = math.gcd(*ia), math.gcd(*ib)
    return [x // ga for x in ia] == [x // gb for x in ib]


def _undefined(expr) -> bool:
    import sympy

    return isinstance(expr, sympy.Basic) and (expr.has(sympy.zoo) or expr.has(sympy.nan))


def _rounds_from(gold_expr, pnum: Num, policy: MathPolicy) -> bool:
    """A prediction with >= 6 decimal places equals a closed-form number that rounds to it
    (`1.414214` for `\\sqrt{2}`, `3.141593` for `\\pi`): Math-Verify's float_rounding=6 promise."""
    import sympy

    if not (policy.gold_precision and pnum.decimals is not None and pnum.decimals >= 6) \
            or pnum.percent or pnum.pi or not isinstance(gold_expr, sympy.Expr) \
            or gold_expr.free_symbols or not gold_expr.is_number:
        return False
    value = sympy.N(gold_expr, 50)
    if not (value.is_real and value.is_finite):
        return False
    return round_half_up(Fraction(str(value)), pnum.decimals) == pnum.value


def _value_of_equation(gold, pred, policy: MathPolicy):
    """What a predicted equation says the value is, when the gold is not a relation.

    Math-Verify compares a bare gold with the right side of ANY predicted equation, so
    `3x+4y+14=0` "equals" 0 (MV issue #60). We accept `x = v`, `f(x) = v`, `(p,q) = (...)` (MV
    keeps comparing those) and a true numeric identity `6^2 = 36` (its right side is the value);
    anything else is None."""
    import sympy
    from sympy.core.function import AppliedUndef

    if not isinstance(pred, sympy.Eq) or isinstance(gold, (sympy.core.relational.Relational, sympy.And)):
        return pred
    lhs, named = pred.lhs, (sympy.Symbol, AppliedUndef)
    if isinstance(lhs, named) or (isinstance(lhs, sympy.Tuple) and all(isinstance(a, named) for a in lhs.args)):
        return pred
    if isinstance(lhs, sympy.Expr) and isinstance(pred.rhs, sympy.Expr) \
            and _numbers_exact(pred.rhs, lhs, None, policy):
        return pred.rhs
    return None


def _num_to_sympy(num: Num):
    import sympy

    value = sympy.Rational(num.value.numerator, num.value.denominator)
    return value * sympy.pi if num.pi else value


def _numbers_exact(gold, pred, gold_num: Num | None, policy: MathPolicy) -> bool | None:
    """Exact comparison for closed-form numbers: Rational vs Rational exactly, others at 30
    significant digits. None when either side is not a plain number (sets, symbols, relations)."""
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return None
    if gold.free_symbols or pred.free_symbols or not (gold.is_number and pred.is_number):
        return None
    g, p = gold.doit(), pred.doit()
    if g.is_Rational and p.is_Rational:
        gv, pv = Fraction(int(g.p), int(g.q)), Fraction(int(p.p), int(p.q))
        if close(pv, gv, policy.tolerance):
            return True
        return bool(policy.gold_precision and gold_num is not None and gold_num.decimals is not None
                    and gold_num.decimals >= 2 and _rounds_to(p, gv, gold_num.decimals))
    if g.is_finite is False or p.is_finite is False or g.has(sympy.nan) or p.has(sympy.nan):
        return g == p
    gn, pn = sympy.N(g, 30), sympy.N(p, 30)
    if not (gn.is_number and pn.is_number) or gn.has(sympy.nan) or pn.has(sympy.nan):
        return None
    scale = max(abs(gn), abs(pn))
    if bool(abs(gn - pn) <= max(sympy.Float(policy.tolerance), sympy.Float("1e-20")) * scale):
        return True
    if policy.gold_precision and gold_num is not None and gold_num.decimals is not None \
            and gold_num.decimals >= 2:
        return _rounds_to(p, gold_num.value, gold_num.decimals)
    return False


def _rounds_to(pred, gold: Fraction, places: int) -> bool:
    import sympy

    half_ulp = sympy.Rational(1, 2 * 10 ** places)
    diff = sympy.N(pred - sympy.Rational(gold.numerator, gold.denominator), 30)
    return bool(diff.is_real and abs(diff) <= half_ulp)


# --------------------------------------------------------------------------------------------
# Math-Verify, its parse-completeness check, and the soft deadline


@functools.lru_cache(maxsize=1)
def _mv():
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _QuietTimeoutWarning) for f in log.filters):
            log.addFilter(_QuietTimeoutWarning())
    return math_verify


class _QuietTimeoutWarning(logging.Filter):
    """We pass timeout=None on purpose (our own deadline covers the stage); drop MV's warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


def _mv_parse(text: str, check_full: bool) -> tuple[object | None, str]:
    """Parse one answer with Math-Verify's LaTeX extractor only (its plain-expression extractor
    is what turns `4\\sqrt(2)` into 4, MV issue #41) and, for predictions, require that the
    LaTeX parser consumed the whole normalised span, so a fallback to the last `=` (`\\forall
    x>0, f(x)=0` -> 0, MV issue #64) or a dropped tail counts as a partial parse."""
    mv = _mv()
    latex = " ".join(text.replace("\\$", "").replace("$", " ").split())
    config = _latex_config()
    result = mv.parse(f"${latex}$", extraction_config=config, fallback_mode="first_match",
                      extraction_mode="first_match", parsing_timeout=None)
    exprs = [r for r in result if not isinstance(r, str)]
    if not exprs:
        return None, "unparseable answer"
    normalized = next((r for r in result if isinstance(r, str)), None)
    if check_full and normalized is not None and _may_use_last_eq(normalized) \
            and not _fully_parsed(normalized):
        return None, "partial parse"
    return exprs[0], "ok"


@functools.lru_cache(maxsize=1)
def _latex_config():
    return [_mv().LatexExtractionConfig()]


def _may_use_last_eq(latex: str) -> bool:
    """Whether Math-Verify would retry a failed parse on the text after the last `=`
    (math_verify/parser.py get_last_eq: two or more `=` and no `,` or `;`)."""
    return "," not in latex and ";" not in latex and len(_EQ_SPLIT.split(latex)) > 2


_EQ_SPLIT = re.compile(r"(?<!\\|<|!|>)=")


@functools.lru_cache(maxsize=1024)
def _fully_parsed(normalized: str) -> bool:
    try:
        from antlr4 import Token
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:  # private API of the pinned latex2sympy2_extended; skip the check if gone
        return True
    parser = _Latex2Sympy().create_parser(normalized)
    try:
        parser.math()
    except Exception:
        return False
    return parser.getCurrentToken().type == Token.EOF


class _Deadline(BaseException):
    """BaseException so Math-Verify's `except Exception` cannot swallow it."""


@contextmanager
def _soft_deadline(seconds: float | None):
    """A SIGALRM deadline that nests: it is skipped off the main thread and when an outer timer
    would fire first, and an outer timer is re-armed with its remaining time afterwards (MV's own
    `alarm(0)` would cancel it, verification-and-eval.md §1.5)."""
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL) if usable else (0.0, 0.0)
    if not usable or (outer_left and outer_left <= seconds):
        yield
        return

    def fire(signum, frame):
        raise _Deadline()

    try:
        previous = signal.signal(signal.SIGALRM, fire)
    except ValueError:  # not the main interpreter
        yield
        return
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_left:
            left = max(outer_left - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)

