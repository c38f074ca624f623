"""Preprocessing equals the reference SAM2Transforms to float32 rounding; prompts and logits map like the predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segfit.models.sam2.preprocess import (
    MEAN,
    STD,
    boxes_to_model,
    masks_to_original,
    points_to_model,
    preprocess_frames,
    preprocess_image,
    resize_masks,
)

from assertions import assert_close_to_scale


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_constant_image_gives_normalised_constant():
    image = np.full((30, 50, 3), (10, 128, 250), dtype=np.uint8)
    out = preprocess_image(image, 256)
    assert out.shape == (3, 256, 256) and out.dtype == torch.float32
    for channel, value in enumerate((10, 128, 250)):
        expected = (value / 255 - MEAN[channel]) / STD[channel]
        assert torch.allclose(out[channel], torch.full((256, 256), expected), atol=1e-6)


def test_image_is_stretched_not_letterboxed():
    """Left half black, right half white: the boundary lands in the middle of the square input."""
    image = np.zeros((100, 400, 3), dtype=np.uint8)
    image[:, 200:] = 255
    out = preprocess_image(image, 256)
    black, white = -MEAN[0] / STD[0], (1 - MEAN[0]) / STD[0]
    assert torch.allclose(out[0, :, :120], torch.full((256, 120), black), atol=1e-5)
    assert torch.allclose(out[0, :, 136:], torch.full((256, 120), white), atol=1e-5)


def test_downscale_is_antialiased_float_resize():
    """The reference resizes the float tensor with antialiasing: a PIL/uint8 resize would differ."""
    image = random_image(700, 900)
    float_chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = F.interpolate(float_chw[None], size=(256, 256), mode="bilinear", antialias=True, align_corners=False)[0]
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    assert torch.allclose(preprocess_image(image, 256), (expected - mean) / std, atol=1e-6)


def test_torch_input_matches_numpy_input():
    image = random_image(64, 48)
    assert torch.equal(preprocess_image(image, 256), preprocess_image(torch.from_numpy(image), 256))


@pytest.mark.parametrize("size", [256, 48])  # resized, and already at the model size (no resize)
def test_frames_written_in_place_equal_frames_one_by_one(size):
    """Same kernels on the same numbers: only the output buffer differs."""
    frames = np.stack([random_image(48, 48, seed) for seed in range(3)])
    assert torch.equal(preprocess_frames(frames, size), torch.stack([preprocess_image(f, size) for f in frames]))


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)]
)
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        preprocess_image(bad, 256)


def test_resize_masks_nearest_keeps_blocks_aligned():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True  # top-left quadrant
    masks[1, 1, 3] = True  # one pixel
    out = resize_masks(masks, 8)
    assert out.dtype == torch.bool and out.shape == (2, 8, 8)
    expected0 = torch.zeros(8, 8, dtype=torch.bool)
    expected0[:4, :4] = True
    assert torch.equal(out[0], expected0)
    expected1 = torch.zeros(8, 8, dtype=torch.bool)
    expected1[2:4, 6:8] = True
    assert torch.equal(out[1], expected1)


def test_resize_masks_downscale_samples_pixel_centres():
    """3→1 pixel: nearest-exact takes the centre pixel (legacy nearest would take the top-left one)."""
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    masks[0, 1, 1] = True
    assert resize_masks(masks, 1).item() is True


def test_resize_masks_empty_stack():
    assert resize_masks(np.zeros((0, 5, 7), bool), 256).shape == (0, 256, 256)


def test_points_and_boxes_scale_each_axis():
    points = torch.tensor([[320.0, 240.0], [0.0, 479.0]])
    expected = torch.tensor([[512.0, 512.0], [0.0, 479 / 480 * 1024]])
    assert torch.allclose(points_to_model(points, (480, 640), 1024), expected)
    boxes = torch.tensor([[[64.0, 48.0, 640.0, 480.0]]])
    assert torch.allclose(boxes_to_model(boxes, (480, 640), 1024), torch.tensor([[[102.4, 102.4, 1024.0, 1024.0]]]))
    with pytest.raises(ValueError, match="x, y"):
        points_to_model(torch.zeros(3, 3), (10, 10), 256)


def test_masks_to_original_shape_and_values():
    logits = torch.randn(2, 3, 64, 64)
    out = masks_to_original(logits, (100, 150))
    assert out.shape == (2, 3, 100, 150)
    assert torch.allclose(masks_to_original(torch.full((1, 8, 8), 2.5), (30, 17)), torch.full((1, 30, 17), 2.5))


@pytest.mark.reference
@pytest.mark.parametrize("hw_size", [(480, 640, 1024), (1500, 2000, 1024), (37, 53, 256), (300, 300, 512)])
def test_matches_reference_transforms(hw_size):
    pytest.importorskip("sam2")
    from sam2.utils.transforms import SAM2Transforms

    height, width, size = hw_size
    reference = SAM2Transforms(resolution=size, mask_threshold=0.0)
    image = random_image(height, width, seed=height)
    # Meta's code and segfit's: the same maths in their own orders and tensor shapes, so a few ulps apart at most
    assert (preprocess_image(image, size) - reference(image)).abs().max().item() <= 1e-6  # ≤ 4 ulps of values ≤ 2.7

    points = torch.tensor([[[200.0, 150.0], [width - 1.0, height - 1.0]]])
    ref_points = reference.transform_coords(points, normalize=True, orig_hw=(height, width))
    torch.testing.assert_close(points_to_model(points, (height, width), size), ref_points, rtol=1e-5, atol=1e-6)
    boxes = torch.tensor([[10.0, 20.0, 300.0, 280.0]])
    ref_boxes = reference.transform_boxes(boxes, normalize=True, orig_hw=(height, width)).reshape(-1, 4)
    torch.testing.assert_close(boxes_to_model(boxes, (height, width), size), ref_boxes, rtol=1e-5, atol=1e-6)

    logits = torch.randn(2, 3, size // 4, size // 4)
    expected = reference.postprocess_masks(logits, (height, width))
    # one (N·M, 1, h, w) resize vs the reference's (N, M, h, w): other kernels, ≤ 2.2e-7 of the logits' scale seen
    assert_close_to_scale(masks_to_original(logits, (height, width)), expected, rel=1e-5)


@pytest.mark.parametrize("count", [1, 8, 11])
def test_packed_mask_resize_samples_like_one_plane_at_a_time(count):
    """``resize_masks`` packs 8 masks to a uint8 plane: each must come out as its own nearest-exact resize."""
    masks = torch.from_numpy(np.random.default_rng(count).random((count, 37, 53)) > 0.5)
    expected = F.interpolate(masks[:, None].to(torch.uint8), size=(64, 64), mode="nearest-exact")[:, 0].bool()
    assert torch.equal(resize_masks(masks, 64), expected)
    assert torch.equal(resize_masks(masks.numpy()[:, ::2], 64)[0],  # a strided view, as a clip's object slice
                       resize_masks(np.ascontiguousarray(masks.numpy()[:1, ::2]), 64)[0])


def test_read_only_and_flipped_arrays_preprocess_like_their_copies():
    """Decoded arrays may be read-only and a flip is a view with negative strides: both are copied, not refused."""
    image = random_image(32, 32)
    flipped, frozen = image[:, ::-1], image.copy()
    frozen.setflags(write=False)
    for size in (32, 64):  # the same size (no resize) and a resize
        assert torch.equal(preprocess_image(flipped, size), preprocess_image(np.ascontiguousarray(flipped), size))
        assert torch.equal(preprocess_image(frozen, size), preprocess_image(image, size))
