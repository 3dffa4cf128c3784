"""Our Transformer inside the HF ecosystem: transformers' generate (with its cache) and PEFT."""

import torch
from peft import LoraConfig, get_peft_model

from model import ModelConfig, Transformer

TINY = dict(vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            n_routed_experts=8, n_group=2, topk_group=1, num_experts_per_tok=2,
            moe_intermediate_size=32, intermediate_size=96, kv_lora_rank=32, q_lora_rank=48,
            qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, num_nextn_predict_layers=1)


def reference_greedy(model, prompt, steps):
    """Full forward over the whole sequence each step: no cache involved."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_transformers_generate_with_cache_and_left_padding():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**TINY)).eval()
    prompts = [[5, 17, 3, 9, 44, 2], [7, 7, 1]]
    ids = torch.tensor([prompts[0], [0, 0, 0] + prompts[1]])
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1]])
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                         pad_token_id=0)
    for row, prompt in enumerate(prompts):
        assert out[row, 6:].tolist() == reference_greedy(model, prompt, 6)


def test_peft_lora_trains_only_adapters():
    torch.manual_seed(0)
    model = get_peft_model(Transformer(ModelConfig(**TINY)),
                           LoraConfig(r=4, target_modules=["q_b_proj", "kv_b_proj", "o_proj"]))
    ids = torch.randint(0, 97, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
