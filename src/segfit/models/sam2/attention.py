"""Attention kernels for the calls whose shapes change from one step to the next.

The mask decoder sees a new shape with every object count and prompt count, and the memory attention with every
memory count. On Hopper GPUs, PyTorch ≥ 2.10 (with its bundled cuDNN ≥ 9.15) runs ``scaled_dot_product_attention``
on cuDNN first, and cuDNN builds an execution graph for every new shape (hundreds of milliseconds each, forward and
backward): on an H100 the official 8-step episode ran at 0.43 steps/s, most of it graph building
(docs/speed.md). The fixed-shape image encoder keeps PyTorch's choice.
"""

from __future__ import annotations

from torch.nn.attention import SDPBackend, sdpa_kernel

VARIABLE_SHAPE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
"""Kernels that need no per-shape set-up; every input SDPA accepts runs on one of them."""


def variable_shape_attention():  # noqa: ANN201 (torch's context manager type is private)
    """Context manager (or decorator) for attention over shapes that vary: SDPA without the cuDNN kernels."""
    return sdpa_kernel(VARIABLE_SHAPE_BACKENDS)
