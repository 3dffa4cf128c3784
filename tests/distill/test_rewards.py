"""Each reward against its paper formula, computed here by hand, on crafted groups: ties, all
correct, all wrong, truncated, missing `</think>`, unreadable gold. TRL's own implementations are
a second reference where their judge (plain Math-Verify) agrees with ours."""

import math

import pytest

from distill.rewards import Judge, RewardContext, RewardSpec, build_reward, build_rewards, check_columns
from distill.rewards.length import Cosine, Kimi, LcpoExact, LcpoMax, Overlong
from distill.rewards.quality import Accuracy, LanguageConsistency, ThinkFormat, WrongRepetition

RIGHT = "<think>\n3 plus 4 is 7, minus 4 is 3.\n</think>\nThe answer is \\boxed{3}."
WRONG = "<think>\nI guess.\n</think>\nThe answer is \\boxed{5}."
UNCLOSED = "<think>\nthe answer is \\boxed{3} but I keep thinking"
IN_REASONING_ONLY = "<think>\nso it is \\boxed{3}\n</think>\nI am not sure."


def conv(text):  # TRL's conversational completion
    return [{"role": "assistant", "content": text}]


def ctx(G=4, max_len=100, think_in_prompt=False):
    return RewardContext(Judge(think_in_prompt=think_in_prompt), think_in_prompt, G, max_len)


# ------------------------------------------------------------------ accuracy / judge

def test_accuracy_answer_after_think_only_and_none_for_unreadable_gold():
    acc = Accuracy(Judge())
    comps = [RIGHT, WRONG, UNCLOSED, IN_REASONING_ONLY, RIGHT]
    refs = ["3", "3", "3", "3", "\\frac{"]  # last gold cannot be parsed -> skipped, not punished
    assert acc(completions=comps, reference=refs) == [1.0, 0.0, 0.0, 0.0, None]
    # conversational completions (TRL's chat format) read the same
    assert acc(completions=[conv(RIGHT), conv(WRONG)], reference=["3", "3"]) == [1.0, 0.0]


def test_accuracy_think_in_prompt():
    """With a template that opened `<think>`, `reasoning</think>answer` is complete and a reply
    with no tag at all is unfinished reasoning (0), even if it ends in a right box."""
    acc = Accuracy(Judge(think_in_prompt=True))
    comps = ["3 = 3.\n</think>\n\\boxed{3}", "\\boxed{3}"]
    assert acc(completions=comps, reference=["3", "3"]) == [1.0, 0.0]
    assert Accuracy(Judge())(completions=["\\boxed{3}"], reference=["3"]) == [1.0]


def test_accuracy_kind_column_dispatches_choice_and_code():
    acc = Accuracy(Judge())
    code = "<think>add</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = "<think>add</think>\n```python\nprint(0)\n```"
    tests = {"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}
    out = acc(completions=["<think>x</think>The answer is (B)", code, bad, code],
              reference=["B", tests, tests, {"nothing": 1}], kind=["choice", "code", "code", "code"])
    assert out == [1.0, 1.0, 0.0, None]


def test_accuracy_gaming_attempts_score_zero():
    """Tried: several boxed answers, hedging, the answer only inside the reasoning, an answer
    after a re-opened think block, two </think> with the right answer in between."""
    acc = Accuracy(Judge())
    games = [
        "<think>x</think>\\boxed{3}, \\boxed{5}",
        "<think>x</think>It is 3 or 5: \\boxed{3 \\text{ or } 5}",
        IN_REASONING_ONLY,
        "<think>x</think>\\boxed{3}<think>more",
        "<think>x</think>\\boxed{3}</think>\\boxed{5}",
    ]
    assert acc(completions=games, reference=["3"] * len(games)) == [0.0] * len(games)


def test_judge_caches_verdicts():
    judge = Judge()
    judge([RIGHT], ["3"])
    assert len(judge._cache) == 1
    judge([RIGHT, RIGHT], ["3", "3"])
    assert len(judge._cache) == 1


# ------------------------------------------------------------------ format / language / repetition

def test_think_format_agrees_with_trl_without_prefill_and_fixes_prefill():
    from trl.rewards import think_format_reward

    plain = ["<think>\nr\n</think>\nanswer", "<think>\nr\nanswer", "no tags", "<think>a<think>b</think>c"]
    ours = ThinkFormat()(completions=[conv(t) for t in plain])
    assert ours == think_format_reward([conv(t) for t in plain]) == [1.0, 0.0, 0.0, 0.0]
    # the template opened <think>: TRL scores every well-formed reply 0 (open-r1 #560), ours 1
    prefilled = ["r\n</think>\nanswer", "<think>r</think>answer", "r without end"]
    assert think_format_reward([conv(t) for t in prefilled])[0] == 0.0
    assert ThinkFormat(think_in_prompt=True)(completions=prefilled) == [1.0, 0.0, 0.0]


def test_think_format_gaming():
    """Tried: an empty think block, no answer after </think>, two closing tags."""
    games = ["<think></think>answer", "<think>r</think>   ", "<think>r</think>a</think>b"]
    assert ThinkFormat()(completions=games) == [0.0, 0.0, 0.0]


def test_language_consistency_is_share_of_target_words():
    # reasoning: 4 English words + 2 Han characters (one word each) -> 4/6; the answer is ignored
    text = "<think>we add the numbers 加法</think>答案是 3"
    assert LanguageConsistency()(completions=[text]) == [pytest.approx(4 / 6)]
    assert LanguageConsistency(target="zh")(completions=[text]) == [pytest.approx(2 / 6)]
    assert LanguageConsistency()(completions=[text, text], language=["zh", None]) == [
        pytest.approx(2 / 6), pytest.approx(4 / 6)]
    with pytest.raises(ValueError, match="target"):
        LanguageConsistency(target="klingon")


def test_repetition_penalty_on_wrong_answers_only():
    rep = WrongRepetition(Judge(), ngram_size=2, max_penalty=-1.0)
    loop = [1, 2, 1, 2, 1, 2]  # 5 bigrams, 2 distinct -> (1 - 2/5) * -1 = -0.6
    fresh = [1, 2, 3, 4]
    out = rep(completions=[WRONG, RIGHT, WRONG, RIGHT], completion_ids=[loop, loop, fresh, fresh],
              reference=["3", "3", "3", "\\frac{"])
    assert out == [pytest.approx(-0.6), 0.0, 0.0, None]


# ------------------------------------------------------------------ length rewards

def cos_fn(t, T, a, b):  # Yeo et al. 2025: CosFn(t, T, eta_min=a, eta_max=b)
    return a + 0.5 * (b - a) * (1 + math.cos(t * math.pi / T))


def test_cosine_matches_paper_formula_and_clamps():
    T = 100
    cos = Cosine(Judge(), max_len=T, exceed_reward=None)
    lengths = [0, 10, 50, 90, 150]
    for comp, (at_0, at_T) in [(RIGHT, (2.0, 1.0)), (WRONG, (-10.0, 0.0))]:
        got = cos(completions=[comp] * 5, completion_ids=[[7] * n for n in lengths], reference=["3"] * 5)
        want = [cos_fn(min(n, T), T, at_T, at_0) for n in lengths]
        assert got == pytest.approx(want)
    # past T the value stays at the T end (cosine is periodic; unclamped it would climb back)
    assert got[-1] == pytest.approx(0.0)


def test_cosine_exceed_reward_and_none():
    cos = Cosine(Judge(), max_len=100)  # paper: exceed -10 when t + 16 >= T
    got = cos(completions=[RIGHT, RIGHT, RIGHT], completion_ids=[[1] * 83, [1] * 84, [1] * 10],
              reference=["3", "3", "\\frac{"])
    assert got == [pytest.approx(cos_fn(83, 100, 1.0, 2.0)), -10.0, None]


def test_cosine_agrees_with_trl_where_judges_agree():
    from trl.rewards import get_cosine_scaled_reward

    trl_cos = get_cosine_scaled_reward(max_len=60, min_value_wrong=-10.0, max_value_wrong=0.0,
                                       min_value_correct=1.0, max_value_correct=2.0)
    ours = Cosine(Judge(), max_len=60, exceed_reward=None)
    comps = ["\\boxed{3}", "\\boxed{4}", "\\boxed{3}", "\\boxed{4}"]
    ids = [[1] * 5, [1] * 30, [1] * 59, [1] * 80]
    want = trl_cos([conv(c) for c in comps], solution=["$3$"] * 4, completion_ids=ids)
    assert ours(completions=[conv(c) for c in comps], completion_ids=ids, reference=["3"] * 4) == \
        pytest.approx(want)


def dapo_overlong(n, L_max, L_cache):  # DAPO eq. 13
    if n <= L_max - L_cache:
        return 0.0
    if n <= L_max:
        return ((L_max - L_cache) - n) / L_cache
    return -1.0


def test_overlong_is_dapo_eq13():
    ov = Overlong(max_len=100)  # cache defaults to max_len // 5 (DAPO: 4096 of 20480)
    lengths = [10, 80, 81, 90, 100, 101]
    assert ov(completion_ids=[[0] * n for n in lengths]) == pytest.approx(
        [dapo_overlong(n, 100, 20) for n in lengths])
    with pytest.raises(ValueError, match="cache"):
        Overlong(max_len=10, cache=0)


def kimi_by_hand(lengths, correct):
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lam = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [x if c else min(0.0, x) for x, c in zip(lam, correct)]


def test_kimi_per_group_not_per_batch():
    kimi = Kimi(Judge(), num_generations=4)
    # group 1: mixed; group 2: all correct; group 3: all wrong; group 4: tie (all same length)
    g_comps = [[RIGHT, WRONG, RIGHT, UNCLOSED], [RIGHT] * 4, [WRONG] * 4, [RIGHT, WRONG, RIGHT, WRONG]]
    g_lens = [[10, 20, 40, 50], [100, 200, 300, 400], [5, 6, 7, 8], [30, 30, 30, 30]]
    g_correct = [[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]]
    prompts = [f"p{g}" for g in range(4) for _ in range(4)]
    got = kimi(prompts=prompts, completions=sum(g_comps, []),
               completion_ids=[[1] * n for n in sum(g_lens, [])], reference=["3"] * 16)
    want = sum((kimi_by_hand(l, c) for l, c in zip(g_lens, g_correct)), [])
    assert got == pytest.approx(want)
    # batch-wide min/max (open-r1's defect) would differ for group 2
    assert got[4:8] == pytest.approx([0.5, 0.5 - 1 / 3, 0.5 - 2 / 3, -0.5])


def test_kimi_none_warmup_and_layout_checks():
    kimi = Kimi(Judge(), num_generations=2, warmup_steps=5)
    ids = [[1] * 10, [1] * 20]

    class State:
        global_step = 3

    assert kimi(prompts=["p", "p"], completions=[RIGHT, RIGHT], completion_ids=ids,
                reference=["\\frac{", "\\frac{"]) == [None, None]
    assert kimi(prompts=["p", "p"], completions=[RIGHT, RIGHT], completion_ids=ids,
                reference=["3", "3"], trainer_state=State()) == [0.0, 0.0]
    with pytest.raises(ValueError, match="groups of num_generations=2"):
        kimi(prompts=["p"] * 3, completions=[RIGHT] * 3, completion_ids=[[1]] * 3, reference=["3"] * 3)
    with pytest.raises(ValueError, match="prompts differ"):
        kimi(prompts=["p", "q"], completions=[RIGHT] * 2, completion_ids=ids, reference=["3"] * 2)


def test_kimi_gaming_short_wrong_answers_earn_nothing():
    """Tried: answer wrong but very short, to collect the length bonus."""
    kimi = Kimi(Judge(), num_generations=2)
    got = kimi(prompts=["p", "p"], completions=[WRONG, RIGHT], completion_ids=[[1] * 2, [1] * 50],
               reference=["3", "3"])
    assert got == [0.0, -0.5]


def test_lcpo_exact_and_max_match_l1():
    alpha, delta = 0.0003, 0.5
    comps = [RIGHT, WRONG, RIGHT, RIGHT, RIGHT]
    lens = [1000, 1000, 3000, 100, 2000]
    budgets = [1000, 1000, 1000, 4000, 1000]
    c = [1, 0, 1, 1, 1]
    ids = [[1] * n for n in lens]
    exact = LcpoExact(Judge())(completions=comps, completion_ids=ids, reference=["3"] * 5,
                               length_budget=budgets)
    assert exact == pytest.approx([ci - alpha * abs(b - n) for ci, b, n in zip(c, budgets, lens)])
    mx = LcpoMax(Judge())(completions=comps, completion_ids=ids, reference=["3"] * 5, length_budget=budgets)
    assert mx == pytest.approx([ci * min(1, max(0, alpha * (b - n) + delta))
                                for ci, b, n in zip(c, budgets, lens)])
    assert mx[2] == 0.0 and mx[3] == 1.0  # 2000 tokens over: clipped at 0; far under: capped at 1
    with pytest.raises(ValueError, match="length_budget"):
        LcpoExact(Judge())(completions=comps, completion_ids=ids, reference=["3"] * 5)


def test_lcpo_gaming_right_length_wrong_answer():
    """Tried: hit the budget exactly with a wrong answer."""
    ids = [[1] * 500]
    assert LcpoMax(Judge())(completions=[WRONG], completion_ids=ids, reference=["3"], length_budget=[500]) == [0.0]
    assert LcpoExact(Judge())(completions=[WRONG], completion_ids=ids, reference=["3"], length_budget=[500]) == [0.0]


# ------------------------------------------------------------------ registry

def test_registry_builds_every_reward_with_run_context():
    from distill.rewards import REWARDS

    funcs, weights = build_rewards([RewardSpec(n, weight=0.5) for n in REWARDS], ctx(G=2, max_len=64))
    assert [f.__name__ for f in funcs] == list(REWARDS)
    assert weights == [0.5] * len(REWARDS)
    by_name = {f.__name__: f for f in funcs}
    assert by_name["overlong"].max_len == 64 and by_name["cosine"].max_len == 64
    assert by_name["kimi"].num_generations == 2


def test_registry_bad_input():
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        RewardSpec("acuracy")
    with pytest.raises(ValueError, match="unknown arg 'alpah'.*did you mean 'alpha'"):
        build_reward(RewardSpec("lcpo_max", args={"alpah": 1}), ctx())
    with pytest.raises(ValueError, match="set by the run"):
        build_reward(RewardSpec("kimi", args={"num_generations": 3}), ctx())
    with pytest.raises(ValueError, match="listed twice"):
        build_rewards([RewardSpec("accuracy"), RewardSpec("accuracy")], ctx())
    with pytest.raises(ValueError, match="reward lcpo_exact needs column.*length_budget"):
        check_columns([RewardSpec("accuracy"), RewardSpec("lcpo_exact")], ["prompt", "reference"])
    check_columns([RewardSpec("accuracy"), RewardSpec("overlong")], ["prompt", "reference"])
