"""Tokenizers in HF format: the byte-level base every model starts from, and the R1 chat template.

The byte tokenizer maps byte b to token id b (GPT-2's printable-byte alphabet, no merges), so any
UTF-8 text round-trips and ids mean the same thing in every run. Special tokens follow at 256+:

    <|begin_of_text|> <|end_of_text|> <|pad|> <|system|> <|user|> <|assistant|> <think> </think>

`<think>`/`</think>` are added tokens but not *special* ones: `decode(skip_special_tokens=True)`
must keep them, since the reasoning split (DESIGN: sample rows' `reasoning`/`answer_text`) and the
format verifier read them from decoded text.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS.values()]  # ids 256.. in this order, then the think tags

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


def _byte_level_tokenizer() -> Tokenizer:
    """A `tokenizers` BPE over the 256 byte symbols with no merges: one token per byte."""
    vocab = {char: b for b, char in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])
    return tok


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers view of a `tokenizers` object: named special tokens and the chat template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_TOKENS.values()),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level tokenizer: 256 byte ids, then the special tokens (264 tokens in all)."""
    return wrap_tokenizer(_byte_level_tokenizer())


def save_tokenizer(tok: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write HF tokenizer files; `AutoTokenizer.from_pretrained(directory)` loads them offline."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return directory
