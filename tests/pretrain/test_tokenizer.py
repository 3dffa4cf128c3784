"""pretrain.tokenizer: byte-level round trips, stable special ids, the R1 chat template."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer

TEXTS = [
    "",
    "1+1=2",
    "  leading spaces, trailing tab\t\n",
    "你好，世界！ 数学题：x² + 1 = 5",
    "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧 family",
    "mixed\x00control\x7f bytes é ß Ω ∑ \u202e rtl",
    "<think>\nreasoning</think>answer",
]

EXPECTED_IDS = {  # the contract: bytes 0..255, then these in order
    "<|begin_of_text|>": 256,
    "<|end_of_text|>": 257,
    "<|pad|>": 258,
    "<|system|>": 259,
    "<|user|>": 260,
    "<|assistant|>": 261,
    "<think>": 262,
    "</think>": 263,
}


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_ids_are_utf8_bytes(tok):
    # Independent reference: Python's own UTF-8 encoder.
    text = "Añ 中 🙂"
    assert tok(text, add_special_tokens=False)["input_ids"] == list(text.encode("utf-8"))
    assert len(tok) == 256 + len(EXPECTED_IDS)


def test_special_token_ids_stable_and_distinct(tok):
    assert {t: tok.convert_tokens_to_ids(t) for t in EXPECTED_IDS} == EXPECTED_IDS
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    # A rebuilt tokenizer must give the same ids: checkpoints depend on them.
    assert build_byte_tokenizer().get_vocab() == tok.get_vocab()


def test_think_tags_are_single_tokens_kept_by_skip_special(tok):
    assert tok("<think>", add_special_tokens=False)["input_ids"] == [262]
    assert tok("</think>", add_special_tokens=False)["input_ids"] == [263]
    ids = tok("<|user|>q<think>r</think>a<|end_of_text|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == 260 and ids[-1] == 257
    assert tok.decode(ids, skip_special_tokens=True) == "q<think>r</think>a"


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "1+1?"},
    {"role": "assistant", "content": "<think>\n1 plus 1 is 2.</think>2"},
]


def test_chat_template(tok):
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text == (
        "<|begin_of_text|><|system|>Be brief.\n<|user|>1+1?\n"
        "<|assistant|><think>\n1 plus 1 is 2.</think>2<|end_of_text|>"
    )


def test_generation_prompt_and_thinking(tok):
    prompt = MESSAGES[1:2]
    plain = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert plain == "<|begin_of_text|><|user|>1+1?\n<|assistant|>"
    thinking = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == plain + "<think>\n"
    off = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert off == plain


def test_assistant_mask_covers_only_the_answer(tok):
    out = tok.apply_chat_template(MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == MESSAGES[2]["content"] + "<|end_of_text|>"


def test_unknown_role_is_an_error(tok):
    with pytest.raises(Exception, match="unknown chat role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_save_and_load_with_auto_tokenizer(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (256, 257, 258)
    assert loaded.apply_chat_template(MESSAGES, tokenize=False) == tok.apply_chat_template(MESSAGES, tokenize=False)
    assert loaded.decode([262, 50, 263], skip_special_tokens=True) == "<think>2</think>"
