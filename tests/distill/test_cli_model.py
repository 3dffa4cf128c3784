"""`distillery model init | info | generate` end to end on a tiny config."""

import json

import pytest
import torch
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

from distill.cli import main
from model import Transformer
from model.accounting import account

TINY = """\
seed: 3
model:
  vocab_size: 272
  hidden_size: 64
  num_hidden_layers: 2
  first_k_dense_replace: 1
  intermediate_size: 96
  num_attention_heads: 2
  q_lora_rank: 32
  kv_lora_rank: 32
  qk_nope_head_dim: 16
  qk_rope_head_dim: 8
  v_head_dim: 16
  n_routed_experts: 8
  moe_intermediate_size: 32
  num_experts_per_tok: 2
  n_group: 2
  topk_group: 1
  num_nextn_predict_layers: 1
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(TINY)
    assert main(["model", "init", "--config", str(root / "tiny.yaml"), "--out", str(root / "ckpt")]) == 0
    return root


def test_init_writes_a_checkpoint_transformers_loads(checkpoint):
    path = checkpoint / "ckpt"
    ours = Transformer.from_pretrained(path)
    theirs = DeepseekV3ForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert ours.config.eos_token_id == tokenizer.eos_token_id
    ids = torch.tensor([tokenizer.encode("12+7=")])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-4, rtol=0)
    assert (path / "init_config.yaml").is_file()


def test_init_is_seeded(checkpoint, tmp_path):
    assert main(["model", "init", "--config", str(checkpoint / "tiny.yaml"), "--out", str(tmp_path)]) == 0
    a, b = Transformer.from_pretrained(checkpoint / "ckpt"), Transformer.from_pretrained(tmp_path)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_info_json_matches_accounting(checkpoint, capsys):
    assert main(["model", "info", str(checkpoint / "ckpt"), "--json", "--seq-len", "128"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = Transformer.from_pretrained(checkpoint / "ckpt")
    assert info["total_params"] == sum(p.numel() for p in model.parameters())
    assert info["flops_per_token"] == account(model.config, 128).flops_per_token
    assert info["layers"] == ["dense", "moe", "mtp"]


@pytest.mark.parametrize("mtp", [False, True])
def test_generate_prints_text_and_rate(checkpoint, capsys, mtp):
    argv = ["model", "generate", str(checkpoint / "ckpt"), "--prompt", "1+1=", "--max-new-tokens", "8",
            "--temperature", "0"] + (["--mtp"] if mtp else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tok/s" in out and ("MTP acceptance" in out) == mtp


def test_bad_inputs_give_clean_errors(checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("n_group: 2", "n_group: 3"))
    assert main(["model", "init", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "n_group" in capsys.readouterr().err
    assert main(["model", "info", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    small = tmp_path / "small.yaml"
    small.write_text(TINY.replace("vocab_size: 272", "vocab_size: 100"))
    assert main(["model", "init", "--config", str(small), "--out", str(tmp_path / "y")]) == 2
    assert "vocab_size" in capsys.readouterr().err
