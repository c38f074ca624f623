"""Clip augmentation: one geometric draw for every frame, masks aligned with the pixels, seeded; its spec keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segfit.data.records import VideoRecord
from segfit.data.transforms import augment_clip
from segfit.spec import SpecError, load_spec
from segfit.spec.schema import VideoAugmentSpec

T, H, W = 4, 40, 56
RED, BLUE = (230, 20, 20), (20, 20, 230)
OFF = dict(hflip=0.0, degrees=0.0, shear=0.0, color_jitter=[0.0, 0.0, 0.0], grayscale=0.0,
           frame_color_jitter=[0.0, 0.0, 0.0])


def _clip(moving: bool = True) -> VideoRecord:
    """Blue frames with two red objects (a box moving right when ``moving``, a disc), masks = the red pixels."""
    masks = np.zeros((T, 2, H, W), bool)
    yy, xx = np.mgrid[0:H, 0:W]
    for t in range(T):
        shift = 3 * t if moving else 0
        masks[t, 0, 8:20, 6 + shift:18 + shift] = True
        masks[t, 1] = (yy - 26) ** 2 + (xx - 38) ** 2 < 64
    frames = np.where(masks.any(1)[..., None], np.array(RED, np.uint8), np.array(BLUE, np.uint8))
    ignore = np.zeros((T, H, W), bool)
    ignore[:, 34:, :10] = True
    return VideoRecord(frames=frames, masks=masks, object_ids=(1, 2), frame_names=[f"{t}.jpg" for t in range(T)],
                       source="clip", ignore=ignore)


def _inside(masks: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood is in the mask (T×H×W): those no bilinear sample blends with the outside."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    h, w = masks.shape[1:]
    return np.logical_and.reduce([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def test_identical_frames_stay_identical():
    still = _clip(moving=False)
    spec = VideoAugmentSpec(resize=[32, 48], frame_color_jitter=[0.0, 0.0, 0.0], grayscale=0.5)
    for seed in range(12):
        out = augment_clip(still, spec, seed)
        for t in range(1, T):
            np.testing.assert_array_equal(out.frames[t], out.frames[0])
            np.testing.assert_array_equal(out.masks[t], out.masks[0])
            np.testing.assert_array_equal(out.ignore[t], out.ignore[0])


def test_per_frame_jitter_changes_colours_not_geometry():
    still = _clip(moving=False)
    out = augment_clip(still, VideoAugmentSpec(frame_color_jitter=[0.3, 0.3, 0.3]), seed=4)
    assert not np.array_equal(out.frames[0], out.frames[1])
    assert all(np.array_equal(out.masks[t], out.masks[0]) for t in range(T))


def test_masks_stay_on_their_pixels():
    clip = _clip()
    spec = VideoAugmentSpec(scale=[0.8, 1.2], resize=[48], resize_square=False, color_jitter=[0.0, 0.0, 0.0],
                            grayscale=0.0, frame_color_jitter=[0.0, 0.0, 0.0])  # flip, affine, resize
    geometries = set()
    for seed in range(12):
        out = augment_clip(clip, spec, seed)
        assert out.frames.shape == (T, 48, 67, 3) and out.masks.shape == (T, 2, 48, 67) and out.masks.dtype == bool
        red = out.frames[..., 0].astype(int) > out.frames[..., 2].astype(int) + 60
        on_object = out.masks.any(1)
        assert red[_inside(on_object)].all() and not red[_inside(~on_object)].any()  # borders are interpolated
        assert (red == on_object).mean() > 0.97
        assert out.masks[0].any(axis=(1, 2)).all()  # no object pushed out of the first frame
        geometries.add(out.masks.tobytes())
    assert len(geometries) == 12


def test_flip_alone_is_exact_and_disabled_is_identity():
    clip = _clip()
    out = augment_clip(clip, VideoAugmentSpec(**{**OFF, "hflip": 1.0}), seed=0)
    np.testing.assert_array_equal(out.frames, clip.frames[:, :, ::-1])
    np.testing.assert_array_equal(out.masks, clip.masks[..., ::-1])
    np.testing.assert_array_equal(out.ignore, clip.ignore[..., ::-1])
    same = augment_clip(clip, VideoAugmentSpec(**OFF), seed=0)
    np.testing.assert_array_equal(same.frames, clip.frames)
    np.testing.assert_array_equal(same.masks, clip.masks)


def test_affine_is_skipped_when_it_would_lose_a_first_frame_object():
    clip = _clip()
    clip.masks[0, 1] = False
    clip.masks[0, 1, 0:2, 0:2] = True  # a corner object that any 3× zoom pushes out of the frame
    out = augment_clip(clip, VideoAugmentSpec(**{**OFF, "scale": [3.0, 3.0]}), seed=1)
    np.testing.assert_array_equal(out.masks, clip.masks)
    zoomed = augment_clip(_clip(), VideoAugmentSpec(**{**OFF, "scale": [1.5, 1.5]}), seed=1)
    assert zoomed.masks[:, 0].sum() > 1.5 * _clip().masks[:, 0].sum()


def test_square_resize_and_grayscale():
    out = augment_clip(_clip(), VideoAugmentSpec(**{**OFF, "resize": [24], "grayscale": 1.0}), seed=0)
    assert out.frames.shape == (T, 24, 24, 3) and out.ignore.shape == (T, 24, 24)
    assert (out.frames[..., 0] == out.frames[..., 1]).all() and (out.frames[..., 1] == out.frames[..., 2]).all()


def test_seeded_and_global_rng_untouched():
    clip, spec = _clip(), VideoAugmentSpec(resize=[32, 40])
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first, second = augment_clip(clip, spec, 99), augment_clip(clip, spec, 99)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert len({augment_clip(clip, spec, seed).frames.tobytes() for seed in range(6)}) == 6


def test_spec_keys_and_bad_settings():
    spec = load_spec(None, ["model.name=sam2", "data.video.num_frames=4", "data.video.augment.resize=[512]",
                            "data.video.reverse_time_prob=0.5"])
    assert (spec.data.video.num_frames, spec.data.video.max_num_objects, spec.data.video.reverse_time_prob) == (4, 3, 0.5)
    assert spec.data.video.augment.resize == [512] and spec.data.max_num_objects == 8  # the image key is untouched
    with pytest.raises(SpecError, match="data.video.augment.shear: must be ≥ 0"):
        load_spec(None, ["model.name=sam2", "data.video.augment.shear=-1"])
    with pytest.raises(ValueError, match="scale"):
        VideoAugmentSpec(scale=[1.2, 0.9])
    with pytest.raises(ValueError, match="frame_color_jitter"):
        VideoAugmentSpec(frame_color_jitter=[0.1, 0.1])
    with pytest.raises(ValueError, match="grayscale"):
        VideoAugmentSpec(grayscale=1.5)
