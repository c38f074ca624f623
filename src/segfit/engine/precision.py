"""Mixed precision from ``train.precision``: the autocast context of a forward pass and the gradient scaler.

bf16 has fp32's exponent range, so it needs no loss scaling and runs on CPU and CUDA; fp16 underflows small
gradients unless the loss is scaled, which segfit supports on CUDA only.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Fail before any work is done when the precision cannot run on the device."""
    if precision not in ("fp32", *DTYPES):
        raise ValueError(f"train.precision: unknown precision {precision!r}; known: fp32, bf16, fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"train.precision: fp16 needs a CUDA device (its gradient scaler runs on CUDA only), but the device is "
            f"{device}; use train.precision=bf16 on CPU"
        )


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Mixed-precision context for the forward pass and loss; a no-op for fp32."""
    check_precision(precision, device)
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaler, enabled for fp16 only; disabled, its methods pass through so the loop has one code path."""
    check_precision(precision, device)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
