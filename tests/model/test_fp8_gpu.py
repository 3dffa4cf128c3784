"""FP8 on a Hopper GPU (`pytest -m gpu`): the blockwise scaled_mm backend against emulation."""

import pytest
import torch

from model import fp8

pytestmark = pytest.mark.gpu

needs_sm90 = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0),
    reason="blockwise torch._scaled_mm needs an SM90 GPU")


@needs_sm90
def test_scaled_mm_layouts_pass_the_self_check():
    assert fp8.scaled_mm_out_dtype(0) is not None, "no scale layout matched emulation"


@needs_sm90
@pytest.mark.parametrize("M,N,K", [(256, 384, 512), (1000, 300, 700)])
def test_scaled_mm_gemms_match_emulation(M, N, K):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(M, K, device="cuda", generator=gen)
    w = torch.randn(N, K, device="cuda", generator=gen)
    dy = torch.randn(M, N, device="cuda", generator=gen)
    real = fp8._real_gemms(False, fp8.scaled_mm_out_dtype(0))
    emu = fp8._emulated_gemms(False)
    for got, want in ((real[0](x, w), emu[0](x, w)), (real[1](dy, w), emu[1](dy, w)),
                      (real[2](dy, x), emu[2](dy, x))):
        assert ((got - want).norm() / want.norm()).item() < 1e-3  # far below bf16 rounding
