"""Solution writers for the synthetic task families (evals/tasks.py).

    r1_solution(problem, rng, error_rate=0.0) -> str     R1-style trace for teacher corpora
    r1_trace(problem, rng, plant_error) -> (text, boxed)  the same, with the coin decided by the caller
    short_solution(problem) -> str                       plain worked answer for base-model corpora

An R1 trace is `<think>\\n` + a restatement and plan, the steps of `meta["steps"]` (numbered or
sequenced), a reflection ("Wait, let me check ...") that re-derives one step, a verification
(working a step backwards, recomputing the chain, or substituting the root of an equation), then
`</think>\\n\\n` + a short answer ending in `\\boxed{}`. Correct traces sometimes make a slip and
catch it at once, as R1 does. A planted error replaces one step's result with a wrong value and
every later step is recomputed from it, so the boxed answer is wrong; the reflection and the
verification then look at other steps and miss it (a confident wrong trace, which the verifier
filter must reject). Phrasing is drawn from `rng`, so a corpus is not one template.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from evals.tasks import fmt_latex, fmt_plain, step_args, step_values
from evals.types import Problem

_SYM = {"+": "+", "-": "-", "*": "*", "/": "÷"}
# first words of step labels that may be lower-cased after a connector ("Next, subtract ...")
_LOWER = {"Inside", "Multiplication", "Division", "Subtract", "Add", "Divide", "First", "Reduce",
          "Altogether", "Together", "In", "The", "After", "So", "Then", "It", "Shared", "Split", "Each",
          "What", "Rent", "Over", "For"}


def _op(v: Fraction, first: bool = False, group: bool = False) -> str:
    """An operand: negatives after the first position and fractions next to * or ÷ in parentheses."""
    s = fmt_plain(v)
    return f"({s})" if (v < 0 and not first) or (group and v.denominator > 1) else s


def operation(op: str, args: list[Fraction]) -> str:
    """One +, -, *, / or mod step's operation as written, without its result: "12 - (-5)"."""
    a, b = args[0], args[1]
    if op == "mod":
        return f"{fmt_plain(a)} mod {fmt_plain(b)}"
    if op == "mulmod":
        raise ValueError("a mulmod step is two operations; it has no single rendering")
    group = op in "*/"
    return f"{_op(a, True, group)} {_SYM[op]} {_op(b, False, group)}"


def calc(op: str, args: list[Fraction], r: Fraction) -> str:
    """The rendered computation of one step, ending in its (possibly wrong) result."""
    a, b = args[0], args[1]
    if op == "mod":
        return f"{operation(op, args)} = {fmt_plain(r)}"
    if op == "mulmod":
        p = a * b
        a, b, p, m, r = map(fmt_plain, (a, b, p, args[2], r))
        return f"{a} * {b} = {p}, and {p} mod {m} = {r}"
    head = operation(op, args)
    mid = ""
    if op in "+-" and (a.denominator > 1 or b.denominator > 1) and a.denominator != b.denominator:
        lcd = math.lcm(a.denominator, b.denominator)
        x, y = a.numerator * (lcd // a.denominator), b.numerator * (lcd // b.denominator)
        mid = f" = {x}/{lcd} {_SYM[op]} {_op(Fraction(y), False)}/{lcd}"
    elif op == "*" and (a.denominator > 1 or b.denominator > 1):
        num, den = a.numerator * b.numerator, a.denominator * b.denominator
        if den > 1 and f"{num}/{den}" != fmt_plain(r):
            mid = f" = {num}/{den}"
    elif op == "/" and (a.denominator > 1 or b.denominator > 1) and b != 0:
        mid = f" = {_op(a, True, True)} * {_op(1 / b, False, True)}"
    return f"{head}{mid} = {fmt_plain(r)}"


def check(op: str, args: list[Fraction], r: Fraction) -> str:
    """The inverse of a correct step ("21 - 7 = 14"), for reflections and verifications."""
    a, b = args[0], args[1]
    if op in ("mod", "mulmod"):
        p, m = (a, b) if op == "mod" else (a * b, args[2])
        return f"{fmt_plain(p)} = {fmt_plain((p - r) / m)} * {fmt_plain(m)} + {fmt_plain(r)}"
    if op == "+":
        return f"{_op(r, True)} - {_op(b)} = {fmt_plain(a)}"
    if op == "-":
        return f"{_op(r, True)} + {_op(b)} = {fmt_plain(a)}"
    if op == "*" and b != 0:
        return f"{_op(r, True, True)} ÷ {_op(b, False, True)} = {fmt_plain(a)}"
    if op == "/":
        return f"{_op(r, True, True)} * {_op(b, False, True)} = {fmt_plain(a)}"
    return f"{calc(op, args, r)}, since anything times 0 is 0"


def _label(steps: list[dict], values: list[Fraction], i: int, r: Fraction | None = None) -> str:
    """Step i's sentence; `r` replaces its result (a slip about to be caught)."""
    step, r = steps[i], values[i] if r is None else r
    text = calc(step["op"], step_args(steps, values, i), r)
    out = step["label"].replace("{calc}", text).replace("{r}", fmt_plain(r))
    for k in range(i):
        out = out.replace(f"{{#{k}}}", fmt_plain(values[k]))
    return out


def _wrong(op: str, args: list[Fraction], v: Fraction, rng: random.Random) -> Fraction:
    """A plausible slip: off by a little, or by ten, or the wrong residue."""
    if op in ("mod", "mulmod"):
        m = int(args[-1])
        return Fraction((int(v) + rng.randint(1, m - 1)) % m)
    delta = rng.choice([1, -1, 2, -2, 3, 10, -10])
    return v + delta if v.denominator == 1 else Fraction(v.numerator + delta, v.denominator)


def _plant(steps: list[dict], rng: random.Random) -> tuple[int, list[Fraction]]:
    """Corrupt one step so that the final answer changes; the last step always works."""
    good = step_values(steps)
    order = list(range(len(steps)))
    rng.shuffle(order)
    for i in order + [len(steps) - 1]:
        wrong = _wrong(steps[i]["op"], step_args(steps, good, i), good[i], rng)
        try:
            values = step_values(steps, {i: wrong})
        except (ZeroDivisionError, ValueError):
            continue
        if values[-1] != good[-1]:
            return i, values
    raise AssertionError("the last step's override always changes the answer")


_OPEN = ["Okay, let's see.", "Alright, let me work through this.", "Let me think about this step by step.",
         "Hmm, let me solve this carefully.", "Okay, so here is the problem."]
_PLAN = {
    "arithmetic": ["I'll follow the order of operations: parentheses first, then multiplication, then "
                   "addition and subtraction from left to right.", "Let me evaluate it piece by piece."],
    "chain": ["I'll add and subtract from left to right, keeping a running total.",
              "Let me keep a running total, one number at a time."],
    "linear": ["I'll isolate {v} one operation at a time.", "The idea is to undo each operation on {v}."],
    "word": ["Let me break it into smaller steps.", "Let me figure out the quantities one at a time."],
    "fractions": ["I'll combine the fractions one operation at a time, using common denominators.",
                  "Let me work through the fractions carefully, reducing as I go."],
    "modular": ["I'll reduce modulo the divisor after every multiplication to keep the numbers small.",
                "Working with remainders keeps the numbers small."],
}
_CONNECT = ["First, ", "Next, ", "Then, ", "Now, ", "After that, "]
_OK = ["Yes, that's right.", "That checks out.", "Good, that holds.", "Okay, that's correct."]


def _statement(problem: Problem) -> str:
    m = problem.meta
    if m["task"] == "linear":
        return f"I need to solve {m['equation']} for {m['var']}."
    if m["task"] in ("arithmetic", "chain"):
        return f"I need to evaluate {m['expression']}."
    if m["task"] == "fractions":
        return f"I need to evaluate ${m['expression']}$."
    if m["task"] == "modular" and m["form"] == "power":
        a, e, mod = m["operands"]
        return f"I need {a}^{e} mod {mod}. Using repeated squaring, I'll build up powers of {a}."
    if m["task"] == "modular":
        a, b, c, mod = m["operands"]
        return f"I need ({a} * {b} + {c}) mod {mod}."
    return "Let me read the problem again and pick out the numbers."


def _substitute(problem: Problem, x: Fraction) -> str | None:
    """Linear equations: plug the root back into both sides."""
    m = problem.meta
    if m.get("task") != "linear":
        return None
    xs = _op(x)
    sign = lambda k: f"{'+' if k >= 0 else '-'} {abs(k)}"  # noqa: E731
    if m["form"] == "F1":
        a, b, c = m["coefficients"]
        return f"{a} * {xs} {sign(b)} = {fmt_plain(a * x + b)}, which equals {c}"
    if m["form"] == "F2":
        a, b, c = m["coefficients"]
        return (f"{a} * ({fmt_plain(x)} {sign(b)}) = {a} * {_op(x + b)} = {fmt_plain(a * (x + b))}, "
                f"which equals {c}")
    a, b, c, e = m["coefficients"]
    return (f"the left side is {a} * {xs} {sign(b)} = {fmt_plain(a * x + b)} and the right side "
            f"is {c} * {xs} {sign(e)} = {fmt_plain(c * x + e)}; they match")


def _connected(i: int, n: int, text: str, style: str, rng: random.Random) -> str:
    if style == "numbered":
        return f"Step {i + 1}: {text}"
    if style == "listed":
        return f"{i + 1}. {text}"
    word = text.split(" ", 1)[0].rstrip(",:")
    lowered = text[0].lower() + text[1:] if word in _LOWER else text
    lead = "Finally, " if i == n - 1 else ("First, " if i == 0 else rng.choice(_CONNECT[1:]))
    return lead + lowered if not text.startswith(("First", "Finally")) else text


def r1_trace(problem: Problem, rng: random.Random, plant_error: bool) -> tuple[str, str]:
    """(the R1-style completion, the LaTeX answer it boxes); `plant_error` makes that answer wrong."""
    steps = problem.meta["steps"]
    n = len(steps)
    bad, values = _plant(steps, rng) if plant_error else (None, step_values(steps))
    slip = rng.randrange(n) if bad is None and rng.random() < 0.25 else None
    style = rng.choice(["numbered", "listed", "sequenced"])
    plan = rng.choice(_PLAN[problem.meta["task"]]).replace("{v}", problem.meta.get("var", "x"))
    parts = [f"{rng.choice(_OPEN)} {_statement(problem)} {plan}"]
    lines = []
    for i, step in enumerate(steps):
        text = _label(steps, values, i)
        if i == slip:  # a caught slip: state a wrong result, notice, redo it
            wrong = _wrong(step["op"], step_args(steps, values, i), values[i], rng)
            text = (f"{_label(steps, values, i, wrong).rstrip('.')}... wait, no. "
                    f"{rng.choice(['Let me redo that:', 'Recomputing:', 'That is off:'])} {text}")
        lines.append(_connected(i, n, text, style, rng))
    parts.append("\n".join(lines))
    others = [i for i in range(n) if i != bad]
    k = rng.choice(others)
    args = step_args(steps, values, k)
    wait = rng.choice(["Wait, let me check", "Wait, let me double-check", "Hmm, wait. Let me verify"])
    parts.append(f"{wait} step {k + 1} again: {calc(steps[k]['op'], args, values[k])}. Going backwards, "
                 f"{check(steps[k]['op'], args, values[k])}. {rng.choice(_OK)}")
    final = values[-1]
    sub = _substitute(problem, final) if bad is None else None
    last = max(others)
    kind = 0.0 if k == last else rng.random()  # never undo the step the reflection just checked
    if sub and kind < 0.7:
        parts.append(f"Let me verify by substituting {problem.meta['var']} = {fmt_plain(final)}: {sub}. ✓")
    elif kind < 0.5:
        parts.append("Let me recompute the chain once more to be sure: "
                     + " → ".join(fmt_plain(v) for v in values) + ". Same result.")
    else:
        args = step_args(steps, values, last)
        undo = check(steps[last]["op"], args, values[last])
        parts.append(f"To verify, I'll undo step {last + 1}: {undo}. ✓")
    parts.append(rng.choice(["So the answer is {a}.", "Therefore the result is {a}.", "That gives {a}."])
                 .format(a=fmt_plain(final)))
    boxed = fmt_latex(final)
    if n <= 5:  # a recap of the work, as R1's summaries do, so the answer alone is a worked solution
        summary = "; ".join(calc(s["op"], step_args(steps, values, i), values[i])
                            for i, s in enumerate(steps))
        answer = [f"{summary}.\n\nThe answer is $\\boxed{{{boxed}}}$.",
                  f"Working step by step: {summary}.\n\nTherefore, the final answer is \\boxed{{{boxed}}}."]
    else:  # long chains get just the answer
        answer = [f"**Answer:** \\boxed{{{boxed}}}", f"The answer is $\\boxed{{{boxed}}}$."]
    answer = rng.choice(answer)
    return "<think>\n" + "\n\n".join(parts) + "\n</think>\n\n" + answer, boxed


def r1_solution(problem: Problem, rng: random.Random, error_rate: float = 0.0) -> str:
    """An R1-style trace; with probability `error_rate` it carries a planted, propagated error."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    return r1_trace(problem, rng, rng.random() < error_rate)[0]


def short_solution(problem: Problem) -> str:
    """"7 * 3 = 21; 12 + 21 = 33. The answer is \\boxed{33}." (deterministic): the worked steps
    and the boxed answer, so a base model trained on it can be scored by the math verifier."""
    steps = problem.meta["steps"]
    values = step_values(steps)
    work = "; ".join(calc(s["op"], step_args(steps, values, i), values[i]) for i, s in enumerate(steps))
    return f"{work}. The answer is \\boxed{{{fmt_latex(values[-1])}}}."


def answer_solution(problem: Problem) -> str:
    """"The answer is \\boxed{33}." (deterministic): the answer without working, the reply of a
    model that answers at once; a student pretrained on it must learn the working elsewhere."""
    return f"The answer is \\boxed{{{problem.reference}}}."


def step_problems(problem: Problem) -> list[tuple[str, str, str]]:
    """Each step of the worked solution as its own one-operation question, its one-line working
    and its LaTeX answer: [("What is 3 + 4?", "3 + 4 = 7", "7"), ...]. The facts a problem's
    working rests on, written as the working writes them, without the chaining (mulmod steps,
    two operations each, are left out)."""
    steps = problem.meta["steps"]
    values = step_values(steps)
    out = []
    for i, s in enumerate(steps):
        if s["op"] != "mulmod":
            args = step_args(steps, values, i)
            out.append((f"What is {operation(s['op'], args)}?", calc(s["op"], args, values[i]),
                        fmt_latex(values[i])))
    return out
