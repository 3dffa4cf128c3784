"""FP8 fine-grained quantization and the FP8 linear against independent float64 references."""

import warnings

import pytest
import torch

from model import ModelConfig, Transformer
from model import fp8
from model.checkpoint import read_tensors, save_checkpoint
from pretrain.optim import AdamWStateDtype


def e4m3_grid() -> torch.Tensor:
    """Every finite E4M3 value, built from the format (1 sign, 4 exponent, 3 mantissa bits, bias
    7, no infinities, S.1111.111 is NaN): independent of torch's float8 casts."""
    values = []
    for exp in range(16):
        for man in range(8):
            if exp == 15 and man == 7:
                continue  # NaN
            v = (man / 8) * 2.0 ** -6 if exp == 0 else (1 + man / 8) * 2.0 ** (exp - 7)
            values += [v, -v]
    return torch.tensor(sorted(set(values)), dtype=torch.float64)


GRID = e4m3_grid()


def round_to_grid(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest E4M3 value, ties to even mantissa, in float64."""
    idx = torch.searchsorted(GRID, x.clamp(GRID[0], GRID[-1]))
    lo, hi = GRID[(idx - 1).clamp(min=0)], GRID[idx.clamp(max=len(GRID) - 1)]
    pick_hi = (hi - x).abs() < (x - lo).abs()
    tie = (hi - x).abs() == (x - lo).abs()
    even_hi = (((hi.abs() / 2.0 ** torch.floor(torch.log2(hi.abs().clamp(min=2 ** -9)))) * 8) % 2 == 0)
    return torch.where(pick_hi | (tie & even_hi), hi, lo)


def reference_tiles(x: torch.Tensor):
    """float64 1x128 quantization of the last dim: (dequantized value, scale per tile)."""
    x = x.double()
    K = x.shape[-1]
    pad = (-K) % 128
    xp = torch.nn.functional.pad(x, (0, pad)).unflatten(-1, (-1, 128))
    scale = xp.abs().amax(-1).clamp(min=1e-4) / 448.0
    deq = round_to_grid(xp / scale[..., None]) * scale[..., None]
    return deq.flatten(-2)[..., :K], scale


@pytest.mark.parametrize("shape", [(3, 128), (5, 300), (2, 7, 129), (1, 1000)])
def test_tile_quantization_matches_float64_reference(shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * torch.logspace(-3, 3, shape[-1])  # very different tile ranges
    q, scale = fp8.quantize_tiles(x)
    ref, ref_scale = reference_tiles(x)
    torch.testing.assert_close(scale.double(), ref_scale, rtol=1e-6, atol=0)
    deq = fp8.dequantize_tiles(q, scale).double()
    torch.testing.assert_close(deq, ref, rtol=1e-6, atol=1e-12)
    # Error bound per element: half an E4M3 step at the element's magnitude (<= 2^-4 relative
    # for normal values) plus the subnormal floor of its tile.
    bound = x.double().abs() * 2 ** -4 + ref_scale.repeat_interleave(128, -1)[..., : shape[-1]] * 2 ** -10
    assert ((deq - x.double()).abs() <= bound + 1e-12).all()


def test_block_quantization_uses_each_blocks_own_max():
    torch.manual_seed(1)
    w = torch.randn(200, 300)
    w[130:, 260:] *= 1000.0  # one corner block is much larger
    q, scale = fp8.quantize_blocks(w)
    assert scale.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            block = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].double()
            assert scale[i, j].item() == pytest.approx(block.abs().max().item() / 448, rel=1e-6)
    deq = fp8.dequantize_blocks(q, scale)
    expected = q.double() * scale.double().repeat_interleave(128, 0).repeat_interleave(128, 1)[:200, :300]
    torch.testing.assert_close(deq.double(), expected)  # the dequantization formula, exactly


def test_pow2_scales_are_powers_of_two():
    _, scale = fp8.quantize_tiles(torch.randn(4, 256) * 3, pow2=True)
    assert torch.equal(torch.exp2(torch.log2(scale).round()), scale)


def test_emulated_linear_three_gemms_match_hand_built_reference():
    torch.manual_seed(2)
    x = torch.randn(6, 200, requires_grad=True)
    w = torch.randn(130, 200, requires_grad=True)
    y = fp8.fp8_linear(x, w, "emulated")
    dy = torch.randn_like(y)
    y.backward(dy)
    xq, _ = reference_tiles(x.detach())
    # Weights: 128x128 blocks, built from the block max by hand.
    wd = w.detach().double()
    wq = torch.empty_like(wd)
    for i in range(0, 130, 128):
        for j in range(0, 200, 128):
            blk = wd[i:i + 128, j:j + 128]
            s = blk.abs().max() / 448
            wq[i:i + 128, j:j + 128] = round_to_grid(blk / s) * s
    torch.testing.assert_close(y.double(), xq @ wq.t(), rtol=1e-5, atol=1e-5)
    dyq, _ = reference_tiles(dy)  # Dgrad: dy tiles along N
    torch.testing.assert_close(x.grad.double(), dyq @ wq, rtol=1e-5, atol=1e-5)
    dyt, _ = reference_tiles(dy.t())  # Wgrad: tiles along tokens
    xt, _ = reference_tiles(x.detach().t())
    torch.testing.assert_close(w.grad.double(), dyt @ xt.t(), rtol=1e-5, atol=1e-5)
    assert w.grad.dtype == torch.float32


def test_fp8_gradients_close_to_exact_gradients():
    torch.manual_seed(3)
    # Quantization off: the FP8 linear's own backward (Dgrad and Wgrad GEMMs) vs finite differences.
    xs = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fp8.fp8_linear(a, b, "exact"), (xs, ws))
    # Quantization on: gradients stay within a few E4M3 steps of the exact ones.
    x = torch.randn(16, 256, dtype=torch.float64)
    w = torch.randn(64, 256, dtype=torch.float64)
    xe, we = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    xf, wf = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    (xe @ we.t()).square().sum().backward()
    fp8.fp8_linear(xf, wf, "emulated").square().sum().backward()
    for exact, quant in ((xe.grad, xf.grad), (we.grad, wf.grad)):
        assert (quant - exact).norm() / exact.norm() < 0.1  # a few E4M3 rounding steps


def test_model_fp8_scope_and_training_step():
    torch.manual_seed(4)
    model = Transformer(ModelConfig(fp8=True, fp8_backend="emulated"))
    attn, moe = model.model.layers[1].self_attn, model.model.layers[1].mlp
    assert isinstance(attn.q_b_proj, fp8.FP8Linear) and isinstance(moe.shared_experts.up_proj, fp8.FP8Linear)
    assert moe.experts.fp8 == ("emulated", False)
    for high in (model.lm_head, moe.gate, model.model.layers[-1].eh_proj):
        assert not isinstance(high, fp8.FP8Linear)
    ids = torch.randint(0, 500, (2, 24))
    out = model(ids, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(p.grad is not None for p in model.parameters())


def test_scaled_mm_request_on_cpu_falls_back_with_one_warning():
    fp8.resolve_backend.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fp8.resolve_backend("scaled_mm", "cpu") == "emulated"
        assert fp8.resolve_backend("scaled_mm", "cpu") == "emulated"
    assert len([w for w in caught if "scaled_mm" in str(w.message)]) == 1
    with pytest.raises(ValueError, match="fp8_backend"):
        fp8.resolve_backend("fast", "cpu")


def test_fp8_checkpoint_round_trip_follows_dequantization_formula(tmp_path):
    torch.manual_seed(5)
    model = Transformer(ModelConfig())
    save_checkpoint(model, tmp_path, fp8=True)
    files = read_tensors(tmp_path)
    name = "model.layers.1.mlp.experts.3.down_proj.weight"
    q, s = files[name], files[name + "_scale_inv"]
    assert q.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
    assert s.shape == (-(-q.shape[0] // 128), -(-q.shape[1] // 128))
    assert files["lm_head.weight"].dtype == torch.float32  # high-precision scope stays
    assert "model.layers.1.mlp.gate.weight_scale_inv" not in files
    loaded = Transformer.from_pretrained(tmp_path)
    expected = q.double() * s.double().repeat_interleave(128, 0).repeat_interleave(128, 1)[:q.shape[0], :q.shape[1]]
    torch.testing.assert_close(loaded.model.layers[1].mlp.experts.down_proj[3].double(), expected)
    import json
    assert json.loads((tmp_path / "config.json").read_text())["quantization_config"]["weight_block_size"] == [128, 128]


def test_fp8_checkpoint_with_mismatched_scale_is_an_error(tmp_path):
    from safetensors.torch import save_file
    model = Transformer(ModelConfig())
    save_checkpoint(model, tmp_path, fp8=True)
    files = read_tensors(tmp_path)
    files["model.layers.0.self_attn.o_proj.weight_scale_inv"] = torch.ones(5, 5)
    save_file(files, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="o_proj.weight_scale_inv"):
        Transformer.from_pretrained(tmp_path)


def test_adamw_with_fp32_state_matches_torch_and_bf16_moments_stay_close():
    torch.manual_seed(6)
    params = [torch.randn(32, 16, requires_grad=True) for _ in range(3)]
    copies = {name: [p.detach().clone().requires_grad_() for p in params] for name in ("t", "f", "b")}
    opts = {"t": torch.optim.AdamW(copies["t"], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, foreach=False),
            "f": AdamWStateDtype(copies["f"], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1,
                                 state_dtype=torch.float32),
            "b": AdamWStateDtype(copies["b"], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)}
    for _ in range(5):
        grads = [torch.randn(32, 16) for _ in params]
        for name, opt in opts.items():
            for p, g in zip(copies[name], grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(copies["t"], copies["f"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(copies["t"], copies["b"]):
        assert (a - b).abs().max() < 2e-3  # bf16 moments: a small deviation, not a different path
    assert opts["b"].state[copies["b"][0]]["exp_avg"].dtype == torch.bfloat16
