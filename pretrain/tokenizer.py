"""Tokenizers in HF format: the byte-level base, BPE trained on a corpus, and the R1 chat template.

The byte tokenizer maps byte b to token id b (GPT-2's printable-byte alphabet, no merges), so any
UTF-8 text round-trips and ids mean the same thing in every run. Special tokens follow at 256+:

    <|begin_of_text|> <|end_of_text|> <|pad|> <|system|> <|user|> <|assistant|> <think> </think>

`<think>`/`</think>` are added tokens but not *special* ones: `decode(skip_special_tokens=True)`
must keep them, since the reasoning split (DESIGN: sample rows' `reasoning`/`answer_text`) and the
format verifier read them from decoded text.

The trained tokenizer (`train_tokenizer`, issue 3) is byte-level BPE on the same id layout: bytes
0..255 (id = byte value), the 8 special tokens at 256..263 (first, before every merge), then the
merges from 264 in the order they were learnt. The byte tokenizer is thus the zero-merge case, and
the special ids are the same constants whatever the vocab size. Text is split GPT-4-style (cl100k
regex, as nanochat does) and then into single digits, so no token holds two digits: every number
is spelled digit by digit, which arithmetic needs (as in LLaMA and DeepSeek LLM, arXiv:2401.02954
section 2.1).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS.values()]  # ids 256.. in this order, then the think tags
RESERVED_TOKENS = [*SPECIAL_TOKENS, THINK_OPEN, THINK_CLOSE]  # ids 256..263 in both tokenizers
MIN_VOCAB_SIZE = 256 + len(RESERVED_TOKENS)

# GPT-4's cl100k split (contractions, letter runs with one leading non-letter, number runs,
# punctuation runs, newlines, spaces); the Digits pre-tokenizer after it cuts numbers to one digit.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# R1-style conversation: bos, then `<|role|>content`; user/system turns end in "\n", assistant turns
# in eos (the stop token a generator sees). `{% generation %}` marks assistant tokens so TRL's
# `assistant_only_loss` can mask everything else. `enable_thinking` opens the reasoning block in the
# generation prompt, as DeepSeek-R1's template does to force a `<think>` start.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% elif message['role'] in ('system', 'user') %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}\n"
    "{% else %}{{ raise_exception('unknown chat role: ' ~ message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and enable_thinking %}<think>\n{% endif %}"
    "{% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the alphabet of the ByteLevel pre-tokenizer."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1))
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:  # control bytes and space move to unused code points from 256 up
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _add_reserved_tokens(tok: Tokenizer) -> None:
    """Register the special tokens and think tags; ids already in the model vocab are kept."""
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])


def _byte_level_tokenizer() -> Tokenizer:
    """A `tokenizers` BPE over the 256 byte symbols with no merges: one token per byte."""
    vocab = {char: b for b, char in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    _add_reserved_tokens(tok)
    return tok


def wrap_tokenizer(tok: Tokenizer, model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """The transformers view of a `tokenizers` object: named special tokens and the chat template."""
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_TOKENS.values()),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        **extra,
    )


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level tokenizer: 256 byte ids, then the special tokens (264 tokens in all)."""
    return wrap_tokenizer(_byte_level_tokenizer())


@functools.lru_cache(maxsize=1)
def _template_renderer() -> PreTrainedTokenizerFast:
    return build_byte_tokenizer()


def chat_text(messages: list[dict]) -> str:
    """A conversation as one pretraining document: CHAT_TEMPLATE's rendering without the leading
    bos and trailing eos, which the shard builder puts around every document. A model pretrained on
    such documents has seen the prompt that a chat-templated eval or generate sends, token for
    token (every tokenizer built here shares the template and the role tokens)."""
    text = _template_renderer().apply_chat_template(messages, tokenize=False)
    return text.removeprefix(BOS).removesuffix(EOS)


def save_tokenizer(tok: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write HF tokenizer files; `AutoTokenizer.from_pretrained(directory)` loads them offline."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return directory


def check_vocab_size(vocab_size: int) -> None:
    """ValueError unless `vocab_size` holds the 256 bytes and the special tokens."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"tokenizer.vocab_size={vocab_size} is too small: the minimum is {MIN_VOCAB_SIZE} "
                         f"(256 byte tokens + {len(RESERVED_TOKENS)} special tokens)")


@dataclass
class TokenizerConfig:
    """What `distillery tokenizer` reads: the recipe's `tokenizer:` section.

    Corpus (read by `pretrain.corpus`, which documents the formats):
        sources: corpus files (.jsonl, .parquet, .txt), directories, local HF dataset directories or
            glob patterns, relative to the working directory.
        text_field: the JSONL key / column holding the text (chat rows with `messages` also work).
        max_chars: train on at most this many characters from the start of the corpus (None: all).
    BPE:
        vocab_size: the total, 256 bytes and 8 special tokens included; the model's vocab_size must
            be at least this. A small corpus may learn fewer merges than asked for.
        min_frequency: a pair seen fewer times than this is never merged.
        model_max_length: the context the models are trained at, saved in tokenizer_config.json
            for TRL and `truncation=True`; 2048 is ModelConfig's max_position_embeddings default.
    Output:
        out_dir: the tokenizer directory (tokenizer.json, tokenizer_config.json, the saved config).
    """

    sources: list[str] = field(default_factory=list)
    text_field: str = "text"
    vocab_size: int = 2048
    min_frequency: int = 2
    max_chars: int | None = None
    model_max_length: int = 2048
    out_dir: str = "runs/tokenizer"

    def __post_init__(self):
        if not self.sources:
            raise ValueError("sources: name at least one corpus file or directory")
        check_vocab_size(self.vocab_size)
        for name in ("min_frequency", "model_max_length", "max_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


def _split_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _without_reserved(texts: Iterable[str]) -> Iterator[list[str]]:
    """Each text as the pieces between reserved tokens: `<think>` in the corpus is one added token
    at encode time, so merges spent on its characters (`<think`, ...) would be wasted."""
    pattern = re.compile("|".join(map(re.escape, RESERVED_TOKENS)))
    for text in texts:
        yield [piece for piece in pattern.split(text) if piece]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    model_max_length: int = 2048,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE with `vocab_size` tokens at most, on the byte tokenizer's id layout.

    Any text round-trips (all 256 bytes are in the initial alphabet); ids 0..263 mean what they mean
    in `build_byte_tokenizer()`, and the merges follow. Deterministic for the same texts in the
    same order.
    """
    check_vocab_size(vocab_size)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = _split_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(RESERVED_TOKENS),  # the trainer's count is bytes + merges
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=show_progress,
    )
    bpe.train_from_iterator(_without_reserved(texts), trainer)
    trained = json.loads(bpe.to_str())["model"]

    # Renumber: bytes by value, reserved tokens next, then the merged tokens in the order learnt.
    vocab = {char: b for b, char in _bytes_to_unicode().items()}
    vocab.update({t: 256 + i for i, t in enumerate(RESERVED_TOKENS)})
    assert set(trained["vocab"]) >= set(_bytes_to_unicode().values()), "initial alphabet missing bytes"
    merged = sorted((i, t) for t, i in trained["vocab"].items() if len(t) > 1 or t not in vocab)
    assert all(t not in vocab for _, t in merged), "a merge produced a reserved token"
    vocab.update({t: MIN_VOCAB_SIZE + k for k, (_, t) in enumerate(merged)})
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = _split_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    _add_reserved_tokens(tok)  # already in the vocab at 256..263, so they keep those ids
    assert len(vocab) <= vocab_size and tok.get_vocab_size() == len(vocab)
    return wrap_tokenizer(tok, model_max_length=model_max_length)
