"""SA-V reader on hand-made masklet JSONs: frame numbers ↔ masklet entries, null entries, exact masks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segfit.data.formats import open_video_split
from segfit.data.records import DataError
from segfit.data.sampling import sample_clip
from segfit.spec.schema import SplitSpec

H, W = 16, 20


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _box(t: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[2:6, t:t + 4] = True
    return mask


def _sav(root: Path, name: str = "sav_001", numbers: range = range(9), entries: list | None = None) -> SplitSpec:
    """Frames ``numbers``; masklet entries every 4 frames: object 7 a box moving right, object 9 a square that is
    null (unannotated) in the third entry."""
    (root / "frames" / name).mkdir(parents=True, exist_ok=True)
    (root / "json").mkdir(exist_ok=True)
    for number in numbers:
        Image.fromarray(np.full((H, W, 3), number, np.uint8)).save(root / "frames" / name / f"{number:05d}.jpg")
    square = np.zeros((H, W), bool)
    square[10:14, 10:14] = True
    if entries is None:
        entries = [[_rle(_box(k)), _rle(square)] for k in range(2)] + [[_rle(_box(2)), None]]
    (root / "json" / f"{name}_manual.json").write_text(json.dumps({"video_id": name, "masklet": entries,
                                                                   "masklet_id": [7, 9]}))
    return SplitSpec(format="sav", images=str(root / "frames"), annotations=str(root / "json"))


def test_masklets_land_on_their_frames(tmp_path):
    reader = open_video_split(_sav(tmp_path))
    info = reader.info(0)
    assert info.name == "sav_001" and len(info.frame_names) == 9 and info.annotated == (0, 4)  # entry 2 holds a null
    video = reader.load(0)
    assert video.object_ids == (7, 9) and video.annotated.tolist() == [t in (0, 4) for t in range(9)]
    np.testing.assert_array_equal(video.masks[4, 0], _box(1))
    assert video.masks[4, 1].sum() == 16 and not video.masks[[1, 2, 3, 5, 6, 7, 8]].any()
    assert reader.objects(0, 4) == [7, 9] and reader.objects(0, 8) == []
    clip = sample_clip(reader, 0, seed=0, num_frames=2, max_num_objects=1)
    assert clip.frame_names == ("00000.jpg", "00004.jpg") and len(clip.object_ids) == 1


def test_frames_extracted_every_fourth(tmp_path):
    reader = open_video_split(_sav(tmp_path, numbers=range(0, 9, 4)))
    assert reader.info(0).frame_names == ("00000.jpg", "00004.jpg", "00008.jpg") and reader.info(0).annotated == (0, 1)
    np.testing.assert_array_equal(reader.load(0, frames=[1], objects=[7]).masks[0, 0], _box(1))
    split = _sav(tmp_path / "every", numbers=range(3))
    every = SplitSpec(format="sav", images=split.images, annotations=split.annotations, ann_every=1)
    assert open_video_split(every).info(0).annotated == (0, 1)


@pytest.mark.parametrize("case, problem", [
    ("no json", "masklet JSON (<video>_manual.json) not found"),
    ("bad json", "invalid JSON"),
    ("no masklet", "missing list 'masklet'"),
    ("wrong size", "frame 4, object 9: RLE size [15, 20] differs"),
    ("missing frame", "masklet entries of frame(s) [8]"),
    ("never appears", "object 9 never appears"),
])
def test_bad_videos_name_the_json(tmp_path, case, problem):
    split = _sav(tmp_path, numbers=range(8) if case == "missing frame" else range(9))
    path = tmp_path / "json/sav_001_manual.json"
    square = np.zeros((H, W), bool)
    square[1:3, 1:3] = True
    if case == "no json":
        path.unlink()
    elif case == "bad json":
        path.write_text("{")
    elif case == "no masklet":
        path.write_text(json.dumps({"masks": 3}))
    elif case == "wrong size":
        path.write_text(json.dumps({"masklet": [[_rle(_box(0)), _rle(square)], [_rle(_box(1)), _rle(square[1:])]],
                                    "masklet_id": [7, 9]}))
    elif case == "never appears":
        path.write_text(json.dumps({"masklet": [[_rle(_box(0)), _rle(np.zeros((H, W)))]], "masklet_id": [7, 9]}))
    with pytest.raises(DataError) as caught:
        open_video_split(split).load(0)
    assert caught.value.path == str(path) and problem in caught.value.problem


def test_missing_frame_folder(tmp_path):
    split = _sav(tmp_path)
    (tmp_path / "json/sav_002_manual.json").write_text(json.dumps({"masklet": []}))
    reader = open_video_split(split)
    assert len(reader) == 2
    with pytest.raises(DataError, match="frame folder of video sav_002 not found .* extract-frames"):
        reader.info(1)
