"""Synthetic datasets: deterministic, learnable-looking, and read back exactly by every format reader."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest

from segfit.data.formats import open_split, open_video_split
from segfit.data.synthetic import (
    MIN_VISIBLE_PIXELS,
    render_scene,
    render_video,
    write_synthetic_images,
    write_synthetic_videos,
)
from segfit.spec.schema import SplitSpec

SIZE = (64, 96)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["labpics", "coco", "sa1b"])
def test_round_trip_through_the_reader(tmp_path, fmt):
    paths = write_synthetic_images(tmp_path, fmt, num_train=4, num_val=2, size=SIZE, max_objects=4, seed=3)
    assert set(paths) == {"train_images", "train_annotations", "val_images", "val_annotations"}
    assert "synthetic" in (tmp_path / "README.txt").read_text().lower()
    for split_number, name, count in ((0, "train", 4), (1, "val", 2)):
        split = SplitSpec(format=fmt, images=str(paths[f"{name}_images"]),
                          annotations=str(paths[f"{name}_annotations"]))
        reader = open_split(split)
        assert len(reader) == count
        for i in range(count):
            image, ids = render_scene(np.random.default_rng([3, split_number, i]), SIZE, 4)
            record = reader.load(i)
            expected = np.stack([ids == k for k in range(1, ids.max() + 1)])
            np.testing.assert_array_equal(record.masks, expected)
            assert np.abs(record.image.astype(int) - image).mean() < 10  # JPEG (q95) smooths the pixel noise


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    write_synthetic_images(tmp_path / "a", "coco", num_train=3, num_val=1, size=SIZE, seed=1)
    write_synthetic_images(tmp_path / "b", "coco", num_train=3, num_val=1, size=SIZE, seed=1)
    write_synthetic_images(tmp_path / "c", "coco", num_train=3, num_val=1, size=SIZE, seed=2)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert set(a) - {"README.txt"} == set(b) - {"README.txt"} and all(a[k] == b[k] for k in a if k != "README.txt")
    assert a["train/annotations.json"] != c["train/annotations.json"]


def test_scenes_vary_and_objects_stand_out():
    counts, contrasts = [], []
    for i in range(30):
        image, ids = render_scene(np.random.default_rng(i), SIZE, 5)
        values = np.unique(ids)
        assert values[0] == 0 and list(values[1:]) == list(range(1, len(values)))  # ids 1..N, no gaps
        areas = [(ids == k).sum() for k in values[1:]]
        assert min(areas[:-1], default=MIN_VISIBLE_PIXELS) >= MIN_VISIBLE_PIXELS  # the top one is always kept
        counts.append(len(values) - 1)
        saturation = np.array([colorsys.rgb_to_hsv(*p)[1] for p in image.reshape(-1, 3)[::7] / 255.0])
        on_object = (ids.reshape(-1)[::7] > 0)
        contrasts.append(saturation[on_object].mean() - saturation[~on_object].mean())
    assert min(counts) >= 1 and max(counts) <= 5 and len(set(counts)) >= 3
    assert np.mean(contrasts) > 0.3 and min(contrasts) > 0.1


def test_no_val_split_and_bad_arguments(tmp_path):
    paths = write_synthetic_images(tmp_path, "labpics", num_train=1, num_val=0, size=SIZE)
    assert set(paths) == {"train_images", "train_annotations"} and not (tmp_path / "val").exists()
    with pytest.raises(ValueError, match="formats: coco, labpics, sa1b"):
        write_synthetic_images(tmp_path, "voc")
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_images(tmp_path, num_train=0)


# ---- videos ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["palette", "per_object"])
def test_videos_round_trip_through_the_davis_reader(tmp_path, layout):
    size = (40, 56)
    paths = write_synthetic_videos(tmp_path, num_train=2, num_val=1, size=size, num_frames=6, max_objects=3,
                                   ann_every=2, layout=layout, seed=4)
    assert set(paths) == {"train_images", "train_annotations", "val_images", "val_annotations"}
    assert "format: davis" in (tmp_path / "README.txt").read_text()
    for split_number, name, count in ((0, "train", 2), (1, "val", 1)):
        reader = open_video_split(SplitSpec(format="davis", images=str(paths[f"{name}_images"]),
                                            annotations=str(paths[f"{name}_annotations"])))
        assert len(reader) == count
        for i in range(count):
            frames, ids = render_video(np.random.default_rng([4, split_number, i]), size, 6, 3)
            video = reader.load(i)
            assert reader.info(i).annotated == (0, 2, 4) and video.annotated.tolist() == [1, 0, 1, 0, 1, 0]
            objects = np.arange(1, ids.max() + 1)
            assert video.object_ids == tuple(objects)
            expected = ids[:, None] == objects[None, :, None, None]
            np.testing.assert_array_equal(video.masks[::2], expected[::2])
            assert not video.masks[1::2].any()
            assert np.abs(video.frames.astype(int) - frames).mean() < 10  # JPEG (q95)


def test_videos_move_and_are_deterministic(tmp_path):
    moving = 0
    for i in range(10):
        _, ids = render_video(np.random.default_rng(i), (48, 64), 8, 3)
        assert set(np.unique(ids[0])) == set(range(ids.max() + 1))  # every object shows in the first frame
        moving += any(not np.array_equal(ids[0] == k, ids[-1] == k) for k in range(1, ids.max() + 1))
    assert moving >= 8
    write_synthetic_videos(tmp_path / "a", num_train=1, num_val=1, size=(32, 32), num_frames=3, seed=1)
    write_synthetic_videos(tmp_path / "b", num_train=1, num_val=1, size=(32, 32), num_frames=3, seed=1)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == set(b) and all(a[k] == b[k] for k in a if k != "README.txt")
    with pytest.raises(ValueError, match="ann_every"):
        write_synthetic_videos(tmp_path, ann_every=0)
    with pytest.raises(ValueError, match="layout"):
        write_synthetic_videos(tmp_path, layout="coco")
