"""Clip sampling: consecutive annotated frames, a visible first frame, object subsets, time reversal, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfit.data.formats import open_video_split
from segfit.data.records import DataError
from segfit.data.sampling import choose_clip, sample_clip
from segfit.data.synthetic import write_synthetic_videos, write_synthetic_images
from segfit.spec.schema import SplitSpec


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> SplitSpec:
    """Synthetic videos of 12 frames annotated every 2nd frame (6 annotated), up to 4 objects."""
    root = tmp_path_factory.mktemp("sparse")
    paths = write_synthetic_videos(root, num_train=3, num_val=0, size=(48, 64), num_frames=12, max_objects=4,
                                   ann_every=2, seed=5)
    return SplitSpec(format="davis", images=str(paths["train_images"]), annotations=str(paths["train_annotations"]))


def test_clips_are_consecutive_annotated_frames_starting_with_their_objects(sparse):
    reader = open_video_split(sparse)
    starts, sizes = set(), set()
    for seed in range(40):
        clip = choose_clip(reader, seed % 3, seed, num_frames=3, max_num_objects=2)
        assert len(clip.frames) == 3 and np.all(np.diff(clip.frames) == 2)  # every annotated frame, forwards
        visible = reader.objects(seed % 3, clip.frames[0])
        assert set(clip.objects) <= set(visible) and len(clip.objects) == min(2, len(visible))
        assert list(clip.objects) == sorted(clip.objects)
        starts.add(clip.frames[0])
        sizes.add(len(clip.objects))
    assert starts == {0, 2, 4, 6} and sizes == {1, 2}


def test_same_seed_same_clip(sparse):
    reader = open_video_split(sparse)
    first = sample_clip(reader, 1, seed=7, num_frames=4, reverse_time_prob=0.5)
    second = sample_clip(reader, 1, seed=7, num_frames=4, reverse_time_prob=0.5)
    assert first.frame_names == second.frame_names and first.object_ids == second.object_ids
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.masks, second.masks)
    clips = {choose_clip(reader, 1, seed, num_frames=2, reverse_time_prob=0.5) for seed in range(30)}
    assert len(clips) > 4


def test_sampled_clip_holds_its_frames_and_objects(sparse):
    reader = open_video_split(sparse)
    clip = choose_clip(reader, 2, seed=3, num_frames=4, max_num_objects=3)
    record = sample_clip(reader, 2, seed=3, num_frames=4, max_num_objects=3)
    full = reader.load(2)
    assert record.object_ids == clip.objects and record.frames.shape[0] == 4 and record.annotated.all()
    np.testing.assert_array_equal(record.frames, full.frames[list(clip.frames)])
    columns = [full.object_ids.index(i) for i in clip.objects]
    np.testing.assert_array_equal(record.masks, full.masks[list(clip.frames)][:, columns])
    assert record.masks[0].any(axis=(1, 2)).all()  # every object shows in the first frame


def test_time_reversal(sparse):
    reader = open_video_split(sparse)
    directions = {np.sign(np.diff(choose_clip(reader, 0, seed, 3, reverse_time_prob=0.5).frames)).sum()
                  for seed in range(30)}
    assert directions == {-2, 2}
    assert all(np.all(np.diff(choose_clip(reader, 0, seed, 3, reverse_time_prob=1.0).frames) == -2)
               for seed in range(10))


def _video_with_objects_in(root: Path, frames_with_object: set[int], count: int = 5) -> SplitSpec:
    for t in range(count):
        (root / "JPEGImages/v").mkdir(parents=True, exist_ok=True)
        (root / "Annotations/v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / f"JPEGImages/v/{t:05d}.jpg")
        ids = np.zeros((8, 8), np.uint8)
        if t in frames_with_object:
            ids[2:5, 2:5] = 1
        Image.fromarray(ids).save(root / f"Annotations/v/{t:05d}.png")
    return SplitSpec(format="davis", images=str(root / "JPEGImages"), annotations=str(root / "Annotations"))


def test_first_frame_must_show_an_object(tmp_path):
    reader = open_video_split(_video_with_objects_in(tmp_path / "late", {3, 4}))
    assert {choose_clip(reader, 0, seed, num_frames=2).frames for seed in range(10)} == {(3, 4)}
    assert {choose_clip(reader, 0, seed, 2, reverse_time_prob=1.0).frames for seed in range(20)} == {(3, 2), (4, 3)}
    reader = open_video_split(_video_with_objects_in(tmp_path / "last", {4}))
    assert {choose_clip(reader, 0, seed, 2, reverse_time_prob=0.5).frames for seed in range(10)} == {(4, 3)}
    reader = open_video_split(_video_with_objects_in(tmp_path / "never", set()))
    with pytest.raises(DataError, match="no window of 2 annotated frames starts with a visible object"):
        choose_clip(reader, 0, 0, num_frames=2)


def test_too_few_annotated_frames(sparse):
    reader = open_video_split(sparse)
    with pytest.raises(DataError) as caught:
        choose_clip(reader, 0, 0, num_frames=7)
    assert caught.value.path.endswith("video_000") and "6 annotated frame(s), fewer than" in caught.value.problem
    with pytest.raises(ValueError, match="num_frames"):
        choose_clip(reader, 0, 0, num_frames=0)


def test_images_give_one_frame_clips(tmp_path):
    paths = write_synthetic_images(tmp_path, "labpics", num_train=2, num_val=0, size=(32, 48), max_objects=5, seed=1)
    reader = open_video_split(SplitSpec(images=str(paths["train_images"]), annotations=str(paths["train_annotations"])))
    clip = sample_clip(reader, 0, seed=0, num_frames=1, max_num_objects=2)
    assert clip.frames.shape == (1, 32, 48, 3) and 1 <= len(clip.object_ids) <= 2
    with pytest.raises(DataError, match="fewer than the clip's num_frames=8"):
        sample_clip(reader, 0, seed=0)
