"""Fixtures the SAM 2 predictor tests share."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def image(request) -> np.ndarray:
    """A smooth RGB uint8 image of the test module's ``HW`` (smooth, so masks and resizing behave like a photo's)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (6, 10, 3)).astype(np.float32)
    size = request.module.HW
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None], size=size, mode="bilinear")
    return smooth[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
