"""distill.sft training runs on a tiny model (CPU, seconds each): the model learns to stop, the
final directory loads in transformers, packing keeps documents apart, resume continues the same
loss curve, LoRA trains only adapters and merges back equal, MTP stays on, bad input stops first.

References: transformers' DeepseekV3ForCausalLM (final checkpoint), separate per-document
forwards (packing), an uninterrupted run (resume), PEFT's unmerged forward (LoRA merge).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

from distill.sft import LengthConfig, LoraSettings, SFTRecipe, SFTSource, StyleConfig, run_sft
from model import ModelConfig, Transformer
from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer

ANSWER = "<think>\nok\n</think>\n\nok"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny random checkpoint with the byte tokenizer saved beside it."""
    out = tmp_path_factory.mktemp("base")
    tok = build_byte_tokenizer()
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         moe_intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         n_routed_experts=4, n_group=2, topk_group=1, num_experts_per_tok=2,
                         kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=8,
                         qk_rope_head_dim=8, v_head_dim=8, max_position_embeddings=256,
                         num_nextn_predict_layers=1, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Transformer(config).save_pretrained(out)
    save_tokenizer(tok, out)
    return out


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"say ok {i}"},
                          {"role": "assistant", "content": ANSWER}]} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(base_dir, data_file, out, **trl):
    trl = {"max_steps": 4, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
           "save_strategy": "no", **trl}
    return SFTRecipe(model=str(base_dir), data=[SFTSource(str(data_file))], out_dir=str(out),
                     trl=trl)


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "loss" in r]


def test_short_sft_learns_to_stop_and_loads_in_transformers(base_dir, data_file, tmp_path):
    from transformers import AutoTokenizer, DeepseekV3ForCausalLM

    cfg = _recipe(base_dir, data_file, tmp_path / "run", max_steps=40, learning_rate=1e-2,
                  per_device_train_batch_size=4, warmup_steps=0)
    final = run_sft(cfg)
    assert final == tmp_path / "run" / "final"
    for name in ("config.yaml", "sft_config.json", "data_stats.json", "metrics.jsonl"):
        assert (tmp_path / "run" / name).is_file()
    losses = _losses(tmp_path / "run")
    assert len(losses) == 40 and losses[-1] < 0.2 * losses[0]

    ours = Transformer.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    prompt = tok.apply_chat_template([{"role": "user", "content": "say ok 3"}],
                                     add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)["input_ids"]
    out = ours.generate(prompt, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, prompt.shape[1]:].tolist()
    assert tok.eos_token_id in new, tok.decode(new)  # the model stops
    assert tok.decode(new[:new.index(tok.eos_token_id)]) == ANSWER

    hf = DeepseekV3ForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(prompt).logits, ours(prompt).logits, atol=1e-4, rtol=1e-4)


def test_packing_keeps_documents_apart(base_dir, data_file, tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer

    from distill.sft.data import load_sources
    from distill.sft.style import build_conversations
    from distill.sft.trl_args import build_sft_config

    tok = build_byte_tokenizer()
    rows, _ = build_conversations(load_sources([SFTSource(str(data_file))], 0), StyleConfig(),
                                  LengthConfig(), tok)
    args = build_sft_config({"packing": True, "max_length": 128, "per_device_train_batch_size": 1},
                            str(tmp_path), seed=0, cpu=True)
    model = Transformer.from_pretrained(base_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # padding-free: documents are told apart by positions
    ids, pos = batch["input_ids"], batch["position_ids"]
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [pos.shape[1]]
    assert len(starts) > 2  # at least two documents in the row
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos).logits[0]
        for a, b in zip(starts[:-1], starts[1:]):
            alone = model(input_ids=ids[:, a:b]).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=1e-5)


def test_resume_continues_the_same_loss_curve(base_dir, data_file, tmp_path):
    full = tmp_path / "full"
    run_sft(_recipe(base_dir, data_file, full, save_strategy="steps", save_steps=2))
    expected = _losses(full)
    # An interrupted run: its checkpoint-2 and the metrics rows up to step 2, then --resume.
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(full / "checkpoints" / "checkpoint-2", cut / "checkpoints" / "checkpoint-2")
    rows = (full / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(rows[:2]) + "\n" + '{"step": 3, "loss": 9')
    cfg = _recipe(base_dir, data_file, cut, save_strategy="steps", save_steps=2)
    cfg.resume = True
    run_sft(cfg)
    assert _losses(cut) == pytest.approx(expected, rel=1e-5)


def test_resume_without_checkpoint_is_an_error(base_dir, data_file, tmp_path):
    cfg = _recipe(base_dir, data_file, tmp_path / "run")
    cfg.resume = True
    with pytest.raises(ValueError, match="no checkpoint-N"):
        run_sft(cfg)


def test_lora_trains_only_adapters_and_merges_back_equal(base_dir, data_file, tmp_path):
    from peft import PeftModel

    cfg = _recipe(base_dir, data_file, tmp_path / "run", learning_rate=1e-2)
    cfg.lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, merge=True)
    final = run_sft(cfg)
    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())

    base = Transformer.from_pretrained(base_dir)
    unmerged = PeftModel.from_pretrained(Transformer.from_pretrained(base_dir), adapter).eval()
    merged = Transformer.from_pretrained(final)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, unmerged(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-4)
    # Frozen parts did not move: the embedding and every non-adapted weight equal the base's.
    for name, p in base.state_dict().items():
        if "self_attn" not in name and "mlp" not in name and "eh_proj" not in name:
            torch.testing.assert_close(merged.state_dict()[name], p)


def test_mtp_loss_stays_on_during_sft(base_dir, data_file, tmp_path):
    cfg = _recipe(base_dir, data_file, tmp_path / "run", max_steps=2)
    cfg.mtp_loss_weight = 0.3
    final = run_sft(cfg)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "mtp_loss" in r]
    assert logged and all(r["mtp_loss"] > 0 for r in logged)
    for r in logged:  # the trained loss: main + weight * MTP (+ the tiny balance loss)
        expected = r["lm_loss"] + 0.3 * r["mtp_loss"] + r.get("balance_loss", 0.0)
        assert r["loss"] == pytest.approx(expected, rel=1e-3)
    before, after = load_file(base_dir / "model.safetensors"), load_file(final / "model.safetensors")
    assert not torch.equal(before["model.layers.2.eh_proj.weight"], after["model.layers.2.eh_proj.weight"])


def test_bad_input_stops_before_training(base_dir, data_file, tmp_path):
    bad_tok = tmp_path / "tok"
    tok = build_byte_tokenizer()
    tok.pad_token = tok.eos_token
    save_tokenizer(tok, bad_tok)
    cfg = _recipe(base_dir, data_file, tmp_path / "run")
    cfg.tokenizer = str(bad_tok)
    with pytest.raises(ValueError, match="pad token == EOS"):
        run_sft(cfg)
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    cfg = _recipe(base_dir, bad_data, tmp_path / "run")
    with pytest.raises(ValueError, match="missing column 'messages'"):
        run_sft(cfg)
    assert not (tmp_path / "run").exists()  # nothing was trained or written
