"""Think-format validity, split_think (fills the pipeline's reasoning/answer_text columns) and
the R1 hygiene filters, checked against values counted by hand."""

import pytest

from verifiers import verify
from verifiers.format import (code_blocks_in_reasoning, is_truncated, language_mixing,
                              long_paragraphs, ngram_repetition, split_think, verify_format)


@pytest.mark.parametrize("completion,expected", [
    ("<think>r</think>a", ("r", "a", True)),
    ("<think>\nr\n</think>\n\na\n", ("r", "a", True)),
    ("<THINK>r</Think>a", ("r", "a", True)),
    ("< think >r< /think >a", ("r", "a", True)),
    ("r</think>a", ("r", "a", True)),  # the prompt opened <think> (R1 template)
    ("<think>r", ("r", "", False)),
    ("<think>r</think>a<think>more", ("r</think>a<think>more", "", False)),
    ("<think>r1</think>x</think>a", ("r1</think>x", "a", True)),
    ("plain answer", (None, "plain answer", True)),
    ("", (None, "", True)),
])
def test_split_think(completion, expected):
    assert split_think(completion) == expected


def test_split_think_when_the_prompt_opened_the_block():
    assert split_think("still thinking", think_in_prompt=True) == ("still thinking", "", False)
    assert split_think("r</think>a", think_in_prompt=True) == ("r", "a", True)


@pytest.mark.parametrize("completion,ok,reason", [
    ("<think>r</think>a", True, "ok"),
    ("  <think>r</think>\na", True, "ok"),
    ("a", False, "no <think> block"),
    ("x<think>r</think>a", False, "text before <think>"),
    ("<think>r", False, "unclosed <think>"),
    ("<think>r</think>", False, "no answer after </think>"),
    ("<think> </think>a", False, "empty <think> block"),
    ("<think>a</think>b<think>c</think>d", False, "2 <think> tags"),
    ("<think>a</think>b</think>d", False, "2 </think> tags"),
])
def test_verify_format(completion, ok, reason):
    verdict = verify("format", completion, None)
    assert (verdict.correct, verdict.reason) == (ok, reason)


def test_verify_format_options():
    assert verify_format("r</think>a", think_in_prompt=True).correct
    assert not verify_format("<think>r</think>a", think_in_prompt=True).correct
    assert verify_format("<think></think>a", require_reasoning=False).correct


def test_language_mixing():
    assert language_mixing("We add the two numbers and get five.") == 1.0
    # 2 English words (Let, be; `x` is a variable) and 5 Chinese characters
    assert language_mixing("Let x be 5. 所以答案是") == pytest.approx(2 / 7)
    assert language_mixing("所以答案是 x", target="zh") == 1.0
    assert language_mixing("Это ответ and more", target="ru") == pytest.approx(2 / 4)
    assert language_mixing("$\\frac{\\alpha}{\\beta}$ α β") == 1.0  # LaTeX and lone Greek letters
    assert language_mixing("") == 1.0
    with pytest.raises(ValueError):
        language_mixing("x", target="klingon")


def test_long_paragraphs():
    text = "short\n\n" + "x" * 2500 + "\n\nshort again\n \n" + "y" * 2001
    assert long_paragraphs(text) == 2
    assert long_paragraphs(text, max_chars=3000) == 0


def test_code_blocks_in_reasoning():
    completion = "<think>try\n```python\nprint(1)\n```\nand\n~~~\nx\n~~~\n</think>\n```python\nok\n```"
    assert code_blocks_in_reasoning(completion) == 2  # the block after </think> does not count
    assert code_blocks_in_reasoning("```\nunclosed") == 1
    assert code_blocks_in_reasoning("no code") == 0


def test_ngram_repetition():
    assert ngram_repetition("a b c d e f", n=2) == 0.0
    # "a b a b a b": 2-grams ab ba ab ba ab -> 5 total, 2 distinct -> 3/5 repeat
    assert ngram_repetition("a b a b a b", n=2) == pytest.approx(3 / 5)
    assert ngram_repetition("too short", n=10) == 0.0
    assert ngram_repetition("loop " * 10_000) > 0.99
    with pytest.raises(ValueError):
        ngram_repetition("x", n=0)


@pytest.mark.parametrize("completion,finish_reason,expected", [
    ("<think>r</think>a", None, False),
    ("<think>r</think>a", "length", True),
    ("<think>r", "stop", True),
    ("<think>r</think>  ", None, True),
    ("plain answer", None, False),
])
def test_is_truncated(completion, finish_reason, expected):
    assert is_truncated(completion, finish_reason) is expected


def test_hygiene_on_a_megabyte_is_quick():
    import time

    text = "<think>" + "step by step we go on. " * 45_000 + "</think>\\boxed{1}"
    start = time.perf_counter()
    split_think(text), language_mixing(text), long_paragraphs(text), code_blocks_in_reasoning(text)
    ngram_repetition(text), is_truncated(text)
    assert time.perf_counter() - start < 5.0
