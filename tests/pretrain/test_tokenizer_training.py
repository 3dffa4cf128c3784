"""Trained BPE tokenizer, the corpus reader and `distillery tokenizer`, on tiny corpora."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from distill.cli import main
from pretrain.corpus import CorpusError, iter_corpus_texts, iter_documents
from pretrain.tokenizer import (
    MIN_VOCAB_SIZE,
    RESERVED_TOKENS,
    build_byte_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Question: what is 128 + 64?\n<think>\n128 + 64 = 192. Let me verify: 192 - 64 = 128.</think>192",
    "Solve 3x + 5 = 20. Subtract 5: 3x = 15, so x = 5.",
    "数学很有趣。 我们计算 12 × 12 = 144。",
    "Wait, let me check that again. The answer is 42.",
] * 20

TEXTS = [
    "",
    "  leading spaces,   inner spaces, trailing tab\t\n",
    "line one\nline two\r\n\n\nend",
    "你好，世界！ 数学题：x² + 1 = 5",
    "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧 family",
    "mixed\x00control\x7f bytes é ß Ω ∑ \u202e rtl",
    "The cat sat on the mat <think>\nreasoning</think>answer<|end_of_text|>",
    "never seen: ქართული ᚠᛇᚻ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010ffff",
]

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 12+7?"},
    {"role": "assistant", "content": "<think>\n12 plus 7 is 19.</think>19"},
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=400)


def test_learns_merges_within_the_vocab_size(tok):
    assert MIN_VOCAB_SIZE <= len(tok) <= 400
    assert len(tok) > MIN_VOCAB_SIZE  # it merged something: common words are shorter than bytes
    assert len(tok("The cat sat on the mat.")["input_ids"]) < len("The cat sat on the mat.".encode())


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text, digits", [("12345", "12345"), ("x2y", "2"), ("a 1024b", "1024"), ("3.14", "314")])
def test_every_digit_is_its_own_token(tok, text, digits):
    pieces = [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list(digits)
    if text == "12345":
        assert len(pieces) == 5


def test_no_vocab_entry_holds_two_digits(tok):
    # Independent of how any text happens to be split: the vocabulary itself has no digit pairs.
    for i in range(len(tok)):
        assert sum(c.isdigit() for c in tok.decode([i])) <= 1, tok.decode([i])


def test_same_id_layout_as_the_byte_tokenizer(tok):
    # bytes 0..255 by value, then the reserved tokens at 256..263, merges after: the byte tokenizer's
    # ids (its own test pins them) mean the same in the trained one.
    byte_vocab = build_byte_tokenizer().get_vocab()
    vocab = tok.get_vocab()
    assert {t: vocab[t] for t in byte_vocab} == byte_vocab
    assert [tok.convert_tokens_to_ids(t) for t in RESERVED_TOKENS] == list(range(256, 264))
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert tok(" ", add_special_tokens=False)["input_ids"] == [32]  # Python's UTF-8 byte for space


def test_think_tags_are_single_tokens_kept_by_skip_special(tok):
    assert tok("<think>", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids("<think>")]
    assert tok("</think>", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids("</think>")]
    ids = tok("<|user|>q<think>r</think>a<|end_of_text|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "q<think>r</think>a"


def test_chat_template_renders_and_round_trips(tok):
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text == ("<|begin_of_text|><|system|>Be brief.\n<|user|>What is 12+7?\n"
                    "<|assistant|><think>\n12 plus 7 is 19.</think>19<|end_of_text|>")
    ids = tok.apply_chat_template(MESSAGES, tokenize=True)
    ids = list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    prompt = tok.apply_chat_template(MESSAGES[1:2], tokenize=False, add_generation_prompt=True,
                                     enable_thinking=True)
    assert prompt.endswith("<|assistant|><think>\n")


def test_auto_tokenizer_after_save_gives_identical_ids(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and (tmp_path / "tok" / "tokenizer_config.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in TEXTS + CORPUS[:5]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == (tok.bos_token, tok.eos_token, tok.pad_token)
    assert loaded.model_max_length == 2048
    assert loaded.apply_chat_template(MESSAGES, tokenize=False) == tok.apply_chat_template(MESSAGES, tokenize=False)


def test_trl_pads_a_batch_with_it(tok):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    ids = [tok("12+7=19")["input_ids"], tok("1+1=2, and more text")["input_ids"]]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)([{"input_ids": i} for i in ids])
    assert batch["input_ids"].shape == (2, len(ids[1]))
    assert batch["input_ids"][0, -1].item() == tok.pad_token_id


def test_deterministic():
    a, b = train_tokenizer(CORPUS, 350), train_tokenizer(CORPUS, 350)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_vocab_too_small_is_an_error():
    with pytest.raises(ValueError, match=rf"tokenizer\.vocab_size=263 .*minimum is {MIN_VOCAB_SIZE}"):
        train_tokenizer(CORPUS, vocab_size=263)
    assert len(train_tokenizer(CORPUS, vocab_size=MIN_VOCAB_SIZE)) == MIN_VOCAB_SIZE  # bytes + specials


# --- corpus reading -------------------------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_every_format_in_order(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    _write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two", "id": 3}])
    (tmp_path / "a.jsonl").write_text((tmp_path / "a.jsonl").read_text() + "\n")  # a blank tail line
    _write_jsonl(tmp_path / "chat.jsonl", [{"messages": MESSAGES[1:]}])
    pq.write_table(pa.table({"text": ["p0", "p1"], "n": [0, 1]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("para one\n\npara two\n", encoding="utf-8")
    datasets.Dataset.from_dict({"body": ["h0", "h1"]}).save_to_disk(tmp_path / "hf")

    docs = list(iter_documents([tmp_path / "a.jsonl", tmp_path / "chat.jsonl", tmp_path / "b.parquet",
                                tmp_path / "c.txt"]))
    assert docs == [
        (str(tmp_path / "a.jsonl"), 0, "one"),
        (str(tmp_path / "a.jsonl"), 1, "two"),
        (str(tmp_path / "chat.jsonl"), 0, "What is 12+7?\n<think>\n12 plus 7 is 19.</think>19"),
        (str(tmp_path / "b.parquet"), 0, "p0"),
        (str(tmp_path / "b.parquet"), 1, "p1"),
        (str(tmp_path / "c.txt"), 0, "para one\n\npara two\n"),  # one document per file
    ]
    assert list(iter_documents([str(tmp_path / "hf")], text_field="body")) == [
        (str(tmp_path / "hf"), 0, "h0"), (str(tmp_path / "hf"), 1, "h1")]
    assert list(iter_corpus_texts([str(tmp_path / "*.jsonl")])) == ["one", "two", docs[2][2]]
    assert list(iter_corpus_texts([tmp_path / "a.jsonl", tmp_path / "b.parquet"], max_chars=5)) == ["one", "tw"]


def test_a_dataset_dict_must_name_its_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(tmp_path / "dd")
    with pytest.raises(CorpusError, match=r"dd.*splits \['train'\]"):
        list(iter_documents([tmp_path / "dd"]))
    assert [t for _, _, t in iter_documents([tmp_path / "dd" / "train"])] == ["a"]


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", b"", r"empty\.jsonl: empty file"),
    ("blank.jsonl", b"\n  \n", r"blank\.jsonl: empty file"),
    ("empty.txt", b"", r"empty\.txt: empty file"),
    ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"latin1\.jsonl: line 2: not UTF-8"),
    ("latin1.txt", b"line\ncaf\xe9\n", r"latin1\.txt: line 2: not UTF-8"),
    ("nofield.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', r"nofield\.jsonl: line 2: no field 'text'"),
    ("notstr.jsonl", b'{"text": 7}\n', r"notstr\.jsonl: line 1: field 'text' is int"),
    ("badjson.jsonl", b'{"text": "ok"}\n{"text": \n', r"badjson\.jsonl: line 2: invalid JSON"),
    ("data.csv", b"text\nhello\n", r"data\.csv: unknown corpus file type '\.csv'"),
    ("fake.parquet", b"not parquet", r"fake\.parquet: not a readable Parquet file"),
])
def test_bad_input_names_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        list(iter_documents([str(tmp_path / name)]))
    assert issubclass(CorpusError, ValueError)


def test_parquet_missing_column_and_missing_path(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "b.parquet")
    with pytest.raises(CorpusError, match=r"b\.parquet: no column 'text'.*\['body'\]"):
        list(iter_documents([tmp_path / "b.parquet"]))
    with pytest.raises(CorpusError, match=r"nope\.jsonl: no such file"):
        list(iter_documents([tmp_path / "b.parquet", tmp_path / "nope.jsonl"]))  # before reading b


# --- the CLI --------------------------------------------------------------------------------


def _recipe(tmp_path, name="recipe.yaml", **overrides):
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in CORPUS])
    section = {"sources": [str(corpus)], "vocab_size": 320, "out_dir": str(tmp_path / "tok"), **overrides}
    (tmp_path / name).write_text(json.dumps({"tokenizer": section}))  # JSON is YAML
    return str(tmp_path / name)


def test_cli_trains_saves_and_skips_when_done(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["tokenizer", "--config", recipe]) == 0
    out = capsys.readouterr().out
    assert "trained" in out and "example:" in out
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert MIN_VOCAB_SIZE < len(loaded) <= 320
    assert loaded("12345", add_special_tokens=False)["input_ids"] == [ord(c) for c in "12345"]
    assert (tmp_path / "tok" / "tokenizer_train_config.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left
    before = (tmp_path / "tok" / "tokenizer.json").stat().st_mtime_ns

    assert main(["tokenizer", "--config", recipe]) == 0
    assert "exists" in capsys.readouterr().out
    assert (tmp_path / "tok" / "tokenizer.json").stat().st_mtime_ns == before

    # Another config into the same directory is refused, naming what changed.
    assert main(["tokenizer", "--config", recipe, "--set", "vocab_size=300"]) == 2
    assert "vocab_size: 320 -> 300" in capsys.readouterr().err


def test_cli_config_errors_exit_2(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["tokenizer", "--config", recipe, "--set", "vocab_sise=300"]) == 2
    assert "unknown key 'vocab_sise' (did you mean 'vocab_size'?)" in capsys.readouterr().err
    assert main(["tokenizer", "--config", _recipe(tmp_path, "typo.yaml", vocab_sise=300)]) == 2
    assert "tokenizer: unknown key 'vocab_sise'" in capsys.readouterr().err
    assert main(["tokenizer", "--config", recipe, "--set", "vocab_size=100"]) == 2
    assert f"tokenizer.vocab_size=100 is too small: the minimum is {MIN_VOCAB_SIZE}" in capsys.readouterr().err
    assert main(["tokenizer", "--config", recipe, "--set", f"sources=[{tmp_path}/x.csv]"]) == 2
    assert "x.csv" in capsys.readouterr().err
    assert not (tmp_path / "tok").exists()
