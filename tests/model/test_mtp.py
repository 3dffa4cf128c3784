"""Multi-token prediction (spec §4) and packed documents, against losses recomputed by hand.

The MTP module is run manually from its weights: x = eh_proj([enorm(emb(t_{i+1})) ; hnorm(h_i)]),
one decoder layer, shared_head.norm, the shared lm_head; depth 1 at position i predicts
token i+2 (spec §4.2). Packed rows are checked against each document run on its own.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

IGNORE = -100


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _run(model, ids, **kwargs):
    """Forward, also returning h^0 = the last main decoder layer's output (before model.norm)."""
    captured = {}
    layer = model.model.layers[model.config.num_hidden_layers - 1]
    handle = layer.register_forward_hook(lambda mod, args, out: captured.update(h=out))
    try:
        out = model(ids, **kwargs)
    finally:
        handle.remove()
    return out, captured["h"]


def _ce_terms(logits_TV, targets_T):
    """Per-position CE values, skipping ignored targets."""
    keep = targets_T != IGNORE
    return F.cross_entropy(logits_TV[keep].double(), targets_T[keep], reduction="none")


def _manual_mtp_terms(model, ids_T, labels_T, hidden_TD):
    """CE terms of depth 1 for one unpacked sequence, computed from the MTP weights."""
    T = ids_T.shape[0]
    if T < 3:
        return torch.zeros(0, dtype=torch.float64)
    mtp = model.model.layers[model.config.num_hidden_layers]
    eps = model.config.rms_norm_eps
    emb = model.model.embed_tokens(ids_T[1:])  # t_{i+1} for i = 0..T-2
    x = torch.cat((_rms(emb, mtp.enorm.weight, eps), _rms(hidden_TD[:-1], mtp.hnorm.weight, eps)), -1)
    x = x @ mtp.eh_proj.weight.T
    cos, sin = model.model.rotary_emb(torch.arange(T - 1)[None])  # the main model's positions
    y = mtp(x[None], cos, sin)[0]
    logits = _rms(y, mtp.shared_head.norm.weight, eps) @ model.lm_head.weight.T
    return _ce_terms(logits[: T - 2], labels_T[2:])  # position i predicts token i + 2


@pytest.fixture
def mtp_model(make_model):
    return make_model(seed=11, num_nextn_predict_layers=1)


def test_mtp_loss_targets_token_two_ahead(mtp_model):
    model = mtp_model
    gen = torch.Generator().manual_seed(12)
    ids = torch.randint(0, model.config.vocab_size, (2, 14), generator=gen)
    labels = ids.clone()
    labels[0, 5] = labels[1, 0] = labels[1, 9] = IGNORE
    with torch.no_grad():
        out, hidden = _run(model, ids, labels=labels)
        assert torch.allclose(model.lm_head(model.model.norm(hidden)), out.logits, atol=1e-6)
        main = torch.cat([_ce_terms(out.logits[b, :-1], labels[b, 1:]) for b in range(2)])
        mtp = torch.cat([_manual_mtp_terms(model, ids[b], labels[b], hidden[b]) for b in range(2)])
    torch.testing.assert_close(out.lm_loss.double(), main.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mtp_loss.double(), mtp.mean(), atol=1e-5, rtol=1e-5)


# Two rows of 15 tokens; the first holds a one-token and a two-token document (no MTP target).
PACKING = [[4, 3, 5, 1, 2], [6, 9]]


def test_packed_documents_neither_attend_nor_predict_across_boundaries(mtp_model):
    model = mtp_model
    T = 15
    gen = torch.Generator().manual_seed(13)
    ids = torch.randint(0, model.config.vocab_size, (len(PACKING), T), generator=gen)
    labels = ids.clone()
    labels[1, 7] = IGNORE
    position_ids = torch.tensor([[p for n in row for p in range(n)] for row in PACKING])
    main_terms, mtp_terms = [], []
    with torch.no_grad():
        packed = model(ids, position_ids=position_ids, labels=labels)
        for b, row in enumerate(PACKING):
            start = 0
            for n in row:
                doc_ids, doc_labels = ids[b, start:start + n], labels[b, start:start + n]
                alone, hidden = _run(model, doc_ids[None])
                torch.testing.assert_close(packed.logits[b, start:start + n], alone.logits[0],
                                           atol=1e-5, rtol=1e-5)
                main_terms.append(_ce_terms(alone.logits[0, :-1], doc_labels[1:]))
                mtp_terms.append(_manual_mtp_terms(model, doc_ids, doc_labels, hidden[0]))
                start += n
        # Teeth: without position_ids the same row does attend across the boundary.
        unpacked = model(ids).logits
    assert (unpacked[0, 4:7] - packed.logits[0, 4:7]).abs().max() > 1e-3
    torch.testing.assert_close(packed.lm_loss.double(), torch.cat(main_terms).mean(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.mtp_loss.double(), torch.cat(mtp_terms).mean(),
                               atol=1e-5, rtol=1e-5)


def test_total_loss_is_main_plus_weighted_mtp_plus_balance(make_model):
    alpha, weight = 0.01, 0.3
    model = make_model(seed=14, num_nextn_predict_layers=1, mtp_loss_weight=weight,
                       seq_aux_loss_alpha=alpha).train()
    routed = []  # (router, input, batch size, chosen experts) of every MoE forward

    def capture(router, args, kwargs, output):
        routed.append((router, args[0].detach(), kwargs.get("batch_size", 1), output[1]))

    from model.moe import Router
    handles = [m.register_forward_hook(capture, with_kwargs=True)
               for m in model.modules() if isinstance(m, Router)]
    B, T = 2, 12
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(15))
    try:
        out = model(ids, labels=ids)
    finally:
        for h in handles:
            h.remove()

    # One MoE main layer (layer 0 is dense) plus the MTP layer.
    assert len(routed) == model.config.num_hidden_layers - model.config.first_k_dense_replace + 1
    E, K = model.config.n_routed_experts, model.config.num_experts_per_tok
    expected_balance = 0.0
    for router, x, batch, idx in routed:  # spec §3.4 per sequence, averaged over sequences
        scores = torch.sigmoid(x.double() @ router.weight.detach().double().T).view(batch, T, E)
        picked = torch.zeros(batch * T, E, dtype=torch.float64).scatter_(1, idx, 1.0)
        f = picked.view(batch, T, E).sum(1) * E / (K * T)
        P = (scores / scores.sum(-1, keepdim=True)).mean(1)
        expected_balance += alpha * (f * P).sum(-1).mean()
    torch.testing.assert_close(out.balance_loss.double(), expected_balance, atol=1e-8, rtol=1e-5)
    torch.testing.assert_close(out.loss, out.lm_loss + weight * out.mtp_loss + out.balance_loss)
    main = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]),
                           ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.lm_loss, main)
