"""Token shards (pretrain/shards.py) and the packed loader (pretrain/data.py).

References are computed here from the corpus text: with the byte tokenizer a document's tokens are
[bos] + its UTF-8 bytes + [eos], so every check compares against the raw strings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain import shards as shards_mod
from pretrain.data import PackedLoader
from pretrain.shards import build_shards, load_shards
from pretrain.tokenizer import build_byte_tokenizer

BOS, EOS = 256, 257


def write_corpus(directory: Path, num_docs=(40, 30), seed=0, max_len=40):
    """JSONL files of random lowercase documents (no two equal); returns (paths, texts in order)."""
    rng = np.random.default_rng(seed)
    paths, texts = [], []
    for f, n in enumerate(num_docs):
        path = directory / f"part{f}.jsonl"
        rows = []
        for _ in range(n):
            text = "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(1, max_len)))
            text += f" #{len(texts)}"  # unique, so a document is identified by its tokens
            texts.append(text)
            rows.append(json.dumps({"text": text, "id": len(texts)}))
        path.write_text("\n".join(rows) + "\n")
        paths.append(str(path))
    return paths, texts


def doc_tokens(text: str) -> tuple[int, ...]:
    return (BOS, *text.encode(), EOS)


@pytest.fixture(scope="module")
def tokenizer():
    return build_byte_tokenizer()


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


@pytest.fixture
def built(tmp_path, corpus, tokenizer):
    """Shards with several train shards and a val split."""
    paths, texts = corpus
    return build_shards(paths, tokenizer, tmp_path / "shards", shard_tokens=300, val_fraction=0.25,
                        seed=1), texts


def dir_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.name != "manifest.json"}


def manifest_without_time(directory: Path) -> dict:
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.pop("created_at")
    return manifest


def split_docs(shard_set, split):
    part = shard_set.split(split)
    return [tuple(part.document(i).tolist()) for i in range(part.num_documents)]


# -- shards ----------------------------------------------------------------------------------------


def test_shards_hold_every_document_once_in_order(built):
    shard_set, texts = built
    assert len(shard_set.train.shards) > 2 and shard_set.val.num_documents > 0
    train, val = split_docs(shard_set, "train"), split_docs(shard_set, "val")
    # Walking the corpus in order, each document is the next one of exactly one split.
    i = j = 0
    for text in texts:
        if i < len(train) and train[i] == doc_tokens(text):
            i += 1
        else:
            assert val[j] == doc_tokens(text)
            j += 1
    assert (i, j) == (len(train), len(val))
    assert shard_set.num_documents == len(texts)
    assert shard_set.num_tokens == sum(len(doc_tokens(t)) for t in texts)
    assert shard_set.dtype == np.uint16
    for shard in shard_set.shards:  # raw memmap bytes: 2 per token
        assert shard.bin_path.stat().st_size == 2 * shard.num_tokens


def test_build_is_deterministic(tmp_path, corpus, tokenizer):
    paths, _ = corpus
    for name in ("a", "b"):
        build_shards(paths, tokenizer, tmp_path / name, shard_tokens=300, val_fraction=0.25, seed=1)
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")
    assert manifest_without_time(tmp_path / "a") == manifest_without_time(tmp_path / "b")
    build_shards(paths, tokenizer, tmp_path / "c", shard_tokens=300, val_fraction=0.25, seed=2)
    assert dir_bytes(tmp_path / "c") != dir_bytes(tmp_path / "a")  # the seed picks the val docs


def test_complete_build_is_reused_without_work(built, corpus, tokenizer, monkeypatch):
    shard_set, _ = built
    paths, _ = corpus

    def fail(*args, **kwargs):
        raise AssertionError("a complete build must not read the corpus again")

    monkeypatch.setattr(shards_mod, "iter_documents", fail)
    monkeypatch.setattr(shards_mod, "_tokenize", fail)
    again = build_shards(paths, tokenizer, shard_set.out_dir, shard_tokens=300, val_fraction=0.25,
                         seed=1)
    assert again.fingerprint == shard_set.fingerprint
    assert again.num_tokens == shard_set.num_tokens


def test_killed_build_resumes_to_the_same_result(tmp_path, corpus, tokenizer, monkeypatch):
    paths, texts = corpus
    kwargs = dict(shard_tokens=300, val_fraction=0.25, seed=1)
    build_shards(paths, tokenizer, tmp_path / "whole", **kwargs)

    committed = []

    def crash_after_three(path):
        committed.append(path.name)
        if len(committed) == 3:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(shards_mod, "_shard_committed", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_shards(paths, tokenizer, tmp_path / "killed", **kwargs)
    with pytest.raises(ValueError, match="unfinished"):
        load_shards(tmp_path / "killed")

    tokenized = []
    real_tokenize = shards_mod._tokenize
    monkeypatch.setattr(shards_mod, "_shard_committed", lambda path: None)
    monkeypatch.setattr(shards_mod, "_tokenize",
                        lambda tok, batch: tokenized.extend(batch) or real_tokenize(tok, batch))
    resumed = build_shards(paths, tokenizer, tmp_path / "killed", **kwargs)
    assert 0 < len(tokenized) < len(texts)  # the three completed shards were not redone
    assert dir_bytes(tmp_path / "killed") == dir_bytes(tmp_path / "whole")
    assert manifest_without_time(tmp_path / "killed") == manifest_without_time(tmp_path / "whole")
    assert resumed.num_documents == len(texts)


def test_large_vocab_uses_uint32(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(70_000)} | {"<s>": 70_000, "</s>": 70_001, "<unk>": 70_002}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    source = tmp_path / "big.jsonl"
    source.write_text(json.dumps({"text": "w69999 w5 w65536"}) + "\n")
    shard_set = build_shards([str(source)], tok, tmp_path / "shards")
    assert shard_set.dtype == np.uint32
    assert shard_set.document(0).tolist() == [70_000, 69_999, 5, 65_536, 70_001]
    assert shard_set.train.shards[0].bin_path.stat().st_size == 4 * 5


def test_damaged_shards_name_the_file(built):
    shard_set, _ = built
    out = shard_set.out_dir
    load_shards(out, verify=True)  # intact

    victim = shard_set.train.shards[1].bin_path
    data = bytearray(victim.read_bytes())
    data[5] ^= 0xFF  # same size, other content: only the checksum sees it
    victim.write_bytes(bytes(data))
    load_shards(out)
    with pytest.raises(ValueError, match=f"{victim.name}.*checksum"):
        load_shards(out, verify=True)

    victim.write_bytes(bytes(data[:-2]))  # truncated
    with pytest.raises(ValueError, match=f"{victim.name}.*truncated"):
        load_shards(out)

    missing = shard_set.val.shards[0].idx_path
    missing.unlink()
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{missing.name}.*missing"):
        load_shards(out)

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 999
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="manifest.json.*version 999"):
        load_shards(out)

    with pytest.raises(ValueError, match="no shard manifest"):
        load_shards(out / "nowhere")


def test_changed_inputs_refuse_the_same_out_dir(built, corpus, tokenizer):
    shard_set, _ = built
    paths, _ = corpus
    kwargs = dict(shard_tokens=300, val_fraction=0.25, seed=1)
    with pytest.raises(ValueError, match="seed.*another out_dir"):
        build_shards(paths, tokenizer, shard_set.out_dir, **{**kwargs, "seed": 2})
    with pytest.raises(ValueError, match="sources"):
        build_shards(paths[:1], tokenizer, shard_set.out_dir, **kwargs)
    with open(paths[0], "a") as f:
        f.write(json.dumps({"text": "one more"}) + "\n")
    with pytest.raises(ValueError, match="sources.*another out_dir"):
        build_shards(paths, tokenizer, shard_set.out_dir, **kwargs)


# -- packing ---------------------------------------------------------------------------------------


def take(loader, num_batches):
    batches = [next(loader) for _ in range(num_batches)]
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def segments(input_ids_NT, position_ids_NT):
    """Split the flattened row stream wherever a position restarts at 0."""
    ids, pos = input_ids_NT.reshape(-1).tolist(), position_ids_NT.reshape(-1).tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return [(tuple(ids[a:b]), pos[a:b]) for a, b in zip(starts, starts[1:])], pos[:starts[0]]


def test_rows_are_the_documents_concatenated_in_a_seeded_order(built):
    shard_set, _ = built
    train = split_docs(shard_set, "train")
    epoch_tokens = sum(map(len, train))
    B, T = 2, 16
    num_batches = 2 * epoch_tokens // (B * T) + 1  # more than two epochs
    batch = take(PackedLoader(shard_set, B, T, seed=5), num_batches)
    assert batch["input_ids"].shape == (num_batches * B, T)
    assert batch["input_ids"].dtype == batch["position_ids"].dtype == torch.int64
    assert torch.equal(batch["labels"], batch["input_ids"])

    pieces, head = segments(batch["input_ids"], batch["position_ids"])
    assert head == []  # the stream starts with a document
    # Positions count up inside every document, across row boundaries too.
    assert all(pos == list(range(len(pos))) for _, pos in pieces)
    assert any(p != 0 for p in batch["position_ids"][:, 0].tolist())  # some row starts mid-document
    docs = [ids for ids, _ in pieces]
    n = len(train)
    first, second = docs[:n], docs[n:2 * n]
    # Each epoch holds every train document exactly once.
    assert sorted(first) == sorted(train) and sorted(second) == sorted(train)
    assert sum(map(len, first)) == epoch_tokens
    assert first != train and second != first  # shuffled, and reshuffled for the next epoch

    again = take(PackedLoader(shard_set, B, T, seed=5), num_batches)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    other = take(PackedLoader(shard_set, B, T, seed=6), num_batches)
    assert not torch.equal(other["input_ids"], batch["input_ids"])


def tiny_model():
    from model import ModelConfig, Transformer

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=272, hidden_size=32, num_hidden_layers=1,
                         first_k_dense_replace=1, num_attention_heads=2, kv_lora_rank=16,
                         q_lora_rank=None, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                         intermediate_size=48, num_nextn_predict_layers=0)
    return Transformer(config).eval()


@torch.no_grad()
def test_attention_never_crosses_documents(built):
    shard_set, _ = built
    model = tiny_model()
    batch = next(PackedLoader(shard_set, 2, 48, seed=0))
    ids, pos = batch["input_ids"], batch["position_ids"]
    packed = model(input_ids=ids, position_ids=pos).logits  # (B, T, V)
    checked = 0
    for b in range(ids.shape[0]):
        starts = [0] + [t for t in range(1, ids.shape[1]) if pos[b, t] == 0] + [ids.shape[1]]
        for s, e in zip(starts, starts[1:]):  # the first may be a document's tail, positions > 0
            alone = model(input_ids=ids[b:b + 1, s:e], position_ids=pos[b:b + 1, s:e]).logits
            torch.testing.assert_close(packed[b, s:e], alone[0], rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked > 4
    # Not vacuous: without the document structure the same rows give other logits.
    plain = model(input_ids=ids).logits
    assert not torch.allclose(plain, packed, atol=1e-3)


def test_state_dict_resumes_bit_identically(built):
    shard_set, _ = built
    loader = PackedLoader(shard_set, 3, 16, seed=2)
    take(loader, 7)
    state = json.loads(json.dumps(loader.state_dict()))  # plain data
    num_batches = shard_set.train.num_tokens // (3 * 16) + 1  # runs past an epoch boundary
    expected = take(loader, num_batches)
    assert state["rows_emitted"] == 21 and state["epoch"] == 0

    restored = PackedLoader(shard_set, 3, 16, seed=2)
    restored.load_state_dict(state)
    resumed = take(restored, num_batches)
    for key in expected:
        assert torch.equal(resumed[key], expected[key])
    assert restored.state_dict() == loader.state_dict()
    assert loader.state_dict()["epoch"] >= 1

    # The cursor names the document: the next row starts `document_offset` tokens into it.
    order = np.random.default_rng((2, 0)).permutation(shard_set.train.num_documents)
    doc = shard_set.document(int(order[state["document_cursor"]]))
    start = doc[state["document_offset"]:][:16]
    assert expected["input_ids"][0, :len(start)].tolist() == start.tolist()

    with pytest.raises(ValueError, match="seed"):
        PackedLoader(shard_set, 3, 16, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len"):
        PackedLoader(shard_set, 3, 8, seed=2).load_state_dict(state)


def test_ranks_together_see_the_single_process_stream(built):
    shard_set, _ = built
    B, T, world, steps = 2, 16, 2, 9
    single = take(PackedLoader(shard_set, B * world, T, seed=4), steps)
    ranks = [PackedLoader(shard_set, B, T, seed=4, rank=r, world_size=world) for r in range(world)]
    per_rank = [take(loader, steps) for loader in ranks]
    for key in single:
        # Rows of rank 0 and rank 1 interleaved = the single process's rows.
        interleaved = torch.stack([p[key] for p in per_rank], dim=1).reshape(-1, T)
        assert torch.equal(interleaved, single[key])
    assert ranks[0].state_dict() == ranks[1].state_dict()
    assert ranks[0].state_dict()["rows_emitted"] == steps * B * world


def test_val_split_is_held_out_and_loops(built):
    shard_set, _ = built
    train, val = split_docs(shard_set, "train"), split_docs(shard_set, "val")
    assert not set(train) & set(val)
    val_tokens = sum(map(len, val))
    T = 8
    loader = PackedLoader(shard_set, 2, T, split="val", seed=123)
    rows_per_epoch = -(-val_tokens // T)
    batch = take(loader, rows_per_epoch)  # about two passes
    pieces, _ = segments(batch["input_ids"], batch["position_ids"])
    docs = [ids for ids, _ in pieces]
    assert docs[:len(val)] == val  # stored order, independent of the seed
    assert docs[len(val):2 * len(val) - 1] == val[:len(val) - 1]  # and it loops
    other_seed = take(PackedLoader(shard_set, 2, T, split="val", seed=0), rows_per_epoch)
    assert torch.equal(other_seed["input_ids"], batch["input_ids"])


def test_too_small_corpus_says_what_is_needed(tmp_path, tokenizer):
    paths, _ = write_corpus(tmp_path, num_docs=(3,), max_len=5)
    shard_set = build_shards(paths, tokenizer, tmp_path / "small")
    n = shard_set.train.num_tokens
    with pytest.raises(ValueError, match=rf"small.*holds {n} tokens.*needs {4 * 8 * 2}"):
        PackedLoader(shard_set, 4, 8, world_size=2)
    PackedLoader(shard_set, 1, n)  # exactly one batch is enough
    with pytest.raises(ValueError, match="no validation documents"):
        PackedLoader(shard_set, 1, 4, split="val")

    with_val = build_shards(paths * 4, tokenizer, tmp_path / "with_val", val_fraction=0.5, seed=3)
    v = with_val.val.num_tokens
    assert v > 0
    with pytest.raises(ValueError, match=rf"val split holds {v} tokens.*needs {v + 1}"):
        PackedLoader(with_val, 1, v + 1, split="val")
