"""Which attention kernel the memory attention's training step gets: its attention maps take dropout (official
0.1), and PyTorch fuses attention with dropout only on CUDA (docs/video.md, "Speed and memory")."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from segfit.models.sam2.build import build_sam2_video

TOKENS, OBJECTS, MEMORY_FRAMES, POINTERS = 32 * 32, 2, 2, 16
"""The memory attention of ``bench_video_step.py``: 512² frames (32² stride-16 tokens), 2 objects, 2 memories."""


def _attend(device: str, dtype: torch.dtype, training: bool = True) -> torch.Tensor:
    """The tiny model's memory attention (in training mode: with dropout), forward and backward, on random inputs."""
    attention = build_sam2_video("tiny", image_size=512).memory_attention.to(device).train(training)
    config = attention.config
    assert config.memory_attention_rope_dropout > 0
    gen = torch.Generator(device).manual_seed(0)
    memory_tokens = MEMORY_FRAMES * TOKENS + POINTERS
    width, memory_width = config.memory_attention_hidden_size, config.memory_encoder_output_channels
    features, position, memory, memory_position = (
        torch.randn(n, OBJECTS, c, generator=gen, device=device, requires_grad=True)
        for n, c in ((TOKENS, width), (TOKENS, width), (memory_tokens, memory_width), (memory_tokens, memory_width)))
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        out = attention(features, memory=memory, current_vision_position_embeddings=position,
                        memory_posision_embeddings=memory_position, num_object_pointer_tokens=POINTERS)
    out.float().sum().backward()
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_attention_dropout_runs_fused_on_cuda(dtype):
    """With the math kernel off, SDPA raises unless flash or memory-efficient attention takes the dropout."""
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        assert torch.isfinite(_attend("cuda", dtype)).all()


def test_memory_attention_dropout_takes_the_unfused_kernel_on_cpu():
    """PyTorch's fused CPU kernel refuses dropout (torch 2.14): training runs the math kernel, which draws and keeps
    a mask of every attention map. When a release fuses it, this fails and the figures in docs/video.md are due."""
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        assert torch.isfinite(_attend("cpu", torch.float32, training=False)).all()  # no dropout: fused
        with pytest.raises(RuntimeError, match="No available kernel"):
            _attend("cpu", torch.float32)
