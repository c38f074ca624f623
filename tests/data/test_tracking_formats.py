"""Sequence readers (GOT-10k, LaSOT, pysot train.json + crop511), synthetic tracking data and their data check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfit.data.check import check_tracking_split
from segfit.data.formats.tracking import open_tracking_split
from segfit.data.records import DataError
from segfit.data.synthetic_tracking import write_synthetic_tracking
from segfit.spec.tracking import TrackingSplitSpec


def _frames(folder: Path, count: int, size: tuple[int, int] = (40, 50)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        Image.fromarray(np.full((*size, 3), 10 * t, np.uint8)).save(folder / f"{t + 1:08d}.jpg")


def test_got10k_reads_boxes_and_hides_absent_and_covered_frames(tmp_path):
    seq = tmp_path / "GOT-10k_Train_000001"
    _frames(seq, 3)
    (seq / "groundtruth.txt").write_text("1,2,10,12\n3,4,10,12\n5,6,11,13\n")
    (seq / "absence.label").write_text("0\n1\n0\n")
    (seq / "cover.label").write_text("8\n0\n0\n")
    (sequence,) = open_tracking_split(TrackingSplitSpec(format="got10k", images=str(tmp_path)))
    assert sequence.name == "GOT-10k_Train_000001" and len(sequence.frames) == 3
    np.testing.assert_array_equal(sequence.boxes[2], [5, 6, 11, 13])
    assert sequence.visible.tolist() == [True, False, False] and sequence.usable.tolist() == [0]


def test_lasot_reads_class_folders_and_occlusion_flags(tmp_path):
    seq = tmp_path / "airplane" / "airplane-1"
    _frames(seq / "img", 2)
    (seq / "groundtruth.txt").write_text("1,2,10,12\n0,0,0,0\n")
    (seq / "full_occlusion.txt").write_text("0,1")
    (seq / "out_of_view.txt").write_text("0,0")
    (sequence,) = open_tracking_split(TrackingSplitSpec(format="lasot", images=str(tmp_path)))
    assert sequence.name == "airplane-1" and sequence.visible.tolist() == [True, False]


def test_pysot_json_gives_one_cropped_sequence_per_track_without_zero_boxes(tmp_path):
    anno = {"a/vid1": {"00": {"000002": [10, 10, 30, 50], "000000": [0, 0, 20, 20], "000001": [5, 5, 5, 9]},
                       "01": {"000000": [40, 60]}}}
    (tmp_path / "train.json").write_text(json.dumps(anno))
    split = TrackingSplitSpec(format="pysot", images=str(tmp_path / "crop511"), annotations=str(tmp_path / "train.json"))
    (tmp_path / "crop511").mkdir()
    first, second = open_tracking_split(split)
    assert first.name == "a/vid1/00" and first.cropped
    assert [Path(f).name for f in first.frames] == ["000000.00.x.jpg", "000002.00.x.jpg"]  # sorted; zero width dropped
    np.testing.assert_array_equal(first.boxes[:, 2:], [[20, 20], [20, 40]])
    np.testing.assert_array_equal(second.boxes, [[0, 0, 40, 60]])


def test_missing_folders_and_bad_boxes_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="images folder not found"):
        open_tracking_split(TrackingSplitSpec(images=str(tmp_path / "nope")))
    seq = tmp_path / "s"
    _frames(seq, 1)
    (seq / "groundtruth.txt").write_text("1,2,3\n")
    with pytest.raises(DataError, match="expected x, y, w, h"):
        open_tracking_split(TrackingSplitSpec(images=str(tmp_path)))


@pytest.mark.parametrize(("anno", "problem"), [([["a", 1]], "expected {video: {track: {frame: box}}}"),
                                               ({"v": {"00": [1, 2]}}, "expected {video"),
                                               ({"v": {"00": {"000000": ["1", 2, 3, 4]}}}, "not a list of numbers"),
                                               ({"v": {"00": {"000000": [1, 2, 3]}}}, "neither")])
def test_a_malformed_train_json_is_a_data_error_naming_it(tmp_path, anno, problem):
    (tmp_path / "train.json").write_text(json.dumps(anno))
    split = TrackingSplitSpec(format="pysot", images=str(tmp_path), annotations=str(tmp_path / "train.json"))
    with pytest.raises(DataError, match="train.json") as err:
        open_tracking_split(split)
    assert problem in err.value.problem


def test_check_names_every_bad_sequence(tmp_path):
    cases = {"good": "1,2,10,12\n3,4,10,12\n", "nan": "1,2,10,12\nnan,nan,nan,nan\n",
             "negative": "1,2,-3,12\n3,4,10,12\n", "outside": "45,2,10,12\n3,4,10,12\n", "short": "1,2,10,12\n" * 3}
    for name, boxes in cases.items():
        _frames(tmp_path / name, 2)
        (tmp_path / name / "groundtruth.txt").write_text(boxes)
    report = check_tracking_split("train", TrackingSplitSpec(images=str(tmp_path)))
    found = {Path(path).name: problem for path, problem in report.problems}
    assert set(found) == {"nan", "negative", "outside", "short"}
    assert "NaN" in found["nan"] and "negative" in found["negative"] and "outside" in found["outside"]
    assert "frames are missing" in found["short"]
    assert report.num_sequences == 5 and report.num_loaded == 4 and not report.ok


def test_synthetic_sequences_are_valid_and_reproducible(tmp_path):
    paths = write_synthetic_tracking(tmp_path / "a", num_train=2, num_val=1, size=(48, 64), num_frames=6, seed=3)
    again = write_synthetic_tracking(tmp_path / "b", num_train=2, num_val=1, size=(48, 64), num_frames=6, seed=3)
    report = check_tracking_split("train", TrackingSplitSpec(images=str(paths["train_images"])))
    assert report.ok and report.num_sequences == 2 and report.num_frames == 12
    first, copy = (open_tracking_split(TrackingSplitSpec(images=str(p["train_images"])))[0] for p in (paths, again))
    np.testing.assert_array_equal(first.boxes, copy.boxes)
    assert (first.boxes[:, 2:] > 0).all() and len(first.boxes) == 6
