"""verify_choice against the documented multiple-choice cases (tests/verifiers/cases.py)."""

import pytest

from tests.verifiers.cases import CHOICE_CASES
from verifiers import verify
from verifiers.choice import extract_choice, verify_choice


@pytest.mark.parametrize("case", CHOICE_CASES, ids=[c.id for c in CHOICE_CASES])
def test_choice_table(case):
    verdict = verify("choice", case.completion, case.reference, **dict(case.options))
    assert verdict.correct is case.expected, verdict


@pytest.mark.parametrize("text,reason", [
    ("Answer: A or B", "hedged answer"), ("Answer: either B or D", "hedged answer"),
    ("Answer: A, B, C, D", "several options"), ("Answer: A and C", "several options"),
    ("C", "no answer found"), ("Answer: F", "F is not an option"),
])
def test_rejections_say_why(text, reason):
    assert extract_choice(text, "ABCD") == (None, reason)


def test_reference_forms():
    for reference in ["C", "(C)", "c", " C. "]:
        assert verify_choice("Answer: C", reference).correct
    verdict = verify_choice("Answer: C", "Z")
    assert not verdict.correct and verdict.reason.startswith("reference unparseable")
    assert verify_choice("Answer: C", None).reason.startswith("reference unparseable")


def test_letters_option():
    assert verify_choice("Answer: J", "J", letters="ABCDEFGHIJ").correct
    with pytest.raises(ValueError):
        verify_choice("Answer: A", "A", letters="ABK")
    with pytest.raises(ValueError):
        verify_choice("Answer: A", "A", letters="AAB")


def test_think_in_prompt():
    assert verify_choice("reasoning</think>\nAnswer: B", "B").correct
    assert not verify_choice("Answer: B", "B", think_in_prompt=True).correct
    assert verify_choice("Answer: B", "B").correct


def test_long_output_is_bounded():
    assert verify_choice("(A) " * 200_000 + "\nAnswer: B", "B").correct
