"""Synthetic reasoning task families with seeds, difficulty knobs and disjoint train/test splits.

    generate(task, n, split="train", seed=0, difficulty=2) -> list[Problem]

Families (TASKS): "arithmetic" (multi-step integer +, -, * with parentheses), "chain" (a running
sum of small numbers, left to right: few distinct steps, long chains), "linear" (one
unknown, one to three steps), "word" (GSM-style templates: prices, rates, sharing, ages),
"fractions" (answers as reduced LaTeX `\\frac{a}{b}`, or an integer when whole), "modular"
((a*b + c) mod m and a^b mod m by repeated squaring). Difficulty runs 1..5 and grows the number
of steps and the size of the numbers.

Splits: every candidate has a canonical key (the mathematical content: expression, coefficients,
template + numbers; never the names, items or question phrasing), and `split_of(task, key)` puts
each key in exactly one split by its sha256, so train and test never share a problem, whatever
the seeds and difficulties; candidates that land in the other split are rejected. Within one call
a key appears once. The same arguments always give the same problems (the RNG is seeded from a
string, which Python hashes with sha512, not with the per-process hash seed).

Each problem's `meta["steps"]` is the worked solution as data, which `evals/solutions.py` renders
(and corrupts, for planted errors): a list of {"op", "args", "label", "result"} where op is one of
+ - * / mod mulmod, args are numbers ("3", "-5", "3/4") or "#i" (the result of step i), label is a
sentence with {calc} (the rendered computation), {r} (this step's result) and {#i} placeholders.
The last step's result is the answer.
"""

from __future__ import annotations

import hashlib
import random
from fractions import Fraction
from typing import Callable, NamedTuple

from evals.types import Problem

SPLITS = ("train", "test")
DIFFICULTIES = (1, 2, 3, 4, 5)


class _Reject(Exception):
    """A candidate that breaks a family's constraints (zero division, numbers too large)."""


# ---------------------------------------------------------------- numbers and steps

def fmt_plain(v: Fraction) -> str:
    """12, -5, 3/4: how numbers appear inside reasoning text."""
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def fmt_latex(v: Fraction) -> str:
    """12, -5, \\frac{3}{4}, -\\frac{3}{4}: the gold answer and the boxed answer."""
    if v.denominator == 1:
        return str(v.numerator)
    return f"{'-' if v < 0 else ''}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"


def apply_op(op: str, args: list[Fraction]) -> Fraction:
    a, b = args[0], args[1]
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b  # ZeroDivisionError is the caller's to handle
    if op == "mod":
        return Fraction(int(a) % int(b))
    if op == "mulmod":
        return Fraction(int(a * b) % int(args[2]))
    raise ValueError(f"unknown step op {op!r}")


def step_args(steps: list[dict], values: list[Fraction], i: int) -> list[Fraction]:
    """Step i's operands, with "#k" references read from `values`."""
    return [values[int(a[1:])] if a.startswith("#") else Fraction(a) for a in steps[i]["args"]]


def step_values(steps: list[dict], override: dict[int, Fraction] | None = None) -> list[Fraction]:
    """Every step's result, recomputed; `override` replaces some results (a planted error) and the
    change propagates to the steps that use them."""
    values: list[Fraction] = []
    for i, step in enumerate(steps):
        v = apply_op(step["op"], step_args(steps, values, i))
        values.append(override[i] if override and i in override else v)
    return values


class _Steps:
    """Builds `meta["steps"]`: `S(op, *args, label=...)` appends a step and returns its "#i" ref."""

    def __init__(self, limit: int | None = None, den_limit: int | None = None, nonzero: bool = False):
        self.steps: list[dict] = []
        self.values: list[Fraction] = []
        # Rejection knobs: values past `limit`, denominators past `den_limit`, and zero results
        # (`x - x` is a dull step, and a zero factor would swallow a planted error downstream).
        self.limit, self.den_limit, self.nonzero = limit, den_limit, nonzero

    def __call__(self, op: str, *args, label: str = "{calc}.") -> str:
        enc = [a if isinstance(a, str) else fmt_plain(Fraction(a)) for a in args]
        self.steps.append({"op": op, "args": enc, "label": label, "result": ""})
        try:
            v = apply_op(op, step_args(self.steps, self.values, len(self.steps) - 1))
        except ZeroDivisionError:
            raise _Reject from None
        if ((self.limit and abs(v) > self.limit) or (self.den_limit and v.denominator > self.den_limit)
                or (self.nonzero and v == 0)):
            raise _Reject
        self.steps[-1]["result"] = fmt_plain(v)
        self.values.append(v)
        return f"#{len(self.steps) - 1}"

    def value(self, ref) -> Fraction:
        return self.values[int(ref[1:])] if isinstance(ref, str) else Fraction(ref)


class Candidate(NamedTuple):
    key: str  # canonical content; decides the split
    question: str
    steps: _Steps
    meta: dict  # family-specific extras (expression, equation, template)


def split_of(task: str, key: str) -> str:
    """The split a canonical problem belongs to: half the key space each, by sha256."""
    return SPLITS[hashlib.sha256(f"{task}|{key}".encode()).digest()[0] & 1]


# ---------------------------------------------------------------- expression trees

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _tree(rng: random.Random, n_ops: int, leaf: Callable, ops: list[str]):
    if n_ops == 0:
        return leaf()
    left = rng.randrange(n_ops)
    return [rng.choice(ops), _tree(rng, left, leaf, ops), _tree(rng, n_ops - 1 - left, leaf, ops)]


def _render(node, leaf: Callable, sym: dict) -> str:
    """Infix text with exactly the parentheses the tree needs, plus a right operand of equal
    precedence in parentheses (3 + (4 + 5)), so the text determines the tree and its steps."""
    if not isinstance(node, list):
        return leaf(node)
    op, left, right = node
    ls, rs = _render(left, leaf, sym), _render(right, leaf, sym)
    if isinstance(left, list) and _PREC[left[0]] < _PREC[op]:
        ls = f"({ls})"
    if isinstance(right, list) and _PREC[right[0]] <= _PREC[op]:
        rs = f"({rs})"
    return f"{ls} {sym[op]} {rs}"


def _tree_steps(node, S: _Steps, parent: str | None = None, paren: bool = False):
    """Post-order steps of an expression tree; returns the root's ref (or leaf value)."""
    if not isinstance(node, list):
        return node
    op, left, right = node
    a = _tree_steps(left, S, op, isinstance(left, list) and _PREC[left[0]] < _PREC[op])
    b = _tree_steps(right, S, op, isinstance(right, list) and _PREC[right[0]] <= _PREC[op])
    if paren:
        label = "Inside the parentheses, {calc}."
    elif parent in ("+", "-") and _PREC[op] == 2:
        word = "Multiplication" if op == "*" else "Division"
        label = f"{word} comes before addition and subtraction: {{calc}}."
    else:
        label = "{calc}."
    return S(op, a, b, label=label)


# ---------------------------------------------------------------- families

def _arithmetic(rng: random.Random, d: int) -> Candidate:
    hi = (9, 20, 50, 99, 200)[d - 1]
    tree = _tree(rng, d + 1, lambda: rng.randint(1, hi), ["+", "-", "*"])
    expr = _render(tree, str, {"+": "+", "-": "-", "*": "*"})
    S = _Steps(limit=10 ** (d + 3), nonzero=True)
    _tree_steps(tree, S)
    ask = rng.choice(["Compute {e}.", "What is {e}?", "Evaluate {e}.", "Find the value of {e}."])
    return Candidate(expr, ask.format(e=expr), S, {"expression": expr})


def _lin(coef, var: str, const) -> str:
    """3x + 5, 3x - 5, x + 2 (coef 1), 7 (coef 0)."""
    head = "" if coef == 0 else f"{'' if coef == 1 else coef}{var}"
    if not head:
        return str(const)
    return head if const == 0 else f"{head} {'+' if const > 0 else '-'} {abs(const)}"


def _move_const(S: _Steps, total, const, then: str) -> str:
    """total - const as a step worded 'subtract/add ... from/to both sides'."""
    if const >= 0:
        return S("-", total, const, label=f"Subtract {const} from both sides: {{calc}}, so {then}.")
    return S("+", total, -const, label=f"Add {-const} to both sides: {{calc}}, so {then}.")


def _linear(rng: random.Random, d: int) -> Candidate:
    v = rng.choice("xxxyn")
    hi = (15, 20, 30, 50, 100)[d - 1]
    x = rng.randint(1 if d == 1 else -hi, hi)
    a = rng.randint(2, (12, 12, 15, 20, 30)[d - 1])
    b = rng.choice([1, -1]) * rng.randint(1, 2 * hi) if d > 1 else rng.randint(1, 2 * hi)
    form = rng.choice(("F1", "F2", "F3")[:min(d, 3)])
    S = _Steps()
    if form == "F1":  # a*x + b = c
        c = a * x + b
        eq, key = f"{_lin(a, v, b)} = {c}", (form, a, b, c)
        r = _move_const(S, c, b, f"{a}{v} = {{r}}")
        S("/", r, a, label=f"Divide both sides by {a}: {{calc}}, so {v} = {{r}}.")
    elif form == "F2":  # a*(x + b) = c
        c = a * (x + b)
        eq, key = f"{a}({_lin(1, v, b)}) = {c}", (form, a, b, c)
        r = S("/", c, a, label=f"Divide both sides by {a}: {{calc}}, so {_lin(1, v, b)} = {{r}}.")
        _move_const(S, r, b, f"{v} = {{r}}")
    else:  # a*x + b = c*x + e, a > c
        c = rng.randint(1, a - 1)
        e = (a - c) * x + b
        eq, key = f"{_lin(a, v, b)} = {_lin(c, v, e)}", (form, a, b, c, e)
        k = S("-", a, c, label=f"Subtract {_lin(c, v, 0)} from both sides: {{calc}}, so {{r}}{v} "
                               f"{'+' if b >= 0 else '-'} {abs(b)} = {e}.")
        r = _move_const(S, e, b, f"{{#0}}{v} = {{r}}")
        S("/", r, k, label=f"Divide both sides by {{#0}}: {{calc}}, so {v} = {{r}}.")
    ask = rng.choice(["Solve for {v}: {eq}.", "Find {v} if {eq}.", "What value of {v} satisfies {eq}?"])
    meta = {"equation": eq, "form": form, "var": v, "coefficients": list(key[1:])}
    return Candidate("|".join(map(str, key)), ask.format(v=v, eq=eq), S, meta)


def _fractions(rng: random.Random, d: int) -> Candidate:
    den = (6, 8, 10, 12, 12)[d - 1]
    ops = ["+", "-"] + (["*"] if d >= 2 else []) + (["/"] if d >= 3 else [])

    def leaf():
        b = rng.randint(2, den)
        return Fraction(rng.randint(1, b - 1 if d < 4 else 2 * b), b)

    tree = _tree(rng, min(d + 1, 5), leaf, ops)
    expr = _render(tree, fmt_latex, {"+": "+", "-": "-", "*": "\\times", "/": "\\div"})
    S = _Steps(limit=10 ** (d + 1), den_limit=(60, 120, 240, 500, 1000)[d - 1], nonzero=True)
    _tree_steps(tree, S)
    ask = rng.choice(["Compute ${e}$. Give the answer as a fraction in lowest terms.",
                      "Simplify ${e}$.", "What is ${e}$? Write your answer in lowest terms."])
    return Candidate(expr, ask.format(e=expr), S, {"expression": expr})


def _modular(rng: random.Random, d: int) -> Candidate:
    m = rng.randint((3, 7, 10, 20, 50)[d - 1], (13, 30, 60, 100, 1000)[d - 1])
    S = _Steps()
    if d == 1 or rng.random() < 0.4:  # (a*b + c) mod m
        hi = (20, 50, 100, 300, 1000)[d - 1]
        a, b, c = rng.randint(2, hi), rng.randint(2, hi), rng.randint(1, hi)
        p = S("*", a, b, label="First the product: {calc}.")
        s = S("+", p, c, label=f"Add {c}: {{calc}}.")
        S("mod", s, m, label=f"Reduce modulo {m}: {{calc}}.")
        ask = rng.choice([f"Compute ({a} * {b} + {c}) mod {m}.",
                          f"What is the remainder when {a} * {b} + {c} is divided by {m}?"])
        return Candidate(f"lin|{a}|{b}|{c}|{m}", ask, S, {"form": "affine", "operands": [a, b, c, m]})
    a = rng.randint(2, 3 * m)
    e = rng.randint(3, (20, 20, 60, 200, 1000)[d - 1])
    base = S("mod", a, m, label=f"First reduce the base: {{calc}}.") if a >= m else a
    powers, k = {1: base}, 1
    while 2 * k <= e:
        powers[2 * k] = S("mulmod", powers[k], powers[k], m, label=f"{a}^{2 * k} mod {m}: {{calc}}.")
        k *= 2
    bits = [p for p in sorted(powers, reverse=True) if e & p]
    acc, got = powers[bits[0]], bits[0]
    for p in bits[1:]:
        acc = S("mulmod", acc, powers[p], m, label=f"{a}^{got + p} = {a}^{got} * {a}^{p}: {{calc}}.")
        got += p
    if isinstance(acc, int):
        raise _Reject  # a < m and e == 1 would need no step
    ask = rng.choice([f"Compute {a}^{e} mod {m}.", f"What is the remainder when {a}^{e} is divided by {m}?",
                      f"Find ${a}^{{{e}}} \\bmod {m}$."])
    return Candidate(f"pow|{a}|{e}|{m}", ask, S, {"form": "power", "operands": [a, e, m]})


_NAMES = [("Maya", "she"), ("Liam", "he"), ("Ava", "she"), ("Noah", "he"), ("Zara", "she"),
          ("Omar", "he"), ("Priya", "she"), ("Kenji", "he"), ("Elena", "she"), ("Tariq", "he"),
          ("Sofia", "she"), ("Mateo", "he"), ("Amara", "she"), ("Felix", "he")]
_ITEMS = [("notebooks", "pens"), ("apples", "oranges"), ("stickers", "markers"), ("cups", "plates"),
          ("books", "posters"), ("socks", "hats")]


def _word(rng: random.Random, d: int) -> Candidate:
    """GSM-style templates; a template with s steps is eligible at difficulty >= s - 1."""
    hi = (12, 15, 20, 30, 50)[d - 1]
    (name, he), (name2, _) = rng.sample(_NAMES, 2)
    it1, it2 = rng.choice(_ITEMS)
    He, S = he.capitalize(), _Steps()
    t = rng.choice([t for t, steps in _WORD_STEPS.items() if steps <= d + 1])
    n = lambda lo=2, top=hi: rng.randint(lo, top)  # noqa: E731
    if t == "share":
        k, each = n(), n()
        a = rng.randint(1, k * each - 1)
        nums = (a, k * each - a, k)
        q = (f"{name} has {a} {it1} and buys {k * each - a} more. {He} shares them equally among {k} "
             f"friends. How many {it1} does each friend get?")
        tot = S("+", a, k * each - a, label=f"Altogether {name} has {{calc}} {it1}.")
        S("/", tot, k, label=f"Shared among {k} friends, each gets {{calc}}.")
    elif t == "workers":
        nums = (n(), n(), n())
        q = (f"Each of {nums[0]} workers packs {nums[1]} boxes per hour. How many boxes do they pack "
             f"in {nums[2]} hours?")
        r = S("*", nums[0], nums[1], label="Together the workers pack {calc} boxes per hour.")
        S("*", r, nums[2], label=f"In {nums[2]} hours that is {{calc}} boxes.")
    elif t == "savings":
        s, w = n(), n()
        nums = (s, w, rng.randint(1, s * w - 1))
        q = (f"{name} saves ${s} each week for {w} weeks, then spends ${nums[2]} on a gift. "
             f"How many dollars does {he} have left?")
        r = S("*", s, w, label="The savings come to {calc} dollars.")
        S("-", r, nums[2], label=f"After the gift, {{calc}} dollars are left.")
    elif t == "ages":
        a, k, y = n(3, 10 + 3 * d), n(2, 4), n(1)  # keep the ages human
        b = rng.randint(1, a * k - 1)
        nums = (a, k, b, y)
        q = (f"{name} is {a} years old. {name2} is {k} times as old as {name}, and their cousin is {b} "
             f"years younger than {name2}. How old will the cousin be in {y} years?")
        r = S("*", a, k, label=f"{name2}'s age is {{calc}}.")
        r = S("-", r, b, label="The cousin is {calc} years old now.")
        S("+", r, y, label=f"In {y} years the cousin will be {{calc}}.")
    elif t == "bakery":
        a, b = n(), n()
        c = rng.randint(1, a * b - 2)
        nums = (a, b, c, rng.randint(1, a * b - c - 1))
        q = (f"A bakery makes {a} trays of muffins with {b} muffins on each tray. It sells {c} muffins in "
             f"the morning and {nums[3]} in the afternoon. How many muffins are left?")
        tot = S("*", a, b, label="The bakery makes {calc} muffins.")
        sold = S("+", c, nums[3], label="It sells {calc} muffins in total.")
        S("-", tot, sold, label="So {calc} muffins are left.")
    elif t == "train":
        nums = (n(10, 10 * hi), n(1, 5), n(10, 10 * hi), n(1, 5))
        q = (f"A train travels at {nums[0]} km per hour for {nums[1]} hours, then at {nums[2]} km per hour "
             f"for {nums[3]} hours. How many kilometers does it travel in total?")
        r1 = S("*", nums[0], nums[1], label="The first part covers {calc} km.")
        r2 = S("*", nums[2], nums[3], label="The second part covers {calc} km.")
        S("+", r1, r2, label="In total the train travels {calc} km.")
    elif t == "change":
        q1, p1, q2, p2 = n(), n(1), n(), n(1)
        bill = next(v for v in (10, 20, 50, 100, 200, 500, 1000, 5000) if v > q1 * p1 + q2 * p2)
        nums = (q1, p1, q2, p2, bill)
        q = (f"{name} buys {q1} {it1} at ${p1} each and {q2} {it2} at ${p2} each. {He} pays with a "
             f"${bill} bill. How much change, in dollars, does {he} get?")
        c1 = S("*", q1, p1, label=f"The {it1} cost {{calc}} dollars.")
        c2 = S("*", q2, p2, label=f"The {it2} cost {{calc}} dollars.")
        tot = S("+", c1, c2, label="The total is {calc} dollars.")
        S("-", bill, tot, label="The change is {calc} dollars.")
    elif t == "discount":
        pct = rng.choice([10, 20, 25, 50])
        price, qty = 20 * n(1), n(2, 6)
        nums = (price, pct, qty)
        q = (f"A jacket costs ${price}. It is on sale for {pct}% off. {name} buys {qty} jackets at the "
             f"sale price. How many dollars does {he} pay?")
        r = S("*", price, pct, label=f"{pct}% of {price} is {price} * {pct} / 100; first {{calc}}.")
        off = S("/", r, 100, label="Then {calc}, so the discount is {r} dollars.")
        sale = S("-", price, off, label="The sale price is {calc} dollars.")
        S("*", sale, qty, label=f"For {qty} jackets: {{calc}} dollars.")
    else:  # wages: five steps
        w, h, days, k, each = n(8, 8 + hi), n(2, 8), n(2, 6), n(2, 5), n(1)
        spend = w * h * days - k * each
        if spend < 2:
            raise _Reject
        rent = rng.randint(1, spend - 1)
        nums = (w, h, days, rent, spend - rent, k)
        q = (f"{name} earns ${w} per hour and works {h} hours on each of {days} days. {He} spends ${rent} "
             f"on rent and ${spend - rent} on food, then splits the rest equally into {k} savings jars. "
             f"How many dollars go into each jar?")
        day = S("*", w, h, label="Each day brings in {calc} dollars.")
        tot = S("*", day, days, label=f"Over {days} days that is {{calc}} dollars.")
        out = S("+", rent, spend - rent, label="Rent and food cost {calc} dollars.")
        rest = S("-", tot, out, label="What remains is {calc} dollars.")
        S("/", rest, k, label=f"Split into {k} jars, each gets {{calc}} dollars.")
    return Candidate(f"{t}|" + "|".join(map(str, nums)), q, S, {"template": t})


_WORD_STEPS = {"share": 2, "workers": 2, "savings": 2, "ages": 3, "bakery": 3, "train": 3,
               "change": 4, "discount": 4, "wages": 5}


def _chain(rng: random.Random, d: int) -> Candidate:
    """A running sum of small numbers, left to right: 3 + 4 - 2 + 5. Each step is one entry of a
    small table (a partial sum plus or minus a number up to `hi`, a few hundred facts at
    difficulty 1), while answering at once needs the whole chain in one pass: the family where
    working step by step pays most for a small model (the quickstart's task)."""
    hi, n_ops = ((5, 3), (6, 4), (9, 4), (9, 6), (20, 6))[d - 1]
    nums = [rng.randint(1, hi) for _ in range(n_ops + 1)]
    ops = [rng.choice("+-") for _ in range(n_ops)]
    S = _Steps()
    ref: str | int = nums[0]
    for op, x in zip(ops, nums[1:]):
        ref = S(op, ref, x)
    expr = " ".join([str(nums[0])] + [f"{op} {x}" for op, x in zip(ops, nums[1:])])
    ask = rng.choice(["Compute {e}.", "What is {e}?", "Evaluate {e}.", "Find the value of {e}."])
    return Candidate(expr, ask.format(e=expr), S, {"expression": expr})


TASKS: dict[str, Callable[[random.Random, int], Candidate]] = {
    "arithmetic": _arithmetic,
    "chain": _chain,
    "linear": _linear,
    "word": _word,
    "fractions": _fractions,
    "modular": _modular,
}


def generate(task: str, n: int, split: str = "train", seed: int = 0, difficulty: int = 2) -> list[Problem]:
    """`n` distinct problems of one family from the given split; same arguments, same problems.

    Each Problem has kind "math", reference = the LaTeX gold, and meta with task, split, seed,
    difficulty, key (the canonical content), steps (see the module docstring), answer (plain)
    and the family's extras.
    """
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; choose one of {sorted(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"{task}|{split}|{seed}|{difficulty}")
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"synthetic task {task!r} at difficulty {difficulty} found only "
                             f"{len(problems)} distinct {split} problems; ask for fewer or raise "
                             "the difficulty")
        try:
            cand = TASKS[task](rng, difficulty)
        except _Reject:
            continue
        if cand.key in seen or split_of(task, cand.key) != split or len(cand.steps.steps) < 2:
            continue
        seen.add(cand.key)
        answer = cand.steps.values[-1]
        meta = {"task": task, "split": split, "seed": seed, "difficulty": difficulty, "key": cand.key,
                "steps": cand.steps.steps, "answer": fmt_plain(answer), **cand.meta}
        pid = f"{task}-{split}-s{seed}-d{difficulty}-{len(problems):05d}"
        problems.append(Problem(pid, cand.question, fmt_latex(answer), "math", None, meta))
    return problems
