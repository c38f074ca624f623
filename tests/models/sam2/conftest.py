"""Fixtures the SAM 2 tests share."""

import numpy as np
import pytest
import torch

from segfit.models.sam2.build import build_sam2


@pytest.fixture(scope="module")
def image(request) -> np.ndarray:
    """A smooth RGB uint8 image of the test module's ``HW`` (smooth, so masks and resizing behave like a photo's)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (6, 10, 3)).astype(np.float32)
    size = request.module.HW
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None], size=size, mode="bilinear")
    return smooth[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def model():
    """The ``test`` model at 256² with every weight perturbed (logits far from 0), in training mode (no stability
    fallback): what the episode tests decode with (modules with a model of their own override it)."""
    model = build_sam2("test", image_size=256).train()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model
