"""Whole-model torch.compile of the training step (forward + backward, MTP and balance loss on):
no graph breaks, and the compiled loss and gradients equal eager ones.

The MoE dispatch must trace as one graph: expert token counts are a fixed-size scatter-add (not
bincount / boolean indexing, whose output shapes depend on the data), the routers are a plain
list (no module walk inside forward). bf16, because torch._grouped_mm's fake-tensor rule (what
compile traces with) accepts only bf16; that is the CUDA training path.
"""

from __future__ import annotations

import pytest
import torch

from model.moe import expert_counts


def _bf16_model(make_model):
    model = make_model(0).train().to(torch.bfloat16)
    model.config.moe_kernel = "grouped_mm"
    for layer in model.model.layers:
        if hasattr(layer.mlp, "experts"):
            layer.mlp.experts.kernel = "grouped_mm"
    return model


def _batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 97, (2, 16), generator=gen)


def test_expert_counts_equal_bincount():
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 8, (50, 3), generator=gen)
    keep = torch.rand(50, generator=gen) > 0.3
    assert torch.equal(expert_counts(idx, 8), torch.bincount(idx.flatten(), minlength=8))
    masked = expert_counts(idx, 8, keep[:, None].expand_as(idx))
    assert torch.equal(masked, torch.bincount(idx[keep].flatten(), minlength=8))


def test_training_forward_has_no_graph_breaks(make_model):
    model = _bf16_model(make_model)
    ids = _batch()
    explained = torch._dynamo.explain(lambda x: model(input_ids=x, labels=x).loss)(ids)
    reasons = [b.reason[:200] for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_fullgraph_compile_matches_eager_loss_and_grads(make_model):
    torch._dynamo.reset()
    eager, compiled_model = _bf16_model(make_model), _bf16_model(make_model)
    ids = _batch()
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    results = []
    for net, model in ((eager, eager), (compiled, compiled_model)):
        out = net(input_ids=ids, labels=ids)
        assert out.mtp_loss is not None and out.balance_loss is not None
        out.loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        counts = torch.stack([r.load_counts for r in model._routers()])
        results.append((out.loss.float(), out.mtp_loss.float(), grads, counts))
    (loss_e, mtp_e, grads_e, counts_e), (loss_c, mtp_c, grads_c, counts_c) = results
    # aot_eager runs the same aten kernels: the loss is bit-identical, not merely close.
    assert torch.equal(loss_c, loss_e) and torch.equal(mtp_c, mtp_e), (loss_c, loss_e)
    assert torch.equal(counts_c, counts_e)  # the bias update sees the same loads
    assert grads_c.keys() == grads_e.keys() and len(grads_e) > 10
    for name in grads_e:
        scale = grads_e[name].abs().max().clamp(min=1e-6)
        err = (grads_c[name] - grads_e[name]).abs().max() / scale
        assert err < 2e-2, f"{name}: relative grad error {err:.3g}"
