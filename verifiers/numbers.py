"""Fast numeric paths for answers: exact rationals without sympy, and a magnitude pre-check.

`parse_number` reads the plain-number answers that make up most of GSM8K, AIME and MATH-500
(integers, decimals, a/b, \\frac{a}{b}, mixed numbers, thousands separators, percent, degrees,
currency, trailing unit words, rational multiples of pi) into an exact `Fraction`. Two such
numbers are compared with `numbers_equal`, which never rounds before comparing exactly.

`magnitude_issue` estimates, in log10 space and without evaluating anything, how big the numbers
in a LaTeX span can get, so that power towers (`9^{9^{9^9}}`), huge factorials (`1000000!`) and
huge exponents never reach sympy: Math-Verify burns its full timeout on them or hangs past it
(verification-and-eval.md §1.5, MV issues #59 #65).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import NamedTuple

MAX_DIGITS = 4000  # below CPython's 4,300-digit int<->str limit, which sympy's printers hit (§1.8)
MAX_FACTORIAL = 1000  # 1000! already has 2,568 digits
MAX_SPAN_CHARS = 1000  # the longest MATH-500 answer has 159 characters (verl math_dapo, §3.4)
MAX_DEPTH = 32  # bracket nesting beyond this is not an answer
# Math-Verify's ANTLR grammar slows down with each nested bare group: measured warm on this box,
# `((((((1))))))` (6 deep) parses in 0.21 s and `({({({1})})})` in 0.35 s; 10-deep `({` takes 4 s.
MAX_GROUP_DEPTH = 5


class Num(NamedTuple):
    """An exactly parsed number. `value` is the coefficient of pi when `pi` is set.
    `decimals` is the count of digits after the point for a decimal literal, else None."""

    value: Fraction
    percent: bool = False
    degree: bool = False
    pi: bool = False
    decimals: int | None = None
    var: str | None = None  # the `x` of `x = 5`
    unit: str = ""  # unit text stripped from the end (`cm`, `m^2`), lower-cased


_WRAPPERS = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox|textit|mathit)\s*\{([^{}]*)\}")
_SPACES = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~|[\u2009\u202f\u00a0]")
_GROUP_SEP = r"(?:\\,|\\ |[\u2009\u202f])"  # thin spaces that separate digit groups: 1\,234
_PERCENT = re.compile(r"\s*(?:\\%|%|percent(?:age)?|pct)$", re.I)
_DEGREE = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree|degrees?)$", re.I)
_CURRENCY_PRE = re.compile(r"^(?:\\\$|\$|usd|€|£|\\euro)\s*", re.I)
_CURRENCY_POST = re.compile(r"\s*(?:dollars?|usd|€|\\\$|\$)$", re.I)
# Unit text after a space: words of two or more letters, or a one-letter SI unit (`5 m`), so that
# `2x` or `2 x^2` never lose their variable.
_UNIT = re.compile(r"(?:\s|(?<=\d)(?=(?:[kcm]?m|k?g|mg|s|ms|min|h|m?l|ft|in|mi|lb|oz|cm|km)(?![a-z])))"
                   r"((?:(?:[a-z]{2,}|[mgslh])\.?\s*){1,3}(?:\^\s*\{?\s*[23]\s*\}?|[²³])?)$", re.I)
_VAR = re.compile(r"^([a-zA-Z](?:_\{?\w+\}?)?)\s*=\s*")
_APPROX = re.compile(r"^(?:\\approx|approximately|about|exactly|=)\s*", re.I)

_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_INT = r"\d+"
_THOUSANDS = r"\d{1,3}(?:,\d{3})+"
_DEC = r"(?:\d+\.\d*|\.\d+)"


def _number_pattern(decimal_comma: bool) -> re.Pattern:
    if decimal_comma:  # 1.234,5 (dot thousands) / 3,5 (comma decimal)
        body = rf"(?P<n>\d{{1,3}}(?:\.\d{{3}})+(?:,\d+)?|\d+,\d+|{_DEC}|{_INT})"
    else:
        body = rf"(?P<n>{_THOUSANDS}(?:\.\d+)?|{_DEC}|{_INT})"
    return re.compile(rf"^(?P<s>[-+]?)\s*{body}(?:\s*(?:\\times|\\cdot|×|x)\s*10\s*\^\s*\{{?\s*(?P<e>[-+]?\d{{1,3}})\s*\}}?|[eE](?P<e2>[-+]?\d{{1,3}}))?$")


_NUMBER = {False: _number_pattern(False), True: _number_pattern(True)}
_FRAC = re.compile(r"^(?P<s>[-+]?)\s*\\[dtc]?frac\s*(?:\{\s*(?P<a>[-+]?\d+)\s*\}|(?P<a1>\d))\s*(?:\{\s*(?P<b>[-+]?\d+)\s*\}|(?P<b1>\d))$")
_SLASH = re.compile(r"^(?P<s>[-+]?)\s*(?P<a>\d+)\s*/\s*(?P<b>\d+)$")
_MIXED = re.compile(r"^(?P<s>[-+]?)\s*(?P<w>\d+)\s*(?:\s(?P<a>\d+)\s*/\s*(?P<b>\d+)|\\[dt]?frac\s*\{\s*(?P<a2>\d+)\s*\}\s*\{\s*(?P<b2>\d+)\s*\})$")
_PI = re.compile(r"^(?P<s>[-+]?)\s*(?:(?P<c>\d+)\s*)?\\pi(?:\s*/\s*(?P<d>\d+))?$")
_PI_FRAC = re.compile(r"^(?P<s>[-+]?)\s*\\[dt]?frac\s*\{\s*(?P<c>\d+)?\s*\\pi\s*\}\s*\{\s*(?P<d>\d+)\s*\}$")
_FRAC_PI = re.compile(r"^(?P<s>[-+]?)\s*\\[dt]?frac\s*\{\s*(?P<c>\d+)\s*\}\s*\{\s*(?P<d>\d+)\s*\}\s*\\pi$")
_SPACED_THOUSANDS = re.compile(r"^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")


def _strip_affixes(s: str) -> tuple[str, bool, bool, str]:
    """Peel percent / degree / currency / unit text off a number; returns (core, %, deg, unit)."""
    percent = degree = False
    unit = ""
    for _ in range(3):  # `50\%` / `30^\circ` / `5 dollars` / `10 cm`, in any order, at most thrice
        before = s
        if (m := _PERCENT.search(s)) and m.start() > 0:
            s, percent = s[: m.start()], True
        if (m := _DEGREE.search(s)) and m.start() > 0:
            s, degree = s[: m.start()], True
        s = _CURRENCY_PRE.sub("", s)
        if (m := _CURRENCY_POST.search(s)) and m.start() > 0:
            s = s[: m.start()]
        if (m := _UNIT.search(s)) and m.start() > 0 and s[m.start() - 1] not in "\\":
            core = s[: m.start()].rstrip()
            if core and (core[-1].isdigit() or core.endswith("}") or core.endswith("\\pi")
                         or core.lower() in _WORDS):
                unit = " ".join(m.group(1).lower().split())
                s = core
        s = s.strip()
        if s == before:
            break
    return s, percent, degree, unit


def parse_number(text: str, decimal_comma: bool = False) -> Num | None:
    """Parse a short answer that is a plain number into an exact Num; None when it is not one.

    Thin spaces and `{,}` between digit groups are thousands separators; `a b/c` and `a\\frac{b}{c}`
    are mixed numbers (MATH's convention for `2\\frac{1}{4}`, MV tests/test_mixed_number_extraction.py);
    `x = 5` keeps `x` in `var`."""
    s = text.strip()
    if not s or len(s) > 200:
        return None
    s = s.replace("−", "-").replace("{,}", ",").replace("\\!", "")
    s = re.sub(r"\\(?:left|right|displaystyle)\b", "", s)
    for _ in range(2):
        s = _WRAPPERS.sub(r" \1 ", s).strip()
    var = None
    if m := _VAR.match(s):
        var, s = m.group(1), s[m.end():]
    s = _APPROX.sub("", s)
    s = re.sub(r"(?<=\d)" + _GROUP_SEP + r"(?=\d{3}\b)", "", s)  # 1\,234 -> 1234
    s = _SPACES.sub(" ", s).strip()
    if s.startswith("(") and s.endswith(")") and s.count("(") == 1:
        s = s[1:-1].strip()
    s, percent, degree, unit = _strip_affixes(s)
    if s.lower() in _WORDS:
        return Num(Fraction(_WORDS[s.lower()]), percent, degree, var=var, unit=unit)
    if _SPACED_THOUSANDS.match(s):
        s = s.replace(" ", "")
    try:
        core = _parse_core(s, decimal_comma)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if core is None:
        return None
    value, pi, decimals = core
    return Num(value, percent, degree, pi, decimals, var, unit)


def _sign(m: re.Match) -> int:
    return -1 if m.group("s") == "-" else 1


def _parse_core(s: str, decimal_comma: bool) -> tuple[Fraction, bool, int | None] | None:
    if m := _NUMBER[decimal_comma].match(s):
        digits = m.group("n")
        if len(digits) > MAX_DIGITS:
            return None
        if decimal_comma and ("," in digits or re.fullmatch(r"\d{1,3}(?:\.\d{3})+", digits)):
            digits = digits.replace(".", "").replace(",", ".")
        else:
            digits = digits.replace(",", "")
        decimals = len(digits) - digits.index(".") - 1 if "." in digits else None
        value = Fraction(digits.rstrip(".") if digits.endswith(".") else digits)
        exponent = m.group("e") or m.group("e2")
        if exponent:
            value *= Fraction(10) ** int(exponent)
            decimals = None
        return _sign(m) * value, False, decimals
    if m := _MIXED.match(s):
        a, b = m.group("a") or m.group("a2"), m.group("b") or m.group("b2")
        if int(b) == 0 or int(a) >= int(b):  # 11 7/6 is not a mixed number (MV mixed-number tests)
            return None
        return _sign(m) * (int(m.group("w")) + Fraction(int(a), int(b))), False, None
    if m := _FRAC.match(s):
        a, b = int(m.group("a") or m.group("a1")), int(m.group("b") or m.group("b1"))
        return _sign(m) * Fraction(a, b), False, None
    if m := _SLASH.match(s):
        return _sign(m) * Fraction(int(m.group("a")), int(m.group("b"))), False, None
    for pattern in (_PI, _PI_FRAC):
        if m := pattern.match(s):
            return _sign(m) * Fraction(int(m.group("c") or 1), int(m.group("d") or 1)), True, None
    if m := _FRAC_PI.match(s):
        return _sign(m) * Fraction(int(m.group("c")), int(m.group("d"))), True, None
    return None


def round_half_up(x: Fraction, places: int) -> Fraction:
    scale = Fraction(10) ** places
    magnitude = math.floor(abs(x) * scale + Fraction(1, 2)) / scale
    return magnitude if x >= 0 else -magnitude


def close(a: Fraction, b: Fraction, tolerance: float) -> bool:
    """Exact equality, or relative closeness when a tolerance is asked for."""
    if a == b:
        return True
    return tolerance > 0 and abs(a - b) <= Fraction(tolerance) * max(abs(a), abs(b))


def _candidates(n: Num, other: Num, percent: str) -> list[Fraction]:
    """The values a number may stand for under the percent policy (see verify_math)."""
    if not n.percent or other.percent or percent == "strip":
        return [n.value]
    if percent == "strict":
        return [n.value / 100]
    return [n.value, n.value / 100]  # "equal": x% matches x and x/100 when only one side has %


def numbers_equal(pred: Num, gold: Num, *, percent: str = "equal", tolerance: float = 0.0,
                  gold_precision: bool = True, units: str = "strip") -> bool | None:
    """Compare two exactly parsed numbers; None when the fast path cannot decide (pi vs decimal)."""
    if pred.var and gold.var and pred.var != gold.var:
        return False
    if units == "match" and pred.unit and gold.unit and pred.unit != gold.unit:
        return False
    if pred.pi != gold.pi:
        degree_side, pi_side = (pred, gold) if gold.pi else (gold, pred)
        if degree_side.degree:  # 45^\circ == \pi/4: a degree-marked number equals its radians
            return close(degree_side.value / 180, pi_side.value, tolerance)
        return None
    for p in _candidates(pred, gold, percent):
        for g in _candidates(gold, pred, percent):
            if close(p, g, tolerance):
                return True
            if gold_precision and rounded_match(p, pred.decimals, g, gold.decimals):
                return True
    return False


def rounded_match(pred: Fraction, pred_decimals: int | None, gold: Fraction,
                  gold_decimals: int | None) -> bool:
    """Gold-precision-aware matching (verification-and-eval.md §6.1): a decimal gold with >= 2
    places stands for a rounded value, so an exact non-decimal prediction (1/3) matches when it
    rounds to it (0.33); a decimal prediction with >= 6 places (MV's float_rounding) matches an
    exact non-decimal gold that rounds to it (1/12 vs 0.0833333)."""
    if gold_decimals is not None and gold_decimals >= 2 and pred_decimals is None:
        return round_half_up(pred, gold_decimals) == gold
    if pred_decimals is not None and pred_decimals >= 6 and gold_decimals is None:
        return round_half_up(gold, pred_decimals) == pred
    return False


# ---------------------------------------------------------------------------------------------
# Magnitude pre-check: a tiny recursive-descent reader over LaTeX tokens that tracks log10|x|.

_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|\d+(?:\.\d+)?|\S")
_OPEN, _CLOSE = {"{": "}", "(": ")", "[": "]", "\\{": "\\}"}, {"}", ")", "]", "\\}"}


class _TooBig(Exception):
    pass


class _Undefined(_TooBig):
    """A division by zero: the value is undefined, and equal to nothing (sympy's zoo/nan would
    make `\\frac{1}{0}` equal `\\frac{2}{0}`, and `12:00` equal `1:00`)."""


# Sizing and spacing commands that only decorate a bracket or a group: skipped, so that a tower
# wrapped in `\left( \right)` or a box is read like the bare tower.
_TRANSPARENT = {"\\left", "\\right", "\\middle", "\\big", "\\Big", "\\bigg", "\\Bigg",
                "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\Biggl",
                "\\Biggr", "\\displaystyle", "\\textstyle", "\\boxed", "\\fbox",
                "\\operatorname", "\\mathrm", "\\mathbf", "\\mathit", "\\text", "\\,", "\\;",
                "\\!", "\\ ", "\\quad"}
_LOG10_E = math.log10(math.e)


def nesting_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "})]":
            depth = max(depth - 1, 0)
    return deepest


_ARGUMENT_BEFORE = re.compile(r"(?:[\^_}\]]|\\[A-Za-z]+)\s*$")


def group_depth(text: str) -> int:
    """Nesting depth of bare groups: `(`, `[`, `\\{` and `{` that is not a command argument."""
    stack, deepest = [], 0
    for m in re.finditer(r"\\[{}]|[{}()\[\]]", text):
        tok = m.group()
        if tok == "{":
            stack.append(not _ARGUMENT_BEFORE.search(text[max(0, m.start() - 30):m.start()]))
        elif tok in ("(", "[", "\\{"):
            stack.append(True)
        elif stack:
            stack.pop()
        deepest = max(deepest, sum(stack))
    return deepest


def magnitude_issue(text: str) -> str | None:
    """Why `text` must not reach sympy (too long, too deep, numbers too large), or None."""
    if len(text) > MAX_SPAN_CHARS:
        return f"answer span too long ({len(text)} chars)"
    if nesting_depth(text) > MAX_DEPTH or group_depth(text) > MAX_GROUP_DEPTH:
        return "nesting too deep"
    if re.search(r"\d{%d}" % (MAX_DIGITS + 1), text):
        return "number too large to evaluate"
    try:
        _Magnitude([t for t in _TOKEN.findall(text) if t not in _TRANSPARENT]).run()
    except _Undefined as e:
        return f"undefined value ({e})"
    except _TooBig as e:
        return f"number too large to evaluate ({e})"
    except RecursionError:
        return "nesting too deep"
    return None


class _Magnitude:
    """Reads tokens as expr := term (+|- term)*, term := factor (op factor | implicit factor)*,
    factor := sign* primary (^ primary | ! | _ primary)*. Values are log10|x| (None = symbolic)."""

    def __init__(self, tokens: list[str]):
        self.toks, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def run(self) -> None:
        while self.peek() is not None:
            self.expr()
            if self.peek() is not None:
                self.i += 1  # skip whatever stopped the expression (a stray `)`, `,`, `=`)

    def expr(self, close: str | None = None) -> float | None:
        value = self.term(close)
        while self.peek() in ("+", "-", "\\pm"):
            self.i += 1
            rhs = self.term(close)
            value = None if value is None or rhs is None else max(value, rhs) + math.log10(2)
        return value

    def term(self, close: str | None) -> float | None:
        value = self.factor(close)
        while (tok := self.peek()) is not None and tok != close and tok not in _CLOSE \
                and tok not in ("+", "-", "\\pm", ",", "=", "<", ">", "&", "\\\\", "|"):
            divide = tok == "/"
            if tok in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.i += 1
                divide = divide or tok == "\\div"
            before = self.i
            rhs = self.factor(close)
            if self.i == before:
                self.i += 1  # a token no rule consumes: skip it
                continue
            if divide and rhs == -math.inf:
                raise _Undefined("division by zero")
            if value is not None and rhs is not None:
                value = value - rhs if divide else value + rhs
                if abs(value) > MAX_DIGITS and value != -math.inf:
                    raise _TooBig(f"product ~1e{value:.0f}")
            else:
                value = None
        return value

    def factor(self, close: str | None) -> float | None:
        while self.peek() in ("-", "+"):
            self.i += 1
        value = self.primary(close)
        while (tok := self.peek()) in ("^", "!", "_"):
            self.i += 1
            if tok == "!":
                value = self._factorial(value)
            elif tok == "_":
                self.primary(close)
            else:
                value = self._power(value, self.primary(close))
        return value

    def _power(self, base: float | None, exponent: float | None) -> float | None:
        if exponent is None or exponent == -math.inf:
            return None if base is None or exponent is None else 0.0
        if exponent > 15:  # the exponent itself has more than 15 digits
            if base is None or base != 0.0:
                raise _TooBig("exponent with more than 15 digits")
            return 0.0
        power = 10.0 ** exponent
        if base == -math.inf:  # 0^n
            return base
        if base is None:
            if power > 10_000:
                raise _TooBig(f"symbolic power with exponent ~1e{exponent:.0f}")
            return None
        result = base * power
        if abs(result) > MAX_DIGITS:
            raise _TooBig(f"~1e{result:.0f}")
        return result

    @staticmethod
    def _exp(arg: float | None) -> float | None:
        """log10 of exp(x) for |x| = 10**arg: x * log10(e)."""
        if arg is None:
            return None
        if arg == -math.inf:
            return 0.0
        if arg > math.log10(MAX_DIGITS / _LOG10_E):
            raise _TooBig(f"exp of ~1e{arg:.1f}")
        return 10.0 ** arg * _LOG10_E

    @staticmethod
    def _binom(n: float | None, k: float | None) -> float | None:
        """An upper bound on log10 C(n, k): min(k, n - k) * log10(n)."""
        if n is None or n == -math.inf:
            return None
        if n > 15:
            raise _TooBig(f"binomial of ~1e{n:.0f}")
        n_lin = 10.0 ** n
        k_lin = n_lin if k is None else (0.0 if k == -math.inf else 10.0 ** k)
        bound = min(k_lin, max(n_lin - k_lin, 0.0)) * math.log10(max(n_lin, 1.0))
        if bound > MAX_DIGITS:
            raise _TooBig(f"binomial of ~1e{n:.0f}")
        return None if k is None else bound

    def _factorial(self, value: float | None) -> float | None:
        if value is None:
            return None
        if value > math.log10(MAX_FACTORIAL):
            raise _TooBig(f"factorial of ~1e{value:.1f}")
        n = round(10.0 ** value) if value > -math.inf else 0
        return math.lgamma(n + 1) / math.log(10)

    def primary(self, close: str | None) -> float | None:
        tok = self.peek()
        if tok is None or tok == close or tok in _CLOSE:
            return None
        self.i += 1
        if tok[0].isdigit():
            whole = tok.split(".")[0].lstrip("0")
            if len(whole) > 300:  # float() would overflow; the digit count is the magnitude
                return len(whole) - 1.0
            return math.log10(float(tok)) if float(tok) > 0 else -math.inf
        if tok in _OPEN:
            value = self.expr(_OPEN[tok])
            while self.peek() not in (None, _OPEN[tok]):  # commas in tuples: read every part
                self.i += 1
                self.expr(_OPEN[tok])
            if self.peek() == _OPEN[tok]:
                self.i += 1
            return value
        if tok in ("\\frac", "\\dfrac", "\\tfrac", "\\cfrac"):
            num, den = self.primary(None), self.primary(None)
            if den == -math.inf:
                raise _Undefined("division by zero")
            return None if num is None or den is None else num - den
        if tok == "e":  # Euler's number (a variable named e is only over-estimated)
            return _LOG10_E
        if tok in ("\\exp", "\\sinh", "\\cosh"):
            return self._exp(self.primary(None))
        if tok in ("\\binom", "\\dbinom", "\\tbinom"):
            return self._binom(self.primary(None), self.primary(None))
        if tok == "\\sqrt":
            if self.peek() == "[":
                self.primary(None)
            inner = self.primary(None)
            return None if inner is None else inner / 2
        if tok in ("\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr"):
            return self.primary(close)
        return None  # a letter or another command: symbolic


_SEVERAL = re.compile(r"^[-+]?\d+(?:\.\d+)?(?:\s+[-+]?\d+(?:\.\d+)?)+$")


def several_numbers(text: str) -> bool:
    """`5 6` is two answers, not 11 (which is what Math-Verify 0.9.0 makes of it); spaced
    thousands (`1 000`) and mixed numbers (`4 4/9`) are handled by parse_number before this."""
    return _SEVERAL.match(text.strip()) is not None


def structural_key(text: str) -> str:
    """A normal form for comparing expressions too large to evaluate: `9^{9^{9^{9}}}` and
    `9^{9^{9^9}}` get the same key; `\\frac{1}{23}` and `\\frac{12}{3}` do not."""
    s = re.sub(r"\\(?:left|right|displaystyle|[,!; ])", "", text)
    s = re.sub(r"\\[dtc]frac", r"\\frac", s).replace("\\cdot", "*").replace("\\times", "*")
    s = re.sub(r"\s+", "", s)
    for _ in range(MAX_DEPTH):
        collapsed = re.sub(r"\{(\\?[A-Za-z0-9])\}", r"\1", s)
        if collapsed == s:
            break
        s = collapsed
    return s
