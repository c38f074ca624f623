"""Format readers on hand-made files: exact masks, lazy indexing, file lists, and a DataError for each bad file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segfit.data.formats import open_split
from segfit.data.formats.coco import _compressed_runs
from segfit.data.records import DataError
from segfit.data.safe import SafeReader
from segfit.spec.schema import SplitSpec

H, W = 30, 40


def _image(path: Path, size: tuple[int, int] = (H, W), seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _map(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8)).save(path)


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], edges])).tolist()}


def _box(y0: int, y1: int, x0: int, x1: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ---- labpics -----------------------------------------------------------------------------------------------
@pytest.fixture
def labpics(tmp_path) -> SplitSpec:
    """a.jpg: ids 1 (big), 5 (big), 9 (2 px); b.png: no object; c.bmp: one object."""
    ids = np.zeros((H, W), np.uint8)
    ids[2:10, 3:15], ids[12:25, 20:38], ids[28, 0:2] = 1, 5, 9
    _image(tmp_path / "images/a.jpg")
    _map(tmp_path / "maps/a.png", ids)
    _image(tmp_path / "images/b.png")
    _map(tmp_path / "maps/b.png", np.zeros((H, W)))
    _image(tmp_path / "images/c.bmp")
    _map(tmp_path / "maps/c.png", _box(0, 5, 0, 5) * 3)
    return SplitSpec(format="labpics", images=str(tmp_path / "images"), annotations=str(tmp_path / "maps"))


def test_labpics_masks_are_exact_and_small_objects_dropped(labpics, tmp_path):
    reader = open_split(labpics, min_object_area=3)
    assert len(reader) == 3 and reader.source(0) == str(tmp_path / "images/a.jpg")
    a = reader.load(0)
    np.testing.assert_array_equal(a.masks, np.stack([_box(2, 10, 3, 15), _box(12, 25, 20, 38)]))
    assert a.image.shape == (H, W, 3) and a.ignore is None
    assert reader.load(1).masks.shape == (0, H, W)
    assert len(reader.load(2).masks) == 1
    assert len(open_split(labpics, min_object_area=1).load(0).masks) == 3


def test_labpics_channels_from_spec(tmp_path):
    _image(tmp_path / "images/x.jpg")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[0:10, 0:10, 2] = 4   # material (blue)
    rgb[5:20, 5:25, 0] = 4   # vessel (red) with the same value
    (tmp_path / "maps").mkdir()
    Image.fromarray(rgb).save(tmp_path / "maps/x.png")
    split = SplitSpec(format="labpics", images=str(tmp_path / "images"), annotations=str(tmp_path / "maps"),
                      map_channels=["blue", "red"])
    masks = open_split(split).load(0).masks
    vessel = _box(5, 20, 5, 25) & ~_box(0, 10, 0, 10)
    np.testing.assert_array_equal(masks, np.stack([_box(0, 10, 0, 10), vessel]))


def test_labpics_size_mismatch_names_both_files(labpics, tmp_path):
    _map(tmp_path / "maps/a.png", np.zeros((H + 1, W)))
    with pytest.raises(DataError) as err:
        open_split(labpics).load(0)
    assert err.value.path == str(tmp_path / "maps/a.png")
    assert str(tmp_path / "images/a.jpg") in err.value.problem and f"{H + 1}×{W}" in err.value.problem
    assert f"{H}×{W}" in err.value.problem


def test_labpics_missing_map_and_folders(labpics, tmp_path):
    (tmp_path / "maps/b.png").unlink()
    reader = open_split(labpics)  # lazy: indexing does not open the maps
    with pytest.raises(DataError, match="no annotation map") as err:
        reader.load(1)
    assert err.value.path == str(tmp_path / "maps/b.png")
    with pytest.raises(DataError, match="images folder not found"):
        open_split(SplitSpec(format="labpics", images=str(tmp_path / "nope"), annotations=labpics.annotations))
    with pytest.raises(DataError, match="annotations folder") as err:
        open_split(SplitSpec(format="labpics", images=labpics.images, annotations=str(tmp_path / "nope")))
    assert err.value.path == str(tmp_path / "nope")


def test_unknown_format_lists_formats(labpics):
    with pytest.raises(ValueError, match="coco, labpics, sa1b"):
        open_split(SplitSpec(format="yolo", images=labpics.images))  # type: ignore[arg-type]


def test_file_list_selects_in_list_order(labpics, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# chosen images\n\nc.bmp\n  a  \na\n")
    labpics.file_list_txt = str(listing)
    reader = open_split(labpics)
    assert [Path(reader.source(i)).name for i in range(len(reader))] == ["c.bmp", "a.jpg"]
    listing.write_text("a\nzzz\n")
    with pytest.raises(DataError, match="line 2: 'zzz'") as err:
        open_split(labpics)
    assert err.value.path == str(listing)
    listing.write_text("# nothing\n")
    with pytest.raises(DataError, match="lists no image"):
        open_split(labpics)
    labpics.file_list_txt = str(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="not found"):
        open_split(labpics)


# ---- coco --------------------------------------------------------------------------------------------------
def _coco(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None) -> SplitSpec:
    _image(tmp_path / "images/a.jpg")
    _image(tmp_path / "images/sub/b.png", seed=1)
    images = images or [{"id": 1, "file_name": "a.jpg", "height": H, "width": W},
                        {"id": 7, "file_name": "sub/b.png", "height": H, "width": W}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return SplitSpec(format="coco", images=str(tmp_path / "images"), annotations=str(tmp_path / "ann.json"))


def test_coco_polygons_rles_and_crowds(tmp_path):
    polygon = [3.0, 2.0, 15.0, 2.0, 15.0, 12.0, 3.0, 12.0]
    blob = _box(14, 28, 1, 9) | _box(20, 22, 9, 30)
    split = _coco(tmp_path, [
        {"id": 1, "image_id": 1, "segmentation": [polygon]},
        {"id": 2, "image_id": 1, "segmentation": _rle(blob, compressed=False)},
        {"id": 3, "image_id": 1, "segmentation": _rle(_box(0, 5, 30, 40)), "iscrowd": 1},
        {"id": 4, "image_id": 7, "segmentation": _rle(_box(5, 6, 5, 35))},
    ])
    reader = open_split(split)
    assert len(reader) == 2 and reader.source(1) == str(tmp_path / "images/sub/b.png")
    a, b = reader.load(0), reader.load(1)
    expected_polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], H, W))).astype(bool)
    assert abs(int(expected_polygon.sum()) - 12 * 10) <= 24
    np.testing.assert_array_equal(a.masks, np.stack([expected_polygon, blob]))
    np.testing.assert_array_equal(a.ignore, _box(0, 5, 30, 40))
    np.testing.assert_array_equal(b.masks, _box(5, 6, 5, 35)[None])
    assert b.ignore is None


def test_coco_file_list_uses_file_name_without_extension(tmp_path):
    split = _coco(tmp_path, [])
    (tmp_path / "list.txt").write_text("sub/b\n")
    split.file_list_txt = str(tmp_path / "list.txt")
    reader = open_split(split)
    assert len(reader) == 1 and reader.source(0).endswith("sub/b.png")


@pytest.mark.parametrize("text, match", [
    ('{"images": [', "invalid JSON"),
    ("[]", "top level"),
    ('{"images": []}', "missing list 'annotations'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}', r"images\[0\]: missing key\(s\) height"),
    ('{"images": [{"id": 1, "file_name": "a.jpg", "height": "30", "width": 40}], "annotations": []}', "positive"),
    ('{"images": [], "annotations": [{"id": 5}]}', r"annotations\[0\]: missing key\(s\) image_id"),
    ('{"images": [], "annotations": [{"id": 5, "image_id": 3}]}', "annotation 5: image_id 3 is not in images"),
])
def test_coco_bad_json_names_the_file(tmp_path, text, match):
    split = _coco(tmp_path, [])
    (tmp_path / "ann.json").write_text(text)
    with pytest.raises(DataError, match=match) as err:
        open_split(split)
    assert err.value.path == str(tmp_path / "ann.json")


@pytest.mark.parametrize("segmentation, match", [
    (_rle(_box(0, 5, 0, 5, size=(H, W + 1))), r"RLE size \[30, 41\] differs"),
    ({"size": [H, W], "counts": [5, 10]}, "RLE runs cover 15 pixels"),
    ({"size": [H, W], "counts": "0R1"}, "RLE runs cover"),
    ([[1.0, 2.0, 3.0]], "polygon 0"),
    (None, "segmentation must be"),
])
def test_coco_bad_segmentation_names_json_and_annotation(tmp_path, segmentation, match):
    split = _coco(tmp_path, [{"id": 42, "image_id": 7, "segmentation": segmentation}])
    reader = open_split(split)
    reader.load(0)  # the other image is fine
    with pytest.raises(DataError, match=match) as err:
        reader.load(1)
    assert err.value.path == str(tmp_path / "ann.json") and "annotation 42" in err.value.problem


def test_coco_image_size_and_missing_image(tmp_path):
    split = _coco(tmp_path, [], images=[{"id": 1, "file_name": "a.jpg", "height": H, "width": W + 2},
                                        {"id": 2, "file_name": "gone.jpg", "height": H, "width": W}])
    reader = open_split(split)
    with pytest.raises(DataError, match="height 30, width 42") as err:
        reader.load(0)
    assert err.value.path == str(tmp_path / "images/a.jpg") and str(tmp_path / "ann.json") in err.value.problem
    with pytest.raises(DataError, match="file not found") as err:
        reader.load(1)
    assert err.value.path == str(tmp_path / "images/gone.jpg")


def test_compressed_rle_runs_match_the_mask():
    rng = np.random.default_rng(0)
    for size in [(1, 1), (7, 5), (64, 48), (300, 200)]:
        mask = rng.random(size) < rng.random()
        mask[: size[0] // 2] = False  # long runs need several 5-bit groups
        runs = _compressed_runs(_rle(mask)["counts"].encode())
        assert runs.tolist() == _rle(mask, compressed=False)["counts"]


# ---- sa1b --------------------------------------------------------------------------------------------------
def _sa1b(tmp_path: Path, annotations: list[dict], json_dir: str = "images") -> SplitSpec:
    _image(tmp_path / "images/sa_1.jpg")
    (tmp_path / json_dir).mkdir(exist_ok=True)
    (tmp_path / json_dir / "sa_1.json").write_text(json.dumps({"image": {"image_id": 1, "height": H, "width": W},
                                                               "annotations": annotations}))
    return SplitSpec(format="sa1b", images=str(tmp_path / "images"),
                     annotations="" if json_dir == "images" else str(tmp_path / json_dir))


@pytest.mark.parametrize("json_dir", ["images", "json"])
def test_sa1b_masks_exact_and_empty_dropped(tmp_path, json_dir):
    masks = [_box(0, 10, 0, 10), _box(3, 30, 20, 21), np.zeros((H, W), bool)]
    split = _sa1b(tmp_path, [{"id": k, "segmentation": _rle(m), "area": int(m.sum())} for k, m in enumerate(masks)],
                  json_dir)
    record = open_split(split).load(0)
    np.testing.assert_array_equal(record.masks, np.stack(masks[:2]))
    assert len(open_split(split, min_object_area=0).load(0).masks) == 3


def test_sa1b_rle_size_mismatch_and_missing_json(tmp_path):
    split = _sa1b(tmp_path, [{"id": 9, "segmentation": _rle(_box(0, 10, 0, 10, size=(W, H)))}])
    with pytest.raises(DataError, match=r"annotation 9: RLE size \[40, 30\] differs") as err:
        open_split(split).load(0)
    assert err.value.path == str(tmp_path / "images/sa_1.json")
    (tmp_path / "images/sa_1.json").unlink()
    with pytest.raises(DataError, match="no annotation JSON"):
        open_split(split).load(0)
    (tmp_path / "images/sa_1.json").write_text("{\"annotations\": 3}")
    with pytest.raises(DataError, match="missing list 'annotations'"):
        open_split(split).load(0)


# ---- on_error ----------------------------------------------------------------------------------------------
def test_safe_reader_skips_and_counts(labpics, tmp_path):
    data = (tmp_path / "images/a.jpg").read_bytes()
    (tmp_path / "images/a.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "maps/c.png").unlink()
    reader = SafeReader(open_split(labpics), "skip")
    assert len(reader) == 3 and reader.source(2) == str(tmp_path / "images/c.bmp")
    with pytest.warns(UserWarning) as caught:
        results = [reader.load(i) for i in (0, 1, 2, 0, 2)]
    assert [r is None for r in results] == [True, False, True, True, True]
    assert len(caught) == 2  # once per file
    assert set(reader.skipped) == {str(tmp_path / "images/a.jpg"), str(tmp_path / "images/c.bmp")}
    assert "truncated" in reader.skipped[str(tmp_path / "images/a.jpg")]
    assert str(tmp_path / "maps/c.png") in reader.skipped[str(tmp_path / "images/c.bmp")]
    strict = SafeReader(open_split(labpics), "raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert strict.load(1) is not None
    with pytest.raises(DataError):
        strict.load(0)
    with pytest.raises(ValueError, match="on_error"):
        SafeReader(open_split(labpics), "ignore")
