"""Augmentation: seeded, joint image/mask/ignore flips, colour-only jitter; object subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segfit.data.records import ImageRecord
from segfit.data.transforms import augment, select_objects
from segfit.spec.schema import AugmentSpec


@pytest.fixture
def record() -> ImageRecord:
    """Left half dark, right half bright, so a flip is visible through any colour jitter."""
    rng = np.random.default_rng(0)
    image = (rng.random((24, 32, 3)) * 60).astype(np.uint8)
    image[:, 16:] += 180
    masks = np.zeros((3, 24, 32), bool)
    masks[0, 2:8, 1:5], masks[1, 10:20, 20:31], masks[2, 0:3, 0:32] = True, True, True
    ignore = np.zeros((24, 32), bool)
    ignore[20:, :6] = True
    return ImageRecord(image=image, masks=masks, source="x.png", ignore=ignore)


def test_flip_only_is_exact(record):
    out = augment(record, AugmentSpec(hflip=1.0, color_jitter=0.0), seed=5)
    np.testing.assert_array_equal(out.image, record.image[:, ::-1])
    np.testing.assert_array_equal(out.masks, record.masks[:, :, ::-1])
    np.testing.assert_array_equal(out.ignore, record.ignore[:, ::-1])
    assert out.image.flags.c_contiguous and out.masks.dtype == bool and out.source == "x.png"


def test_disabled_returns_the_record(record):
    assert augment(record, AugmentSpec(hflip=0.0, color_jitter=0.0), seed=1) is record


def test_masks_follow_the_image_under_jitter(record):
    flips = 0
    for seed in range(40):
        out = augment(record, AugmentSpec(hflip=0.5, color_jitter=0.2), seed)
        flipped = out.image[:, :16].mean() > out.image[:, 16:].mean()
        reference = record.masks[:, :, ::-1] if flipped else record.masks
        np.testing.assert_array_equal(out.masks, reference)
        np.testing.assert_array_equal(out.ignore, record.ignore[:, ::-1] if flipped else record.ignore)
        flips += flipped
    assert 10 < flips < 30


def test_jitter_changes_colours_only_and_is_bounded(record):
    changed = 0
    for seed in range(10):
        out = augment(record, AugmentSpec(hflip=0.0, color_jitter=0.1), seed)
        np.testing.assert_array_equal(out.masks, record.masks)
        ratio = out.image.astype(float).mean() / record.image.astype(float).mean()
        assert 0.8 < ratio < 1.2
        changed += not np.array_equal(out.image, record.image)
    assert changed == 10


def test_same_seed_same_output_and_global_rng_untouched(record):
    spec = AugmentSpec(hflip=0.5, color_jitter=0.1)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first, second = augment(record, spec, 123), augment(record, spec, 123)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.masks, second.masks)
    outputs = {augment(record, spec, seed).image.tobytes() for seed in range(6)}
    assert len(outputs) == 6


def test_no_objects_and_no_ignore(record):
    empty = ImageRecord(image=record.image, masks=np.zeros((0, 24, 32), bool), source="y.png")
    out = augment(empty, AugmentSpec(hflip=1.0, color_jitter=0.1), 0)
    assert out.masks.shape == (0, 24, 32) and out.ignore is None


def test_select_objects(record):
    assert select_objects(record, 3, 0) is record
    subsets = set()
    for seed in range(20):
        out = select_objects(record, 2, seed)
        chosen = [next(k for k in range(3) if np.array_equal(m, record.masks[k])) for m in out.masks]
        assert len(chosen) == 2 and chosen == sorted(set(chosen))  # distinct, in the original order
        assert np.array_equal(select_objects(record, 2, seed).masks, out.masks)
        subsets.add(tuple(chosen))
    assert subsets == {(0, 1), (0, 2), (1, 2)}
    with pytest.raises(ValueError, match="max_num_objects"):
        select_objects(record, 0, 0)
