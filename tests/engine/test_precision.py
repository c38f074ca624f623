"""Mixed-precision helpers: which dtype a forward pass computes in, and when loss scaling is on."""

from __future__ import annotations

import pytest
import torch

from segfit.engine.precision import autocast, grad_scaler

CPU = torch.device("cpu")


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_sets_the_matmul_dtype(precision, dtype):
    a, b = torch.randn(2, 3), torch.randn(3, 2)
    with autocast(precision, CPU):
        assert (a @ b).dtype == dtype
    assert (a @ b).dtype == torch.float32


def test_scaler_is_a_pass_through_off_fp16():
    scaler = grad_scaler("bf16", CPU)
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


@pytest.mark.parametrize("make", [autocast, grad_scaler])
def test_fp16_on_cpu_and_unknown_precisions_are_clear_errors(make):
    with pytest.raises(ValueError, match="train.precision: fp16 needs a CUDA device"):
        make("fp16", CPU)
    with pytest.raises(ValueError, match="train.precision: unknown precision 'fp8'"):
        make("fp8", CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda_scales_the_loss():
    scaler = grad_scaler("fp16", torch.device("cuda"))
    assert scaler.is_enabled()
    with autocast("fp16", torch.device("cuda")):
        assert (torch.randn(2, 3, device="cuda") @ torch.randn(3, 2, device="cuda")).dtype == torch.float16
