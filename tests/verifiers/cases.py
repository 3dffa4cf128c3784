"""The documented edge-case table for the math and choice verifiers, each case with its source.

`expected` is the mathematically right verdict, not what any tool returns. Sources:
- "MV test_all.py::<test>": huggingface/Math-Verify tests/test_all.py (commit cf14bc4), the rows
  of the named parametrised test; "MV test_mixed_number..." / "MV test_failed_latex_span":
  the files of that name on Math-Verify main (verification-and-eval.md §1.6).
- "MV #N": a Math-Verify issue as summarised in verification-and-eval.md §1.7.
- "§x": a section of /work/shared/docs/verification-and-eval.md (§4 is the failure catalogue).
- "ours: ...": a policy of this repo, documented in verifiers/math_verifier.py.
Used by tests/verifiers/test_math.py, test_choice.py and benchmarks/verifier_accuracy.py.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    kind: str  # "math" or "choice"
    reference: str
    completion: str
    expected: bool
    source: str
    options: tuple = ()  # (name, value) pairs passed to verify()

    @property
    def id(self) -> str:
        return f"{self.source} | {self.completion[:40]!r}"


def _m(reference, completion, expected, source, **options):
    return Case("math", reference, completion, expected, source, tuple(sorted(options.items())))


def _c(reference, completion, expected, source, **options):
    return Case("choice", reference, completion, expected, source, tuple(sorted(options.items())))


MV_ALL = "MV test_all.py::"
THINK = [
    _m("42", "<think>6*7 is 42</think>\nThe answer is $\\boxed{42}$.", True, "§2.4 R1 format"),
    _m("42", "<think>So the answer is \\boxed{42}", False, "§4 answer harvested from reasoning (PrimeIntellect PR #213)"),
    _m("42", "<think>first guess \\boxed{42}</think>\nSo \\boxed{41}.", False, "§4 answer harvested from reasoning"),
    _m("42", "6*7 = 42, done.\n</think>\n\n\\boxed{42}", True, "§2.4 template opens <think> in the prompt"),
    _m("42", "<THINK>work</THINK> \\boxed{42}", True, "ours: tags are case-insensitive"),
    _m("7", "<think>a</think> \\boxed{7} <think>more thoughts", False, "ours: a reopened think block is unfinished"),
    _m("5", "<think>the answer is 5</think>", False, "§4 empty / degenerate: nothing after </think>"),
]
BOXES = [
    _m("3", "\\boxed{2}. wait, actually \\boxed{3}", True, "§1.3 MV joins nearby boxes (FN on self-correction)"),
    _m("5", "\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}, \\boxed{5}", False, "§4 several boxed answers (enumeration)"),
    _m("3, 5", "The roots are \\boxed{3} and \\boxed{5}.", True, "§4 several boxed answers (a set gold)"),
    _m("5", "\\boxed 5", True, "ours: \\boxed without braces"),
    _m("5", "\\fbox{5}", True, "ours: \\fbox"),
    _m("5", "\\boxed{}", False, "§4 empty / degenerate"),
    _m("4", "\\boxed{004}", True, "§2.7 AIME answers may be zero-padded"),
    _m("\\frac{14}{3}", "$f(-2)+f(-1)+f(0)=\\frac{-8}{-4}+\\frac{-5}{-3}+\\frac{-2}{-2}=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$", True, MV_ALL + "test_latex_notation_math"),
    _m("3\\sqrt{13}", "We use the distance formula: $\\sqrt{117} = \\boxed{3\\sqrt{13}}$.", True, MV_ALL + "test_latex_notation_math"),
    _m("$-2,1$", "Checking, we find that the only integer roots are $\\boxed{-2,1}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$-2,1$", "\\boxed{1, -2}", True, "ours: a multi-answer box equals the gold set in any order"),
    _m("$-2,1$", "\\boxed{-2}", False, "§4 partial-set credit"),
    _m("1331 \\text{ and } 1728", "\\boxed{1728}", False, "MV #47 partial-set credit"),
    _m("1728", "\\boxed{1331 \\text{ and } 1728}", False, "§4 several answers for a single gold"),
    _m("$\\text{Evelyn}$", "Therefore, $\\boxed{\\text{Evelyn}}$ is our answer.", True, MV_ALL + "test_latex_notation_math"),
    _m("$90^\\circ$", "Hence, the angle between the lines is $\\boxed{90^\\circ}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$(6,31,-1)$", "Then solving the system, we find $(p,q,r) = \\boxed{(6,31,-1)}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$1 \\pm \\sqrt{19}$", "By the quadratic formula, $x = \\boxed{1 \\pm \\sqrt{19}}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$\\{1\\pm\\sqrt{5},-2\\}$", "so the answer is $\\boxed{\\{1\\pm\\sqrt{5},-2\\}}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$f(2) < f(1) < f(4)$", "Hence, $\\boxed{f(2) < f(1) < f(4)}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$2 \\sin b \\cos a$", "By sum-to-product,\n\\[\\sin (a + b) - \\sin (a - b) = \\boxed{2 \\sin b \\cos a}.\\]", True, MV_ALL + "test_latex_notation_math"),
    _m("$125$ miles", "The distance is $\\boxed{125\\textnormal{ miles}}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)$", "The solution set is $\\boxed{[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)}.$", True, MV_ALL + "test_latex_notation_math"),
    _m("$\\sqrt{2}+\\sqrt{5}$", "The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", True, MV_ALL + "test_latex_notation_math"),
    _m("$\\frac{9}{4}\\pi$", "Therefore $\\boxed{\\frac94\\pi}$.", True, MV_ALL + "test_latex_notation_math"),
    _m("$15\\mbox{ cm}^2$", "$$\\frac{1}{2}\\times 3 \\times 10 = \\boxed{15\\mbox{ cm}^2}.$$", True, MV_ALL + "test_latex_notation_math"),
    _m("\\boxed{\n\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}\n}.", "\\boxed{\n\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}\n}.", True, MV_ALL + "test_latex_notation_math"),
    _m("$2-2p$", "If $2-x=p$, then $x=2-p$. Thus $x-p=\\boxed{2-2p}$.", True, MV_ALL + "test_latex_notation_math"),
    _m("Therefore, $\\boxed{14{,}916}$ is our answer.", "Final Answer: The smallest possible value of $N$ is $\\boxed{14{,}916}$.", True, MV_ALL + "test_numina_cases"),
    _m("$204_5$", "for a quotient of $\\boxed{204_5}$.", True, MV_ALL + "test_latex_notation_math"),
    _m("$9$", "Then, $129^{34}+96^{38} \\equiv \\boxed{9} \\pmod{11}.$", True, MV_ALL + "test_latex_notation_math"),
]
ANCHORS = [
    _m("18", "She sells 16 - 3 - 4 = 9 eggs for $2 each.\n#### 18", True, "§2.7 GSM8K answer format"),
    _m("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "#### 18", True, "§2.7 GSM8K gold rationale"),
    _m("72", "Natalia sold 48/2 = 24 clips in May, so 48 + 24 = 72 in all. The answer is 72.", True, "§2.2 lm-eval gsm8k-cot"),
    _m("$28\\%$", "Final Answer: The final answer is $28 \\%$. I hope it is correct.", True, "§2.2 Minerva format"),
    _m("$2/3$", "Therefore, the probability that Alice wins the game is 2/3. <|im_start|>user", True, MV_ALL + "test_math_extraction_additional_cases (issue 1)"),
    _m("$120$", "Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", True, MV_ALL + "test_math_extraction_additional_cases (issue 7)"),
    _m("12000023", "$85 + (-67) + 12,\\!000,\\!003 + (-3) = 12,\\!000,\\!023$. Final Answer: The final answer is 12,000,023. I hope it is correct. <|im_start|>user", True, MV_ALL + "test_math_extraction_additional_cases (issue 8)"),
    _m("$[0,1)$", "the domain of $q(x)$ is the interval $(0, 1)$. Final Answer: The final answer is $(0, 1)$. I hope it is correct. <|im_start|>user", False, MV_ALL + "test_math_extraction_additional_cases (issue 4)"),
    _m("$16386.20$", "Paula's investment is worth $\\boxed{\\$16,\\!386.20}$ at the end. The answer is $16,\\!386.20$.", True, MV_ALL + "test_math_extraction_additional_cases (issue 6)"),
    _m("12", "For each divisor $n$ there is one $d$. Therefore, there are 12 distinct arithmetic sequences that meet the three given conditions. I hope it is correct. <|im_start|>user", True, MV_ALL + "test_math_extraction_additional_cases (issue 2)"),
    _m("73", "**Final Answer**\n\n**73**", True, "MV #76 bold answers"),
    _m("73", "So the count is 12 + 61.\n\nThe answer is **73**.", True, "MV #76 bold answers"),
    _m("$9$", "Answer \\[ 9 \\]", True, MV_ALL + "test_latex_notation"),
    _m("$9$", "Answer $$ 9 $$", True, MV_ALL + "test_latex_notation"),
    _m("$10$", "Answer \\( (9+1) \\)", True, MV_ALL + "test_latex_notation"),
    _m("$1/3$", "$k = \\frac{1}{3}$", True, MV_ALL + "test_latex_notation"),
    _m("$1/3$", "$\\frac{1}{3} \\textbf{meters}$", True, MV_ALL + "test_latex_notation"),
    _m("$1/3$", "$\\frac13 $", True, MV_ALL + "test_latex_notation"),
    _m("$1$", "$\\frac3{3} $", True, MV_ALL + "test_latex_notation"),
    _m("$\\sqrt{3}$", "$\\sqrt3 $", True, MV_ALL + "test_latex_notation"),
    _m("$1/3$", "$\\cfrac{1}{3} $", True, MV_ALL + "test_latex_notation"),
    _m("$1/3$", "$\\left( \\frac{1}{3} \\right)$", True, MV_ALL + "test_latex_notation"),
    _m("5", "No idea, sorry.", False, "§4 empty / degenerate"),
    _m("5", "", False, "§4 empty / degenerate"),
]
NUMBERS = [
    _m("-5", "-5", True, MV_ALL + "test_number_extraction"),
    _m("7425000", "7,425,000", True, MV_ALL + "test_number_extraction"),
    _m("1000", "1 000", True, MV_ALL + "test_number_extraction"),
    _m("1000", "1000.0", True, MV_ALL + "test_number_extraction"),
    _m("1000.0", "1,000.0", True, MV_ALL + "test_number_extraction"),
    _m("1000.99", "1000,99", True, MV_ALL + "test_number_extraction", decimal_comma=True),
    _m("1000.99", "\\boxed{1000,99}", False, "ours: decimal_comma=False reads `1000,99` as two answers"),
    _m("0.4", ".4", True, MV_ALL + "test_number_extraction"),
    _m("1000.99", "$1,000.99", True, MV_ALL + "test_number_extraction"),
    _m("1000.99", "the number is not 10 which is 1,000.99€", True, MV_ALL + "test_number_extraction"),
    _m("1000.99", "so the number is 10 which is 1,000.99m²", True, MV_ALL + "test_number_extraction"),
    _m("2", "AZYUK2A", False, MV_ALL + "test_number_extraction"),
    _m("10/9", "\\frac{10}{9}", True, MV_ALL + "test_simple_fraction_notation"),
    _m("-10/9", "-\\frac{10}{9}", True, MV_ALL + "test_simple_fraction_notation"),
    _m("1234", "\\boxed{1\\,234}", True, "§1 measured: MV parses `1\\,234` as 235"),
    _m("11", "\\boxed{5 6}", False, "ours: space-separated numbers are two answers (MV reads 11)"),
    _m("13", "\\boxed{\\text{13}}", True, "MV #37"),
    _m("10080", "\\boxed{10,080}", True, "§4 thousands vs tuple"),
    _m("(10, 80)", "\\boxed{10,080}", False, "§4 thousands vs tuple"),
    _m("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", True, "ours: fast path for \\dfrac"),
    _m("-\\frac{3}{4}", "\\boxed{\\frac{-3}{4}}", True, "ours: fast path for signs"),
    _m("1.5", "\\boxed{\\frac{3}{2}}", True, "ours: exact decimal vs fraction"),
    _m("3.14159", "\\boxed{3.1416}", False, "ours: tolerance=0 is exact"),
    _m("3.14159", "\\boxed{3.1416}", True, "ours: tolerance option", tolerance=1e-4),
]
SETS_PERCENT_RELATIONS = [
    _m("$[0,1)$", "$[0,1)$", True, MV_ALL + "test_sets_handling"),
    _m("$[0,9)$", "$[0,1)$", False, MV_ALL + "test_sets_handling"),
    _m("$(0,9)$", "$[0,9)$", False, MV_ALL + "test_sets_handling; §4 interval brackets"),
    _m("$1$", "$-[0,1)$", False, MV_ALL + "test_sets_handling"),
    _m("$28\\%$", "28 percent", True, MV_ALL + "test_percent_notation"),
    _m("$28\\%$", "$\\boxed{28}$ pct", True, MV_ALL + "test_percent_notation"),
    _m("$28\\%$", "$\\boxed{28 percent}", True, MV_ALL + "test_percent_notation (fails in MV)"),
    _m("$28\\%$", "28", True, MV_ALL + "test_percent_notation"),
    _m("$0.28$", "28", False, MV_ALL + "test_percent_notation"),
    _m("$28/100$", "28", False, MV_ALL + "test_percent_notation"),
    _m("$28$", "28/100", False, MV_ALL + "test_percent_notation"),
    _m("50\\%", "\\boxed{0.5}", True, "ours: percent='equal'"),
    _m("0.5", "\\boxed{50}", False, "§4 percent ambiguity (Qwen FP)"),
    _m("50\\%", "\\boxed{0.5}", False, "ours: percent='strip'", percent="strip"),
    _m("50\\%", "\\boxed{50}", False, "ours: percent='strict'", percent="strict"),
    _m("$x >= 5$", "Therefore $x \\geq 5$ is the solution.", True, MV_ALL + "test_relations_math"),
    _m("$x < 3$", "We find that $x \\lt 3$.", True, MV_ALL + "test_relations_math"),
    _m("$x > 5$", "Therefore $x < 5$ is the solution.", False, MV_ALL + "test_relations_math"),
    _m("$x \\leq 5$", "$5 \\geq x$", True, MV_ALL + "test_relations_math"),
    _m("$11$", "$x=11$", True, MV_ALL + "test_relations_math"),
    _m("$7 = 11a+c$", "$11a+c$", False, MV_ALL + "test_relations_math"),
    _m("$a +3z = 0$", "$0$", False, MV_ALL + "test_relations_math"),
    _m("$2x+4y-3=0$", "$y=-\\frac{1}{2}x+\\frac{3}{4}$", True, MV_ALL + "test_relations_math"),
    _m("$x^2/4 + y^2/3 = 1$", "$x^2/16 + y^2/12 = 1/4$", True, MV_ALL + "test_relations_math"),
    _m("$x = 11$", "$x = 5+5+1 = 7 =11$", True, MV_ALL + "test_relations_math"),
    _m("0", "The tangent line is $3x+4y+14=0$", False, "MV #60 an equation is not its right side"),
]
EXPRESSIONS = [
    _m("$\\frac{1}{12}$", "$0.0833333333333333$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$(1,\\frac{9}{2})$", "$(1,4.5)$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$\\frac{x+2}{7}$", "$\\frac{x}{7}+\\frac{2}{7}$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$\\tan^2(y)+1$", "$\\sec^2(y)$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$34x+45y-20z+100=0$", "$-34x-45y+20z-100=0$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$(a+5)(b+2)$", "$(+5)(b+2)$", False, MV_ALL + "test_complex_math_expressions"),
    _m("$2$", "$\\frac{1+\\sqrt{5}}{2}$", False, MV_ALL + "test_complex_math_expressions"),
    _m("$4$", "$\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}$", False, MV_ALL + "test_complex_math_expressions"),
    _m("$1\\sqrt{19}$", "$1$", False, MV_ALL + "test_complex_math_expressions"),
    _m("$x+2n+1$", "$x+1$", False, MV_ALL + "test_complex_math_expressions"),
    _m("$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}$", "$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}$", True, MV_ALL + "test_complex_math_expressions"),
    _m("$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$", "The identity matrix is $ \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} $.", True, MV_ALL + "test_matrix_extraction"),
    _m("$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}$", "The matrix is $\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}$", False, MV_ALL + "test_matrix_extraction"),
    _m("(x+1)^2", "\\boxed{x^2+2x+1}", True, "ours: symbolic equality through Math-Verify"),
    _m("\\frac{1}{\\sqrt{2}}", "\\boxed{\\frac{\\sqrt{2}}{2}}", True, "ours: closed-form numbers at 30 digits"),
]
MIXED_AND_PARTIAL = [
    _m("4", "The answer is 4 4/9.", False, "MV test_mixed_number_extraction; §1.1 measured FP in 0.9.0"),
    _m("40/9", "The answer is 4 4/9.", True, "MV test_mixed_number_extraction"),
    _m("71/6", "11 5/6", True, "MV test_mixed_number_extraction"),
    _m("-40/9", "-4 4/9", True, "MV test_mixed_number_extraction"),
    _m("73/6", "11 7/6", False, "MV test_mixed_number_extraction (improper fraction)"),
    _m("103/9", "11.0 4/9", False, "MV test_mixed_number_extraction (decimal whole)"),
    _m("4", "4 0/9", True, "MV test_mixed_number_extraction (zero numerator)"),
    _m("$2\\frac{1}{4}$", "\\boxed{\\frac{9}{4}}", True, "ours: MATH writes mixed numbers as 2\\frac{1}{4}"),
    _m("0", "$\\sum_{k=0}^n\\bigl(k\\bigr)$", False, "MV test_failed_latex_span; §1.1 measured FP"),
    _m("4", "$4\\sqrt(2)$", False, "MV #41 partial parse"),
    _m("$f(x)=0$", "\\boxed{\\forall x>0, f(x)=0}", False, "MV #64 partial parse"),
    _m("1", "\\boxed{1 - 1/\\mathrm{e}}", False, "§1.6 MV drops \\mathrm{e} (test_yujianll caveat)"),
    _m("2", "\\boxed{2\\sqrt{3}+}", False, "§4 partial parse (dangling operator)"),
]
MAGNITUDE = [
    _m("\\frac{1}{2^{98}}", "\\boxed{\\frac{1}{2^{99}}}", False, "MV #14 tiny magnitudes"),
    _m("\\frac{1}{2006!}", "\\boxed{\\frac{1}{2004!}}", False, "MV #14 tiny magnitudes"),
    _m("\\frac{1}{3 \\cdot 2^{2006}}", "\\boxed{\\frac{2^{2005}+1}{3 \\cdot 2^{2006}}}", False, "MV #14 tiny magnitudes"),
    _m("\\frac{1}{2^{99}}", "\\boxed{2^{-99}}", True, "ours: exact rationals from sympy"),
    _m("9^{9^{9^9}}", "\\boxed{9^{9^{9^{9}}}}", True, "§4 huge magnitudes (structural comparison)"),
    _m("9^{9^{9^9}}", "\\boxed{9^{9^{9^{8}}}}", False, "§4 huge magnitudes (structural comparison)"),
    _m("2^{2005}", "\\boxed{2^{2005}}", True, "ours: 604 digits is still exact"),
]
UNITS_HEDGES_PRECISION = [
    _m("45^\\circ", "\\boxed{\\frac{\\pi}{4}}", True, "§4 units / degrees (conversion)"),
    _m("30", "\\boxed{30^\\circ}", True, "§4 units / degrees"),
    _m("10", "\\boxed{10\\text{ m}}", True, "ours: units='strip'"),
    _m("10\\text{ cm}", "\\boxed{10\\text{ m}}", False, "§4 units (wrong unit) with units='match'", units="match"),
    _m("5", "\\boxed{\\$5}", True, "ours: currency"),
    _m("5", "The answer is 5 dollars.", True, "ours: currency"),
    _m("5", "The answer is 5 or 6.", False, "§4 hedged answers (MV FP measured)"),
    _m("6", "\\boxed{either 5 or 6}", False, "§4 hedged answers"),
    _m("5", "\\boxed{5 \\text{ or } 6}", False, "§4 hedged answers"),
    _m("5", "\\boxed{5 and/or 6}", False, "§4 hedged answers"),
    _m("1, 2", "\\boxed{x = 1 \\text{ or } x = 2}", True, "§4 alternatives are fine when the gold is a set"),
    _m("3", "\\boxed{1, 2, 3, 4}", False, "§4 answer lists that cover every option"),
    _m("0.33", "\\boxed{\\frac{1}{3}}", True, "§6.1 gold-precision-aware tolerance"),
    _m("0.33", "\\boxed{\\frac{1}{3}}", False, "ours: gold_precision=False", gold_precision=False),
    _m("\\frac{1}{3}", "\\boxed{0.33}", False, "ours: a 2-place decimal is not 1/3"),
    _m("1.41", "\\boxed{\\sqrt{2}}", True, "§6.1 gold-precision-aware tolerance"),
    _m("0.3", "\\boxed{\\frac{2}{7}}", False, "§6.1 precision rule needs >= 2 gold decimals"),
]
MORE = [
    _m("1 \\pm \\sqrt{19}", "\\boxed{1+\\sqrt{19}, 1-\\sqrt{19}}", True, "ours: a \\pm gold is a set of two"),
    _m("1 \\pm \\sqrt{19}", "\\boxed{1+\\sqrt{19}, 1-\\sqrt{18}}", False, "ours: a \\pm gold is a set of two"),
    _m("36", "So the answer is $6^2 = 36$.", True, "ours: a true numeric identity gives its right side"),
    _m("35", "So the answer is $6^2 = 35$.", False, "ours: a false numeric identity is no answer"),
    _m("3", "The answer is three apples.", True, "ours: number words up to twenty"),
    _m("5", "The answer is 5, not 6.", True, "ours: trailing prose after the answer"),
    _m("6", "\\boxed{3!}", True, "ours: small factorials are evaluated"),
    _m("\\{1,2,3\\}", "\\boxed{3,2,1}", True, "ours: set gold, list prediction"),
]
ISSUE9 = "issue 9 held-out class: "
IRRATIONAL_DECIMALS = [
    _m("\\sqrt{2}", "\\boxed{1.414214}", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("\\pi", "\\boxed{3.141593}", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("e", "\\boxed{2.718282}", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("\\frac{\\sqrt{3}}{2}", "\\boxed{0.8660254}", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("2\\pi", "The answer is $6.2831853$.", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("e^{2}", "\\boxed{7.389056}", True, ISSUE9 + "6+ decimals vs an irrational gold"),
    _m("\\sqrt{2}", "\\boxed{1.414213}", False, ISSUE9 + "6 decimals that do not round from the gold"),
    _m("\\pi", "\\boxed{3.14159}", False, ISSUE9 + "fewer than 6 decimals stay approximations"),
    _m("\\pi", "\\boxed{3.14}", False, ISSUE9 + "fewer than 6 decimals stay approximations"),
    _m("\\sqrt{2}", "\\boxed{1.4142136}", True, ISSUE9 + "7 decimals, rounded from the gold"),
]
COLLAPSES = [
    _m("1:00", "\\boxed{12:00}", False, ISSUE9 + "clock times collapse to zoo"),
    _m("12:00", "\\boxed{1:00}", False, ISSUE9 + "clock times collapse to zoo"),
    _m("0:1", "\\boxed{0:2}", False, ISSUE9 + "ratios with zeros collapse"),
    _m("3:00", "\\boxed{3:00}", True, ISSUE9 + "the same clock time"),
    _m("3:00", "\\boxed{03:00}", True, ISSUE9 + "the same clock time, zero-padded"),
    _m("\\frac{1}{0}", "\\boxed{\\frac{2}{0}}", False, ISSUE9 + "division by zero collapses to zoo"),
    _m("1/0", "\\boxed{2/0}", False, ISSUE9 + "division by zero collapses to zoo"),
    _m("\\frac{0}{0}", "\\boxed{\\frac{0}{0}}", False, ISSUE9 + "0/0 is nan, equal to nothing"),
    _m("5", "\\boxed{\\frac{5}{0}}", False, ISSUE9 + "division by zero"),
    _m("\\text{nan}", "\\boxed{nan}", False, ISSUE9 + "nan"),
    _m("\\infty", "\\boxed{\\frac{1}{0}}", False, ISSUE9 + "division by zero is not infinity"),
    _m("\\infty", "\\boxed{\\infty}", True, ISSUE9 + "infinity still equals itself"),
]
EMPTY_SET = [
    _m("\\emptyset", "\\boxed{\\varnothing}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\emptyset", "\\boxed{\\{\\}}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\emptyset", "\\boxed{\\O}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\emptyset", "\\boxed{∅}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\varnothing", "\\boxed{\\emptyset}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\{\\}", "\\boxed{∅}", True, ISSUE9 + "empty-set synonyms"),
    _m("\\{ \\}", "The answer is $\\varnothing$.", True, ISSUE9 + "empty-set synonyms"),
    _m("\\emptyset", "\\boxed{\\{0\\}}", False, ISSUE9 + "a non-empty set"),
    _m("\\emptyset", "\\boxed{0}", False, ISSUE9 + "zero is not the empty set"),
    _m("0", "\\boxed{\\varnothing}", False, ISSUE9 + "zero is not the empty set"),
]
# Cases we still get wrong (the expected verdict is the true one); tests mark them xfail(strict)
# so that a fix is noticed, and the benchmark counts them.
KNOWN_GAPS = [
    _m("\\frac{\\sqrt{3}}{2}", "\\boxed{\\sin 60^\\circ}", True, "gap: degrees inside functions (MV reads 60 rad)"),
    _m("1000\\text{ cm}", "\\boxed{10\\text{ m}}", True, "gap: no unit conversion (§4 units)"),
    _m("(1,2)", "\\boxed{x = 1, y = 2}", True, "gap: named components vs a tuple"),
    _m("\\frac{1}{2004!}", "\\boxed{1/2004!}", True, "gap: too large to evaluate, and the texts differ"),
]
MATH_CASES = THINK + BOXES + ANCHORS + NUMBERS + SETS_PERCENT_RELATIONS + EXPRESSIONS + \
    MIXED_AND_PARTIAL + MAGNITUDE + UNITS_HEDGES_PRECISION + MORE + IRRATIONAL_DECIMALS + \
    COLLAPSES + EMPTY_SET + KNOWN_GAPS

SIMPLE_EVALS = "§2.5 simple-evals GPQA answer line"
CHOICE_CASES = [
    _c("C", "Answer: C", True, SIMPLE_EVALS),
    _c("C", "**Answer:** (C)", True, "§4 MCQ formats"),
    _c("C", "Comparing the rates, the answer is (C).", True, "§4 MCQ formats"),
    _c("C", "\\boxed{C}", True, "§4 MCQ formats"),
    _c("C", "\\boxed{\\text{C}}", True, "§4 MCQ formats"),
    _c("C", "Therefore the correct option is (C)", True, "§4 MCQ formats"),
    _c("C", "The result matches the third option.\n\n(C)", True, "§6.4 (C) at the end"),
    _c("C", "Answer: C) 42 m/s", True, "§4 option text after the letter"),
    _c("C", "Answer: **(C)** The mitochondria", True, "§4 option text after the letter"),
    _c("C", "**Answer: C**", True, "§4 MCQ formats (bold)"),
    _c("B", "Answer: C\nWait, that is wrong.\nAnswer: B", True, "§6.4 last Answer line wins"),
    _c("B", "Final Answer: B", True, "§4 MCQ formats"),
    _c("C", "The correct choice is C.", True, "§4 MCQ formats"),
    _c("D", "Answer: $\\boxed{D}$", True, "§4 MCQ formats"),
    _c("C", "Answer: c", True, "ours: a lower-case letter alone"),
    _c("C", "so the answer is (c)", True, "ours: a lower-case letter in brackets"),
    _c("A", "Options A, B, C and D differ in sign.\nAnswer: A", True, "§4 stray capitals in text"),
    _c("C", "<think>Answer: C</think>\nAnswer: B", False, "§4 answer harvested from reasoning"),
    _c("C", "<think>I believe Answer: C", False, "§4 answer harvested from reasoning"),
    _c("C", "Answer: A or C", False, "§4 hedged answers"),
    _c("C", "Answer: either A or C", False, "§4 hedged answers"),
    _c("C", "Answer: A/C", False, "§4 hedged answers"),
    _c("C", "Answer: A, B, C, D", False, "§4 listing every option"),
    _c("C", "C", False, "§2.1 no bare-letter fallback (lighteval)"),
    _c("C", "I think C is right.", False, "§2.1 no bare-letter fallback"),
    _c("C", "Let's evaluate option C first. It fails.", False, "§4 stray capitals in text"),
    _c("C", "Answer: E", False, "ours: E is not among letters='ABCD'"),
    _c("E", "Answer: E", True, "ours: letters option", letters="ABCDE"),
    _c("C", "\\boxed{42}", False, "ours: a box without a letter is no answer"),
    _c("C", "", False, "§4 empty / degenerate"),
]
ALL_CASES = MATH_CASES + CHOICE_CASES


class Hostile(NamedTuple):
    name: str
    completion: str
    reference: str
    source: str


_MB = 1_000_000
HOSTILE = [
    Hostile("power tower", "\\boxed{9^{9^{9^9}}}", "5", "§1.5 measured: MV burns its 5 s timeout"),
    Hostile("tower vs tower gold", "\\boxed{10^{10^{10}}}", "2^{2^{40}}", "§1.5 measured"),
    Hostile("MV #65 tower", "\\boxed{\\dfrac{5^{(5^{(5^{(5^5)})} - 4)} - 5}{16}}", "5", "MV #65 hangs past the timeout"),
    Hostile("huge factorial", "\\boxed{1000000!}", "5", "issue 4 hostile inputs"),
    Hostile("huge exponent", "\\boxed{2^{100000000}}", "2", "§1.5 measured (2^{2^{40}})"),
    Hostile("symbolic huge power", "\\boxed{(x+1)^{10^{9}}}", "x", "ours: expand would not finish"),
    Hostile("100k-digit number", "\\boxed{" + "7" * 100_000 + "}", "7", "§1.8 4,300-digit int limit"),
    Hostile("1 MB then a box", "x " * (_MB // 2) + "\\boxed{42}", "42", "§1.8 long outputs"),
    Hostile("1 MB of prose", "word " * (_MB // 5), "42", "§4 long outputs"),
    Hostile("1 MB without spaces", "9" * _MB, "42", "§4 long outputs"),
    Hostile("20k unclosed boxes", "\\boxed{" * 20_000, "1", "§4 long outputs (20k unclosed \\boxed{)"),
    Hostile("20k unclosed braces", "\\boxed{" + "{" * 20_000, "1", "issue 4 hostile inputs"),
    Hostile("10k nested parentheses", "The answer is " + "(" * 10_000 + "1" + ")" * 10_000, "1", "issue 4 hostile inputs"),
    Hostile("10k nested in a box", "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}", "1", "issue 4 hostile inputs"),
    Hostile("5k nested braces", "\\boxed{" + "{" * 5_000 + "1" + "}" * 5_000 + "}", "1", "§1.5 measured: 5,000-deep nest burns 5 s"),
    Hostile("60-deep braces", "\\boxed{" + "{" * 60 + "1" + "}" * 60 + "}", "1", "ours: nesting limit"),
    Hostile("5k failed spans then one", "$\\bigl(k\\bigr)$ " * 5_000 + "$42$", "42", "§1.8 measured 0.65 s in MV"),
    Hostile("many think tags", "<think>" * 50_000 + "</think>" * 50_000 + "\\boxed{1}", "1", "ours: tag scanning"),
    Hostile("many dollars", "$" * 200_000, "1", "ours: math-environment scanning"),
    Hostile("many boxes", "\\boxed{1}, " * 50_000, "1", "§4 several boxed answers"),
    Hostile("huge gold tower", "\\boxed{3}", "3^{3^{3^{3^{3}}}}", "ours: the gold gets the same pre-check"),
]
WRAPPED = "issue 9: a tower however wrapped"
HOSTILE += [
    Hostile("tower in \\left( \\right)", "\\boxed{9^{\\left(9^{\\left(9^{9}\\right)}\\right)}}", "5", WRAPPED),
    Hostile("tower in \\bigl( \\bigr)", "\\boxed{9^{\\bigl(9^{\\Bigl(9^{9}\\Bigr)}\\bigr)}}", "5", WRAPPED),
    Hostile("tower in \\dfrac", "\\boxed{\\dfrac{9^{9^{9^9}}}{2}}", "5", WRAPPED),
    Hostile("tower in \\tfrac exponent", "\\boxed{9^{\\tfrac{9^{9^9}}{1}}}", "5", WRAPPED),
    Hostile("tower times \\cdot", "\\boxed{2 \\cdot 9^{9^{9^9}}}", "5", WRAPPED),
    Hostile("tower in nested boxes", "\\boxed{\\boxed{\\boxed{9^{9^{9^9}}}}}", "5", WRAPPED),
    Hostile("tower in \\operatorname", "\\boxed{\\operatorname{exp}(9^{9^{9}})}", "5", WRAPPED),
    Hostile("exp tower", "\\boxed{\\exp(\\exp(\\exp(100)))}", "5", WRAPPED),
    Hostile("e tower", "\\boxed{e^{e^{e^{100}}}}", "5", WRAPPED),
    Hostile("huge binomial", "\\boxed{\\binom{10^{9}}{10^{8}}}", "5", WRAPPED),
    Hostile("tower in \\displaystyle and braces", "\\boxed{\\displaystyle {{9}}^{{{9}}^{{9}^{9}}}}", "5", WRAPPED),
    Hostile("tower as gold, wrapped", "\\boxed{3}", "\\left(3^{\\left(3^{3^{3^{3}}}\\right)}\\right)", WRAPPED),
]
