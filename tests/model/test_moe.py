"""DeepSeekMoE layer against a float64 loop over tokens and experts written from spec §3.2-3.4."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.moe import MoE, Router


def _select(choice_E: list[float], num_groups: int, top_groups: int, top_k: int) -> list[int]:
    """Spec §3.2 steps 4-5 for one token, in plain Python: group score = sum of the top-2 biased
    scores in the group; experts outside the top `top_groups` groups are -inf; then top-k."""
    E = len(choice_E)
    m = E // num_groups
    group_score = [sum(sorted(choice_E[g * m:(g + 1) * m])[-2:]) for g in range(num_groups)]
    kept = sorted(range(num_groups), key=lambda g: -group_score[g])[:top_groups]
    masked = [choice_E[e] if e // m in kept else -math.inf for e in range(E)]
    return sorted(range(E), key=lambda e: -masked[e])[:top_k]


def _route64(x, weight, bias, cfg):
    """(scores (N,E) float64 with autograd, per-token expert lists) from spec §3.2 steps 1-5."""
    scores = torch.sigmoid(x.double() @ weight.double().T)
    choice = (scores.detach() + bias.double()).tolist()
    n_group = cfg.n_group or 1
    picks = [_select(row, n_group, cfg.topk_group or 1, cfg.num_experts_per_tok) for row in choice]
    return scores, picks


def _reference_moe(moe: MoE, x, cfg, params=None):
    """float64 MoE output: shared expert (weight 1) + sum_k w_k expert_k(x) (spec §3.1-3.2)."""
    p = params or {n: t.double() for n, t in moe.named_parameters()}
    bias = moe.gate.e_score_correction_bias
    scores, picks = _route64(x, p["gate.weight"], bias, cfg)
    xd = x.double()
    F_ = cfg.moe_intermediate_size
    rows = []
    for t, experts in enumerate(picks):
        w = torch.stack([scores[t, e] for e in experts])  # unbiased scores of the chosen experts
        w = w / w.sum() * cfg.routed_scaling_factor
        y = 0.0
        for w_k, e in zip(w, experts):
            gate_up = p["experts.gate_up_proj"][e] @ xd[t]
            h = F.silu(gate_up[:F_]) * gate_up[F_:]
            y = y + w_k * (p["experts.down_proj"][e] @ h)
        shared = p["shared_experts.down_proj.weight"] @ (
            F.silu(p["shared_experts.gate_proj.weight"] @ xd[t])
            * (p["shared_experts.up_proj.weight"] @ xd[t]))
        rows.append(y + shared)
    return torch.stack(rows), picks


@pytest.fixture
def moe_layer(make_config, randomize):
    def build(seed=0, **overrides):
        cfg = make_config(**overrides)
        torch.manual_seed(seed)
        return randomize(MoE(cfg), seed), cfg
    return build


def _use_kernel(experts, grouped: bool) -> None:
    """Force one expert GEMM path (`kernel` attribute; older code had `use_grouped_mm`)."""
    if hasattr(experts, "kernel"):
        experts.kernel = "grouped_mm" if grouped else "bmm"
    else:
        experts.use_grouped_mm = grouped


def _spy(monkeypatch, experts, name):
    calls = []
    original = getattr(experts, name)

    def wrapped(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(experts, name, wrapped)
    return calls


# (1, 2): four (token, expert) pairs over eight experts, so some experts receive no tokens.
@pytest.mark.parametrize("shape", [(3, 10), (1, 2)], ids=["30_tokens", "2_tokens"])
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped_mm", "padded_bmm"])
def test_moe_matches_float64_loop_over_experts(monkeypatch, moe_layer, grouped, shape):
    moe, cfg = moe_layer(seed=1)
    _use_kernel(moe.experts, grouped)
    calls = _spy(monkeypatch, moe.experts, "_grouped" if grouped else "_padded_bmm")
    x = torch.randn(*shape, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = moe(x)
        _, idx = moe.gate(x.view(-1, cfg.hidden_size))
    assert calls, "the requested expert path was not taken"
    ref, picks = _reference_moe(moe, x.view(-1, cfg.hidden_size), cfg)
    assert [sorted(r) for r in idx.tolist()] == [sorted(r) for r in picks]
    torch.testing.assert_close(out.view(-1, cfg.hidden_size).double(), ref, atol=1e-5, rtol=1e-5)


def test_grouped_and_padded_paths_have_equal_gradients(monkeypatch, moe_layer):
    moe, cfg = moe_layer(seed=3)
    x = torch.randn(2, 12, cfg.hidden_size, generator=torch.Generator().manual_seed(4))
    probe = torch.randn(2, 12, cfg.hidden_size, generator=torch.Generator().manual_seed(5))

    def grads(grouped):
        moe.zero_grad()
        _use_kernel(moe.experts, grouped)
        calls = _spy(monkeypatch, moe.experts, "_grouped" if grouped else "_padded_bmm")
        xg = x.clone().requires_grad_()
        (moe(xg) * probe).sum().backward()
        monkeypatch.undo()
        assert calls
        return {"x": xg.grad, **{n: p.grad.clone() for n, p in moe.named_parameters()}}

    g_grouped, g_padded = grads(True), grads(False)

    # The float64 reference's autograd gradients (through the unbiased gate scores too).
    params = {n: p.detach().double().requires_grad_() for n, p in moe.named_parameters()}
    x64 = x.double().view(-1, cfg.hidden_size).requires_grad_()
    ref, _ = _reference_moe(moe, x64, cfg, params)
    (ref * probe.double().view(-1, cfg.hidden_size)).sum().backward()
    g_ref = {"x": x64.grad.view_as(x), **{n: p.grad for n, p in params.items()}}

    assert g_ref["gate.weight"].abs().max() > 0  # routing weights do carry gradient
    for name, expected in g_ref.items():
        torch.testing.assert_close(g_grouped[name], g_padded[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g_grouped[name].double(), expected, atol=1e-4, rtol=1e-4)


def _router(make_config, randomize, seed=0, weight_std=None, **overrides):
    cfg = make_config(**overrides)
    router = randomize(Router(cfg), seed)
    if weight_std is not None:
        with torch.no_grad():
            router.weight.normal_(0.0, weight_std, generator=torch.Generator().manual_seed(seed))
    return router.eval(), cfg


@pytest.mark.parametrize("bias, allowed", [
    # Expert 0 has by far the highest biased score, but its group (sum of top-2) loses.
    ([1.0, -1.0, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1], {2, 3, 4, 5}),
    # All biased scores negative: filling masked experts with 0 instead of -inf would pick 4-7.
    ([-1.5, -1.5, -1.6, -1.6, -3.0, -3.0, -3.0, -3.0], {0, 1, 2, 3}),
], ids=["tempting_expert", "negative_scores"])
def test_group_limited_routing_stays_inside_top_groups(make_config, randomize, bias, allowed):
    router, cfg = _router(make_config, randomize, weight_std=0.01)
    router.e_score_correction_bias.copy_(torch.tensor(bias))
    x = torch.randn(64, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        weights, idx = router(x)
    assert set(idx.flatten().tolist()) <= allowed
    torch.testing.assert_close(weights.sum(-1), torch.full((64,), cfg.routed_scaling_factor))

    if bias[0] > 0:
        # Without group limiting the same bias picks expert 0 for every token: the constraint,
        # not the bias alone, is what kept it out.
        flat, _ = _router(make_config, randomize, weight_std=0.01, n_group=1, topk_group=1)
        flat.weight.data.copy_(router.weight)
        flat.e_score_correction_bias.copy_(router.e_score_correction_bias)
        with torch.no_grad():
            assert (flat(x)[1] == 0).any(-1).all()


def test_bias_changes_selection_but_weights_come_from_unbiased_scores(make_config, randomize):
    router, cfg = _router(make_config, randomize, seed=2)
    x = torch.randn(64, cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    scores64 = torch.sigmoid(x.double() @ router.weight.double().T)
    with torch.no_grad():
        router.e_score_correction_bias.zero_()
        w0, i0 = router(x)
        router.e_score_correction_bias.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(4))
        w1, i1 = router(x)
    sets0 = [frozenset(r) for r in i0.tolist()]
    sets1 = [frozenset(r) for r in i1.tolist()]
    assert sum(a != b for a, b in zip(sets0, sets1)) >= 5  # the bias steers selection

    for weights, idx in ((w0, i0), (w1, i1)):
        chosen = scores64.gather(1, idx)
        expected = chosen / chosen.sum(-1, keepdim=True) * cfg.routed_scaling_factor
        torch.testing.assert_close(weights.double(), expected, atol=1e-6, rtol=1e-6)
    for t in range(64):  # same selection -> same weight per expert, whatever the bias
        if sets0[t] == sets1[t]:
            by0 = dict(zip(i0[t].tolist(), w0[t].tolist()))
            by1 = dict(zip(i1[t].tolist(), w1[t].tolist()))
            assert by0 == pytest.approx(by1, abs=1e-7)


def test_load_counts_accumulate_in_training_only(make_config, randomize):
    router, cfg = _router(make_config, randomize, seed=5)
    gen = torch.Generator().manual_seed(6)
    batches = [torch.randn(24, cfg.hidden_size, generator=gen),
               torch.randn(40, cfg.hidden_size, generator=gen)]
    expected = torch.zeros(cfg.n_routed_experts)
    router.train()
    router.load_counts.zero_()
    with torch.no_grad():
        for x in batches:
            router(x)
            _, picks = _route64(x, router.weight, router.e_score_correction_bias, cfg)
            expected += torch.bincount(torch.tensor(picks).flatten(), minlength=cfg.n_routed_experts)
    assert torch.equal(router.load_counts, expected)
    assert router.load_counts.sum() == 64 * cfg.num_experts_per_tok

    router.eval()
    with torch.no_grad():
        router(batches[0])
    assert torch.equal(router.load_counts, expected)


def test_sequence_balance_loss_matches_formula(make_config, randomize):
    alpha, B, T = 0.01, 3, 10
    router, cfg = _router(make_config, randomize, seed=7, seq_aux_loss_alpha=alpha)
    E, K = cfg.n_routed_experts, cfg.num_experts_per_tok
    x = torch.randn(B * T, cfg.hidden_size, generator=torch.Generator().manual_seed(8))
    router.train()
    xg = x.clone().requires_grad_()
    router(xg, batch_size=B)
    loss = router.balance_loss
    loss.backward()

    # Spec §3.4: f_i = E/(K T) * #tokens picking i (actual, bias-steered selection);
    # P_i = mean_t s_it / sum_j s_jt; L = alpha * sum_i f_i P_i, averaged over sequences.
    w64 = router.weight.detach().double().requires_grad_()
    x64 = x.double().requires_grad_()
    scores, picks = _route64(x64, w64, router.e_score_correction_bias, cfg)
    total = 0.0
    for b in range(B):
        counts = [0] * E
        for t in range(b * T, (b + 1) * T):
            for e in picks[t]:
                counts[e] += 1
        f = torch.tensor([E / (K * T) * c for c in counts], dtype=torch.float64)  # a constant
        P = (scores[b * T:(b + 1) * T] / scores[b * T:(b + 1) * T].sum(-1, keepdim=True)).mean(0)
        total = total + alpha * (f * P).sum()
    expected = total / B
    expected.backward()

    torch.testing.assert_close(loss.double(), expected.detach(), atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(router.weight.grad.double(), w64.grad, atol=1e-8, rtol=1e-5)
    torch.testing.assert_close(xg.grad.double(), x64.grad, atol=1e-8, rtol=1e-5)
