"""The fast clip kernels (OpenCV on uint8) against the reference ones (PIL, float resize): the same draws and
geometry, pixels within rounding, masks identical."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

from segfit.data.formats import open_video_split
from segfit.data.sampling import sample_clip
from segfit.data.synthetic import write_synthetic_videos
from segfit.data.transforms import augment_clip
from segfit.models.sam2.preprocess import STD, preprocess_frames
from segfit.spec import SpecError, load_spec
from segfit.spec.schema import SplitSpec, VideoAugmentSpec

GREY_LEVELS = torch.tensor(STD).view(1, 3, 1, 1) * 255
"""Normalised model input × this = 0-255 grey levels."""


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list:
    """Six 8-frame clips of synthetic DAVIS videos (textured moving objects, JPEG frames) at 180×320."""
    videos = write_synthetic_videos(tmp_path_factory.mktemp("videos"), num_train=3, num_val=0, size=(180, 320),
                                    num_frames=10)
    reader = open_video_split(SplitSpec(format="davis", images=str(videos["train_images"]),
                                        annotations=str(videos["train_annotations"])))
    return [sample_clip(reader, seed % len(reader), seed) for seed in range(6)]


def _both(clip, seed: int, **spec):
    return [augment_clip(clip, VideoAugmentSpec(backend=backend, **spec), seed) for backend in ("reference", "fast")]


def test_fast_augmentation_is_the_reference_within_rounding(clips):
    """The official transforms (flip, affine, colour jitter, grayscale, per-frame jitter) with the same seed. PIL
    and OpenCV interpolate and blend with other roundings: measured a mean of 0.0001-0.007 grey levels here
    (0.005-0.025 at 480×854) and a max of 4 (5) on a few pixels in a million (chains of six blends after an affine
    off by one); a wrong sample point or fill moves hundreds of pixels by tens of levels."""
    for seed, clip in enumerate(clips):
        ref, fast = _both(clip, seed, grayscale=0.5)
        diff = np.abs(ref.frames.astype(np.int16) - fast.frames.astype(np.int16))
        assert diff.mean() < 0.1 and diff.max() <= 8, (seed, diff.mean(), diff.max())
        assert (diff > 2).mean() < 1e-3
        np.testing.assert_array_equal(fast.masks, ref.masks)  # the same nearest-neighbour code on both paths
        np.testing.assert_array_equal(fast.ignore, ref.ignore)


@pytest.mark.parametrize("kind, bound", [("affine", 1), ("colour", 3)])
def test_each_fast_kernel_is_the_reference_within_rounding(clips, kind, bound):
    """One kind of kernel at a time, on under 1 % of the pixels: the affine (a float warp truncated as PIL
    truncates) differs by 1 grey level at most (measured); a single colour blend (rounding offset to PIL's
    truncation) by 1, and the chain of up to six (clip and frame jitter, grayscale) by 3 (measured at 480×854)."""
    off = {"affine": {"color_jitter": [0.0] * 3, "frame_color_jitter": [0.0] * 3, "grayscale": 0.0},
           "colour": {"degrees": 0.0, "shear": 0.0, "grayscale": 0.5}}[kind]
    for seed, clip in enumerate(clips):
        ref, fast = _both(clip, seed, **off)
        diff = np.abs(ref.frames.astype(np.int16) - fast.frames.astype(np.int16))
        assert diff.max() <= bound and (diff > 0).mean() < 0.01, (seed, diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("size", [512, 96])
def test_fast_model_input_is_within_a_grey_level(clips, size):
    """Enlarging, OpenCV's uint8 bilinear against the float resize: within 0.76 grey levels measured (its 11-bit
    weights and the rounding to uint8); shrinking, PIL's antialiased resize on uint8 against torchvision's on
    floats: the same filter, rounded."""
    frames = clips[0].frames
    exact, fast = preprocess_frames(frames, size), preprocess_frames(frames, size, exact=False)
    diff = ((exact - fast) * GREY_LEVELS).abs()
    assert diff.max() < 1.0 and diff.mean() < 0.4, (diff.max(), diff.mean())


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="loader workers fork only where fork exists")
def test_fast_kernels_run_in_a_forked_worker(clips):
    """Loader workers are forked after the parent may have run OpenCV's thread pool; OpenCV must still work in them
    (reconfiguring its pool there, ``cv2.setNumThreads``, deadlocks: segfit never does)."""
    spec = VideoAugmentSpec()
    augment_clip(clips[0], spec, 0)
    worker = mp.get_context("fork").Process(target=augment_clip, args=(clips[0], spec, 1))
    worker.start()
    worker.join(120)
    hung = worker.is_alive()
    if hung:
        worker.kill()
    assert not hung and worker.exitcode == 0


def test_backend_key_defaults_to_fast_and_is_checked():
    assert load_spec(None, ["model.name=sam2"]).data.video.augment.backend == "fast"
    spec = load_spec(None, ["model.name=sam2", "data.video.augment.backend=reference"])
    assert spec.data.video.augment.backend == "reference"
    with pytest.raises(SpecError, match="data.video.augment.backend"):
        load_spec(None, ["model.name=sam2", "data.video.augment.backend=opencv"])
