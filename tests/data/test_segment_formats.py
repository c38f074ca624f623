"""Semantic (ade JSONL, folders), instance (COCO) and panoptic (COCO panoptic) readers: segments with the ids on
disk, and errors that name the file."""

import json

import numpy as np
import pytest
from PIL import Image

from segfit.data.formats.segments import SegmentReader, SegmentSplit
from segfit.data.records import DataError
from segfit.data.synthetic_segments import write_synthetic_segments


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("segments")
    return {kind: write_synthetic_segments(root / kind, kind, num_train=2, num_val=0, size=(32, 40))
            for kind in ("semantic", "instance", "panoptic")}


def test_ade_and_folders_read_the_same_segments(data):
    paths = data["semantic"]
    ade = SegmentReader(SegmentSplit("ade", annotations=str(paths["train_jsonl"]), root=str(paths["train_root"])))
    folders = SegmentReader(SegmentSplit("folders", images=str(paths["train_images"]), masks=str(paths["train_masks"])))
    a, b = ade.load(1), folders.load(1)
    assert np.array_equal(a.masks, b.masks) and a.category_ids.tolist() == b.category_ids.tolist()
    png = np.asarray(Image.open(paths["train_masks"] / "img_0001.png"))
    assert set(a.category_ids.tolist()) == set(np.unique(png).tolist())
    assert (a.masks.sum(0) == 1).all()  # one segment per pixel


def test_instances_carry_their_category(data):
    paths = data["instance"]
    reader = SegmentReader(SegmentSplit("coco", images=str(paths["train_images"]), annotations=str(paths["train_json"])))
    record = reader.load(0)
    assert len(record.masks) and set(record.category_ids.tolist()) <= {3, 4, 5} and not record.crowd.any()


def test_panoptic_segments_tile_the_image(data):
    paths = data["panoptic"]
    reader = SegmentReader(SegmentSplit("coco_panoptic", images=str(paths["train_images"]),
                                        annotations=str(paths["train_json"]), masks=str(paths["train_panoptic"])))
    record = reader.load(0)
    assert (record.masks.sum(0) == 1).all() and {1, 2} <= set(record.category_ids.tolist())


def test_panoptic_png_and_json_must_agree(data, tmp_path):
    paths = data["panoptic"]
    spec = json.loads(paths["train_json"].read_text())
    spec["annotations"][0]["segments_info"] = spec["annotations"][0]["segments_info"][1:]  # drop segment 1
    broken = tmp_path / "panoptic.json"
    broken.write_text(json.dumps(spec))
    reader = SegmentReader(SegmentSplit("coco_panoptic", images=str(paths["train_images"]), annotations=str(broken),
                                        masks=str(paths["train_panoptic"])))
    with pytest.raises(DataError, match=r"img_0000\.png: segment ids in the PNG but not in segments_info: \[1\]"):
        reader.load(0)


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"img": "a.jpg", "segm": "a.png"}\n{"img": "b.jpg"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl: line 2: expected"):
        SegmentReader(SegmentSplit("ade", annotations=str(path), root=str(tmp_path)))


def test_image_without_mask_is_named(data, tmp_path):
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"img_0000\.jpg: no mask img_0000\.png"):
        SegmentReader(SegmentSplit("folders", images=str(data["semantic"]["train_images"]), masks=str(tmp_path / "masks")))
