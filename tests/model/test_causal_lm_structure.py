"""Our Transformer as the standard causal LM that TRL, PEFT and accelerate take with their
default configs (issue 12): backbone forward, activation checkpointing, the kwargs trainers pass,
and real SFTTrainer / GRPOTrainer steps.

References: transformers' DeepseekV3Model for the backbone output; the same model without
checkpointing for the gradients; a hand-computed token sum for `num_items_in_batch`.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from model.transformer import IGNORE_INDEX


def test_backbone_matches_transformers_deepseek_v3_model(tmp_path, make_model):
    ours = make_model(seed=3)
    ours.save_pretrained(tmp_path)
    hf = DeepseekV3ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        expected = hf.model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
    assert ours.base_model is ours.model
    valid = mask.bool()
    assert (got.last_hidden_state - expected)[valid].abs().max() < 1e-4
    # The head on top of the backbone is the model's own forward.
    logits = ours(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours.get_output_embeddings()(got.last_hidden_state), logits)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(make_model, use_reentrant):
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(1))
    grads = []
    for checkpointing in (False, True):
        model = make_model(seed=4).train()
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": use_reentrant})
            assert model.is_gradient_checkpointing
            if use_reentrant:  # HF does this for PEFT; here all params train anyway
                model.enable_input_require_grads()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-4, rtol=1e-3,
                                   msg=lambda m: f"{name}: {m}")


def test_num_items_in_batch_turns_the_loss_into_a_token_sum(make_model):
    model = make_model(seed=5, num_nextn_predict_layers=0)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    mean = model(input_ids=ids, labels=labels).lm_loss
    summed = model(input_ids=ids, labels=labels, num_items_in_batch=100).lm_loss
    targets = int((labels[:, 1:] != IGNORE_INDEX).sum())  # 2 rows x 4 next-token targets
    torch.testing.assert_close(summed, mean * targets / 100)


def test_trainer_kwargs_are_accepted_and_unknown_ones_named(make_model):
    model = make_model(seed=6)
    ids = torch.randint(0, 97, (1, 8))
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    cu = torch.tensor([0, 4, 8], dtype=torch.int32)
    out = model.model(input_ids=ids, position_ids=pos, use_cache=False, cu_seq_lens_q=cu,
                      cu_seq_lens_k=cu, max_length_q=4, max_length_k=4, seq_idx=None)
    assert out.last_hidden_state.shape == (1, 8, 64)
    assert model(input_ids=ids, logits_to_keep=1, use_cache=False).logits.shape == (1, 1, 97)
    with pytest.raises(TypeError, match="pixel_values"):
        model.model(input_ids=ids, pixel_values=ids)


# -- real trainers ---------------------------------------------------------------------------

def _tiny_lm():
    """A byte-tokenizer-sized tiny model and the tokenizer with the think-aware template."""
    from model import ModelConfig, Transformer
    from pretrain.tokenizer import build_byte_tokenizer

    tok = build_byte_tokenizer()
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         moe_intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         n_routed_experts=4, n_group=2, topk_group=1, num_experts_per_tok=2,
                         kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=8,
                         qk_rope_head_dim=8, v_head_dim=8, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    return Transformer(config), tok


def _conversations(n):
    return [{"messages": [{"role": "user", "content": f"{i}+1?"},
                          {"role": "assistant", "content": f"<think>\n{i}+1={i + 1}\n</think>\n\n{i + 1}"}]}
            for i in range(n)]


def test_sft_trainer_with_default_config(tmp_path):
    """Default SFTConfig (gradient checkpointing on, fused LM head) except sizes, hub and device."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = _tiny_lm()
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2,
                     logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                     push_to_hub=False)
    assert args.gradient_checkpointing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(_conversations(8)),
                             processing_class=tok)
        trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert model.is_gradient_checkpointing


def test_grpo_trainer_step_with_default_config(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tok = _tiny_lm()
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": f"{i}+1?"}]}
                                 for i in range(4)])

    def byte_sum(completions, **kwargs):  # any reward that differs within a group
        return [float(sum(c[0]["content"].encode()) % 7) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=8, report_to="none", use_cpu=True,
                      save_strategy="no", logging_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=byte_sum, args=args,
                              train_dataset=prompts, processing_class=tok)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert logged and torch.isfinite(torch.tensor(logged[0]["loss"]))
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
