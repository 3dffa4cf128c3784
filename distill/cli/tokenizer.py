"""`distillery tokenizer --config R`: train the byte-level BPE tokenizer on a recipe's corpus.

Output, written atomically (a temp directory next to `out_dir`, then a rename): the HF tokenizer
files and `tokenizer_train_config.yaml`, the resolved config. A rerun whose config matches the
saved one (`out_dir` aside) prints "exists" and does nothing; a different config is an error
rather than an overwrite, since checkpoints made with the old tokenizer would silently change
meaning.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from distill.cli import add_config_arguments

SAVED_CONFIG = "tokenizer_train_config.yaml"
EXAMPLE = "Solve: 128 + 64 = ? <think>\n128 + 64 = 192.</think> The answer is 192."


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer on a corpus",
        description="Train a byte-level BPE tokenizer (digits split, R1 chat template) on the "
                    "corpus named in the recipe's `tokenizer:` section and save it in HF format.",
    )
    add_config_arguments(parser, required=True, section="tokenizer", example="vocab_size=1024",
                         config="pretrain.tokenizer:TokenizerConfig")
    parser.set_defaults(func=_tokenizer)


def _tokenizer(args) -> int:
    from pretrain.tokenizer import TokenizerConfig
    from recipes.config import load_config

    cfg = load_config(TokenizerConfig, args.config, args.overrides, section="tokenizer")
    run(cfg)
    return 0


def run(cfg) -> Path:
    """Train and save the tokenizer `cfg` describes, or skip when `cfg.out_dir` already holds it."""
    from pretrain.corpus import iter_corpus_texts
    from pretrain.tokenizer import MIN_VOCAB_SIZE, train_tokenizer

    out = Path(cfg.out_dir)
    if _existing_matches(cfg, out):
        print(f"exists: {out} holds a tokenizer trained from this config; nothing to do")
        return out

    start, chars, docs = time.perf_counter(), 0, 0

    def counted(texts):
        nonlocal chars, docs
        for text in texts:
            chars, docs = chars + len(text), docs + 1
            yield text

    texts = counted(iter_corpus_texts(cfg.sources, cfg.text_field, cfg.max_chars))
    tokenizer = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency, cfg.model_max_length,
                                show_progress=sys.stderr.isatty())  # its bar is blank lines in logs
    if chars == 0:
        raise ValueError(f"tokenizer.sources: the corpus {cfg.sources} holds no text")
    _write_atomically(tokenizer, cfg, out)

    merges = len(tokenizer) - MIN_VOCAB_SIZE
    print(f"trained {len(tokenizer)} tokens (256 bytes + 8 special + {merges:,} merges; asked for "
          f"{cfg.vocab_size}) on {docs:,} documents, {chars:,} chars in {time.perf_counter() - start:.1f}s")
    ids = tokenizer(EXAMPLE, add_special_tokens=False)["input_ids"]
    pieces = "|".join(tokenizer.decode([i]) for i in ids)
    print(f"example: {len(EXAMPLE)} chars -> {len(ids)} tokens: {pieces!r}")
    print(f"wrote {out}")
    return out


def _existing_matches(cfg, out: Path) -> bool:
    """True when `out` holds a tokenizer from an equal config; an error when it holds anything else."""
    from recipes.config import config_to_dict, load_config

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    saved = out / SAVED_CONFIG
    if not (saved.is_file() and (out / "tokenizer.json").is_file()):
        raise ValueError(f"tokenizer.out_dir: {out} exists and is not a tokenizer written by "
                         f"`distillery tokenizer`; remove it or choose another out_dir")
    old = config_to_dict(load_config(type(cfg), saved))
    new = config_to_dict(cfg)
    old.pop("out_dir"), new.pop("out_dir")  # where it lives does not change what was trained
    if old == new:
        return True
    changed = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new[k])
    raise ValueError(f"tokenizer.out_dir: {out} holds a tokenizer trained from another config ({changed}); "
                     f"remove it or choose another out_dir")


def _write_atomically(tokenizer, cfg, out: Path) -> None:
    """Save into a temp directory beside `out`, then rename it into place: a killed run leaves
    either no `out` or a complete one."""
    from pretrain.tokenizer import save_tokenizer
    from recipes.config import save_config

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_tokenizer(tokenizer, tmp)
        save_config(cfg, tmp / SAVED_CONFIG)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the output is meant to be shared
        if out.is_dir():
            out.rmdir()  # empty (checked by _existing_matches); rename cannot replace a directory
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
