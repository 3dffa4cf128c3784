"""Auxiliary-loss-free balancing: the update rule of spec §3.3 and its effect on MaxVio."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from model import ModelConfig, Transformer
from model.balance import max_violation, routers, update_expert_bias
from model.moe import MoE


def tiny_moe_config(**kw):
    base = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, first_k_dense_replace=1,
                num_attention_heads=2, kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=8,
                qk_rope_head_dim=4, v_head_dim=8, n_routed_experts=8, n_group=2, topk_group=2,
                num_experts_per_tok=2, moe_intermediate_size=16, intermediate_size=48,
                num_nextn_predict_layers=0)
    base.update(kw)
    return ModelConfig(**base)


def test_update_rule_matches_formula():
    model = Transformer(tiny_moe_config(num_nextn_predict_layers=1)).train()
    loads = [torch.tensor([5., 1., 3., 3., 0., 4., 3., 5.]), torch.tensor([3.] * 8)]
    for router, load in zip(routers(model), loads):
        router.e_score_correction_bias.fill_(0.25)
        router.load_counts.copy_(load)
    stats = update_expert_bias(model, gamma=0.01)
    # Hand computation: mean of the first load is 3; sign(3 - c) * 0.01 + 0.25.
    expected = 0.25 + 0.01 * torch.tensor([-1., 1., 0., 0., 1., -1., 0., -1.])
    torch.testing.assert_close(routers(model)[0].e_score_correction_bias, expected)
    torch.testing.assert_close(routers(model)[1].e_score_correction_bias, torch.full((8,), 0.25))
    assert stats.max_violation == pytest.approx([(5 - 3) / 3, 0.0])
    assert all(r.load_counts.sum() == 0 for r in routers(model))  # counts reset for the next step
    assert all(r.e_score_correction_bias.dtype == torch.float32 for r in routers(model))


def test_max_violation_over_expert_parallel_ranks():
    model = Transformer(tiny_moe_config()).train()
    router = routers(model)[0]
    router.load_counts.copy_(torch.tensor([5., 1., 3., 3., 0., 4., 3., 5.]))
    stats = update_expert_bias(model, gamma=0.0, ep_size=4)
    # Rank loads (two experts each): 6, 6, 4, 8; mean 6, so (8 - 6) / 6.
    assert stats.ep_max_violation == pytest.approx([2 / 6])
    assert update_expert_bias(model, gamma=0.0) is None  # counts were reset


def test_max_violation_definition():
    load = torch.tensor([[10., 10., 10., 10.], [40., 0., 0., 0.]])
    torch.testing.assert_close(max_violation(load), torch.tensor([0.0, 3.0]))


def run_routing(gamma, steps=200):
    """A router whose affinities favour experts 0 and 1 for every token (a constant input
    feature); fresh tokens each step; only the bias is updated, by the rule of spec §3.3."""
    torch.manual_seed(0)
    config = tiny_moe_config()
    layer = MoE(config).train()
    torch.nn.init.normal_(layer.gate.weight, std=0.3)
    layer.gate.weight.data[:2, 0] += 1.5
    gen = torch.Generator().manual_seed(1)
    history = []
    for _ in range(steps):
        x = torch.randn(512, config.hidden_size, generator=gen)
        x[:, 0] = 1.0
        with torch.no_grad():
            layer.gate(x)
        load = layer.gate.load_counts.clone()
        history.append(max_violation(load).item())
        layer.gate.e_score_correction_bias += gamma * torch.sign(load.mean() - load)
        layer.gate.load_counts.zero_()
    return history


def test_bias_update_moves_load_toward_balance():
    balanced, frozen = run_routing(gamma=1e-2), run_routing(gamma=0.0)
    mean = lambda h: sum(h[-50:]) / 50  # noqa: E731
    assert balanced[0] == frozen[0] > 0.8  # skewed at the start (MaxVio ~1)
    assert mean(frozen) > 0.8  # without updates it stays skewed
    assert mean(balanced) < 0.3 * mean(frozen)


def test_bias_is_not_trained_by_gradient():
    model = Transformer(tiny_moe_config()).train()
    ids = torch.randint(0, 64, (2, 12))
    model(ids, labels=ids).loss.backward()
    names = {n for n, _ in model.named_parameters()}
    assert not any("e_score_correction_bias" in n for n in names)
    assert all(r.e_score_correction_bias.grad is None for r in routers(model))


def _distributed_worker(rank, world, port, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config())
    router = routers(model)[0]
    # Rank-local loads disagree; only the sum over ranks is balanced except experts 0 and 7.
    local = [torch.tensor([4., 1., 2., 2., 2., 2., 3., 0.]), torch.tensor([2., 3., 2., 2., 2., 2., 1., 6.])]
    router.load_counts.copy_(local[rank])
    update_expert_bias(model, gamma=0.5)
    gathered = [torch.zeros(8) for _ in range(world)]
    dist.all_gather(gathered, router.e_score_correction_bias)
    if rank == 0:
        torch.save(gathered, result_path)
    dist.destroy_process_group()


def test_update_uses_loads_all_reduced_over_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = str(tmp_path / "bias.pt")
    mp.spawn(_distributed_worker, args=(2, port, path), nprocs=2, join=True)
    bias_rank0, bias_rank1 = torch.load(path)
    total = torch.tensor([6., 4., 4., 4., 4., 4., 4., 6.])  # mean 4.5
    expected = 0.5 * torch.sign(total.mean() - total)
    torch.testing.assert_close(bias_rank0, expected)
    torch.testing.assert_close(bias_rank1, expected)


def test_padding_does_not_count_as_load_or_balance():
    """A left-padded row must route and count exactly like the same tokens unpadded."""
    torch.manual_seed(7)
    model = Transformer(tiny_moe_config(num_nextn_predict_layers=0)).train()
    ids = torch.randint(0, 64, (1, 10))
    padded = torch.cat([torch.zeros(1, 6, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 6, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    router = routers(model)[0]
    out_plain = model(ids)
    plain_counts, plain_loss = router.load_counts.clone(), router.balance_loss.detach()
    router.load_counts.zero_()
    out_padded = model(padded, attention_mask=mask, position_ids=positions)
    torch.testing.assert_close(out_padded.logits[:, 6:], out_plain.logits, atol=1e-5, rtol=0)
    assert torch.equal(router.load_counts, plain_counts)  # the 6 pads were not counted
    assert plain_counts.sum() == 10 * 2
    torch.testing.assert_close(router.balance_loss.detach(), plain_loss, atol=1e-7, rtol=1e-5)
