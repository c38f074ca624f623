"""Malformed datasets that crashed a reader, hung it or let it read outside the dataset before the reader fix, each
found by ``test_fuzz_readers.py``; now each is a ``DataError`` naming the bad file (or, where the data is usable,
a correct read)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fuzz_files
from fuzz_files import encode, png_header_only, read_guarded
from segfit.data.formats import open_split, open_video_split
from segfit.data.formats.segments import SegmentReader, SegmentSplit
from segfit.data.formats.tracking import open_tracking_split
from segfit.data.image_io import read_image
from segfit.data.records import DataError
from segfit.spec.schema import SplitSpec
from segfit.spec.tracking import TrackingSplitSpec

PIXELS = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)


@pytest.fixture
def place(tmp_path) -> tuple[Path, Path]:
    """(dataset root, a folder beside it holding a valid image that no reader may open)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(encode(PIXELS))
    (tmp_path / "ds").mkdir()
    return tmp_path / "ds", tmp_path / "outside"


def _write(path: Path, data: bytes | str | object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _coco(root: Path, file_name: object = "a.png", segmentation: object = (), image_id: object = 1) -> SplitSpec:
    _write(root / "images" / "a.png", encode(PIXELS))
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}] if segmentation else []
    _write(root / "ann.json", {"images": [{"id": image_id, "file_name": file_name, "height": 3, "width": 4}],
                               "annotations": annotations})
    return SplitSpec(format="coco", images=str(root / "images"), annotations=str(root / "ann.json"))


def _load_all(split: SplitSpec) -> None:
    reader = open_split(split, min_object_area=0)
    for i in range(len(reader)):
        reader.load(i)


def test_far_off_or_nan_polygon_points_are_errors_not_a_crash(place):
    # pycocotools killed the process (segmentation fault) on 1e300 and drew a full mask for NaN
    root, outside = place
    for value in (1e300, float("nan"), float("inf")):
        split = _coco(root, segmentation=[[0, 0, value, 1, 1, 1]])
        err = read_guarded(lambda: _load_all(split), root, outside)
        assert err is not None and err.path == str(root / "ann.json") and "polygon 0" in err.problem


@pytest.mark.parametrize("name", ["../outside/secret.png", "{outside}/secret.png", "a\x00.png", "", 7])
def test_coco_file_names_out_of_the_dataset_are_errors_naming_the_json(place, name):
    root, outside = place
    name = name.format(outside=outside) if isinstance(name, str) else name
    err = read_guarded(lambda: _load_all(_coco(root, file_name=name)), root, outside)
    assert err is not None and err.path == str(root / "ann.json")


def test_a_symlink_out_of_the_dataset_is_an_error_naming_the_link(place):
    root, outside = place
    _write(root / "images" / "a.png", encode(PIXELS))
    (root / "masks").mkdir()
    (root / "masks" / "a.png").symlink_to(outside / "secret.png")
    split = SplitSpec(format="labpics", images=str(root / "images"), annotations=str(root / "masks"))
    err = read_guarded(lambda: _load_all(split), root, outside)
    assert err is not None and err.path == str(root / "masks" / "a.png") and "outside the dataset" in err.problem


def test_a_spec_folder_may_itself_be_a_symlink(place):
    root, outside = place
    (root / "images").symlink_to(outside)
    _write(root / "ann.json", {"images": [{"id": 1, "file_name": "secret.png", "height": 3, "width": 4}],
                               "annotations": []})
    record = open_split(SplitSpec(format="coco", images=str(root / "images"), annotations=str(root / "ann.json"))).load(0)
    np.testing.assert_array_equal(record.image, PIXELS)


def test_ade_paths_that_leave_the_root_and_non_utf8_jsonl_are_errors(place):
    root, outside = place
    jsonl = _write(root / "list.jsonl", json.dumps({"img": "../outside/secret.png", "segm": "../outside/secret.png"}))
    split = SegmentSplit(format="ade", annotations=str(jsonl), root=str(root))
    assert read_guarded(lambda: SegmentReader(split).load(0), root, outside).path == str(jsonl)
    _write(jsonl, b'\x80{"img": "a.png"}')
    assert "UTF-8" in read_guarded(lambda: SegmentReader(split), root, outside).problem


def test_coco_ids_that_are_lists_and_rle_counts_past_int64_are_errors(place):
    root, outside = place
    split = _coco(root, image_id=[1])  # was TypeError: unhashable type: 'list'
    assert read_guarded(lambda: _load_all(split), root, outside).path == str(root / "ann.json")
    for counts in ([2**70], "z" * 9 + "0"):  # OverflowError; a compressed number past int64 wrapped around
        split = _coco(root, segmentation={"size": [3, 4], "counts": counts})
        assert read_guarded(lambda: _load_all(split), root, outside).path == str(root / "ann.json")


def test_panoptic_png_is_decoded_strictly_and_segments_info_checked(place):
    root, outside = place
    png = encode(np.zeros((3, 4, 3), np.uint8))
    _write(root / "images" / "a.png", encode(PIXELS))
    _write(root / "panoptic" / "a.png", png[:-20])  # truncated: Pillow's lazy open read it as all void
    _write(root / "pan.json", {"images": [{"id": 1, "file_name": "a.png"}],
                               "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": []}]})
    split = SegmentSplit(format="coco_panoptic", images=str(root / "images"), annotations=str(root / "pan.json"),
                         masks=str(root / "panoptic"))
    assert read_guarded(lambda: SegmentReader(split).load(0), root, outside).path == str(root / "panoptic" / "a.png")
    _write(root / "pan.json", {"images": [{"id": 1, "file_name": "a.png"}],
                               "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": 5}]})
    assert "segments_info" in read_guarded(lambda: SegmentReader(split), root, outside).problem


@pytest.mark.parametrize("size", [(10_000, 10_000), (100_000, 100_000)])
def test_a_decompression_bomb_is_an_error_not_a_warning(tmp_path, size, recwarn):
    # 10 000² is between Pillow's limit and twice it: Pillow only warned and went on to decode
    path = _write(tmp_path / "bomb.png", png_header_only(*size))
    with pytest.raises(DataError, match="MAX_IMAGE_PIXELS") as err:
        read_image(path)
    assert err.value.path == str(path) and not recwarn.list


def test_an_image_mode_pillow_cannot_convert_is_an_error(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.png", encode(PIXELS))
    monkeypatch.setattr(Image.Image, "convert", lambda self, mode: (_ for _ in ()).throw(ValueError("La to RGB")))
    with pytest.raises(DataError, match="cannot convert image mode"):
        read_image(path)


def test_sav_objects_does_not_decode_a_mask_of_the_size_the_json_claims(place):
    root, outside = place
    _write(root / "v" / "00000.jpg", encode(PIXELS, fmt="JPEG"))
    big = {"size": [100_000, 100_000], "counts": [10**10]}  # decoding it took 10 GB
    _write(root / "v_manual.json", {"masklet": [[big]]})
    reader = open_video_split(SplitSpec(format="sav", images=str(root)))
    assert reader.objects(0, 0) == []
    err = read_guarded(lambda: reader.load(0), root, outside)
    assert err.path == str(root / "v_manual.json") and "differs from the image" in err.problem


def test_sav_masklet_ids_that_are_not_integers_fall_back_to_positions(place):
    # set() of [[], 5] raised TypeError: unhashable type: 'list' before the ids' types were checked
    root, outside = place
    _write(root / "v" / "00000.jpg", encode(PIXELS, fmt="JPEG"))
    rle = {"size": [3, 4], "counts": [0, 12]}
    _write(root / "v_manual.json", {"masklet": [[rle, rle]], "masklet_id": [[], 5]})
    reader = open_video_split(SplitSpec(format="sav", images=str(root)))
    assert read_guarded(lambda: reader.load(0), root, outside) is None
    assert reader.load(0).object_ids == (0, 1)


def _got10k(root: Path, groundtruth: bytes, **files: bytes) -> TrackingSplitSpec:
    _write(root / "seq" / "00000001.jpg", encode(PIXELS, fmt="JPEG"))
    _write(root / "seq" / "groundtruth.txt", groundtruth)
    for name, data in files.items():
        _write(root / name.replace("__", "/").replace("_", "."), data)
    return TrackingSplitSpec(format="got10k", images=str(root))


@pytest.mark.parametrize("groundtruth, files, problem", [
    (b"\xff1,1,2,2", {}, "UTF-8"),
    (b"1,1,2,2", {"seq__cover_label": b"inf"}, "integers"),  # was OverflowError
    (b"1,1,2,2", {"list_txt": b"../outside"}, "leaves the dataset"),
])
def test_got10k_bad_text_flags_and_names_are_errors(place, groundtruth, files, problem):
    root, outside = place
    split = _got10k(root, groundtruth, **files)
    assert problem in read_guarded(lambda: open_tracking_split(split), root, outside).problem


def test_nan_boxes_read_as_unusable_frames(place):
    root, outside = place
    split = _got10k(root, b"nan,nan,nan,nan")
    assert read_guarded(lambda: open_tracking_split(split), root, outside) is None
    assert open_tracking_split(split)[0].usable.size == 0


def test_lasot_class_folder_linked_out_is_not_listed(place):
    root, outside = place
    os.symlink(outside, root / "cat")  # glob() listed the folder outside
    err = read_guarded(lambda: open_tracking_split(TrackingSplitSpec(format="lasot", images=str(root))), root, outside)
    assert err.path == str(root / "cat")


@pytest.mark.parametrize("train_json", [None, {"v": {"00": {"000001": 5}}}, {"v": {"00": {"²": [1, 2]}}},
                                        {"../../outside": {"00": {"000001": [1, 2]}}}])
def test_pysot_json_of_the_wrong_shape_is_an_error(place, train_json):
    # AttributeError (null), TypeError (a number for a box), ValueError from int("²"), a video folder outside the crops
    root, outside = place
    _write(root / "train.json", train_json)
    (root / "crop511").mkdir()
    split = TrackingSplitSpec(format="pysot", images=str(root / "crop511"), annotations=str(root / "train.json"))
    assert read_guarded(lambda: open_tracking_split(split), root, outside).path == str(root / "train.json")


@pytest.mark.parametrize("name", [".", "/"])
def test_names_that_are_folders_are_errors(place, name):
    # "." made PurePosixPath.with_suffix raise a bare ValueError while COCO stems and file_list_txt names were made
    root, outside = place
    err = read_guarded(lambda: _load_all(_coco(root, file_name=name)), root, outside)
    assert err.path == str(root / "ann.json")
    list_txt = _write(root / "list.txt", f"{name}\n")
    split = SplitSpec(format="coco", images=str(root / "images"), annotations=str(root / "ann.json"),
                      file_list_txt=str(list_txt))
    _coco(root)
    assert read_guarded(lambda: _load_all(split), root, outside).path == str(list_txt)


def test_the_guard_fails_reads_outside_the_dataset_and_hangs(place, monkeypatch):
    """The fuzz tests' guard itself: a read that escapes or hangs fails, whatever it returns."""
    root, outside = place
    (root / "link.png").symlink_to(outside / "secret.png")
    with pytest.raises(AssertionError, match="read outside the dataset"):
        read_guarded(lambda: read_image(root / "link.png"), root, outside)
    monkeypatch.setattr(fuzz_files, "TIME_LIMIT_S", 0.05)
    with pytest.raises(fuzz_files.Hang):
        read_guarded(lambda: time.sleep(5), root, outside)

    def elsewhere() -> None:
        raise DataError("elsewhere", "bad")
    with pytest.raises(AssertionError, match="naming no file"):
        read_guarded(elsewhere, root, outside)
