"""Each hygiene rule on crafted samples, at and around its threshold; measures checked by hand."""

from __future__ import annotations

import pytest

from distill.filter.config import HygieneConfig
from distill.filter.hygiene import hygiene_failures, line_repetition, measure
from distill.filter.inputs import SampleReader
from tests.distill.filter_helpers import sample


def _failures(row: dict, cfg: HygieneConfig | None = None) -> list[str]:
    cfg = cfg or HygieneConfig()
    s = SampleReader({}, "math", "{problem}").samples("t.jsonl:1", row)[0]
    return hygiene_failures(measure(s, cfg), s.kind, cfg)


def _with_completion(text: str, **kw) -> dict:
    row = sample("p", 0, "5", **kw)
    row["completion"] = text
    return row


def test_clean_sample_passes_every_rule():
    assert _failures(sample("p", 0, "5")) == []


@pytest.mark.parametrize("completion", [
    "no think block at all \\boxed{5}",
    "<think>a</think><think>b</think> \\boxed{5}",
    "preamble <think>a</think> \\boxed{5}",
])
def test_think_format(completion):
    assert "think_format" in _failures(_with_completion(completion))


def test_truncated_by_finish_reason_or_open_think():
    assert _failures(sample("p", 0, "5", finish_reason="length")) == ["truncated"]
    failed = _failures(_with_completion("<think>\nstill thinking about it"))
    assert {"truncated", "empty_answer", "think_format"} <= set(failed)


def test_empty_answer():
    failed = _failures(_with_completion("<think>\nall done\n</think>\n\n   "))
    assert "empty_answer" in failed and "truncated" not in failed


def test_language_share_threshold():
    # 4 Latin words and 4 Han characters (one word each): share 4 / 8 = 0.5
    row = sample("p", 0, "5", reasoning="This is english text 这是中文")
    assert _failures(row) == ["language"]
    assert _failures(row, HygieneConfig(language_min_share=0.5)) == []
    assert _failures(row, HygieneConfig(language_min_share=None)) == []


def test_long_paragraph_boundary():
    cfg = HygieneConfig(max_paragraph_chars=100)
    words = " ".join(f"w{i:03d}" for i in range(20))  # 20 * 5 - 1 = 99 characters
    assert len(words) == 99
    assert _failures(sample("p", 0, "5", reasoning=f"{words}\n\nshort"), cfg) == []
    assert _failures(sample("p", 0, "5", reasoning=f"{words}xx\n\nshort"), cfg) == ["long_paragraph"]


def test_code_blocks_only_for_non_code_problems():
    reasoning = "Let me try it:\n```python\nprint(5)\n```\nIt prints 5."
    assert _failures(sample("p", 0, "5", reasoning=reasoning)) == ["code_in_reasoning"]
    assert _failures(sample("p", 0, "5", reasoning=reasoning), HygieneConfig(max_code_blocks=1)) == []
    row = sample("p", 0, "```python\nprint(5)\n```", kind="code", reasoning=reasoning,
                 reference={"inputs": [""], "outputs": ["5"]})
    assert "code_in_reasoning" not in _failures(row)


def test_ngram_repetition_of_a_loop():
    loop = "a b c d e f g h i j " * 5  # 50 words: 41 10-grams, 10 distinct -> 31/41 repeat
    s = SampleReader({}, "math", "{problem}").samples("t:1", sample("p", 0, "5", reasoning=loop))[0]
    assert measure(s, HygieneConfig())["ngram_repetition"] == pytest.approx(31 / 41, abs=1e-4)
    assert "repetition" in _failures(sample("p", 0, "5", reasoning=loop))
    assert _failures(sample("p", 0, "5", reasoning=loop),
                     HygieneConfig(max_ngram_repetition=0.8, max_line_repetition=None)) == []


def test_repeated_lines_count_long_lines_only():
    long_line = "Let me recompute the whole chain once more."
    text = "\n".join([long_line, "Something different happens here.", long_line])
    assert line_repetition(text) == pytest.approx(1 / 3)
    assert _failures(sample("p", 0, "5", reasoning=text)) == ["repeated_lines"]
    short = "\n".join(["Wait.", "Step one is fine here ok.", "Wait.", "Wait."])
    assert line_repetition(short) == 0.0


def test_bad_thresholds_are_config_errors():
    with pytest.raises(ValueError, match="language_min_share"):
        HygieneConfig(language_min_share=1.5)
