"""``segfit data check``: every bad file is named, nothing stops the check, counts are right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segfit.data.check import check_split
from segfit.data.synthetic import write_synthetic_images
from segfit.spec.schema import SplitSpec

H, W = 24, 32


def _pair(root: Path, stem: str, ids: np.ndarray | None, size: tuple[int, int] = (H, W)) -> None:
    (root / "images").mkdir(exist_ok=True)
    (root / "maps").mkdir(exist_ok=True)
    pixels = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(root / f"images/{stem}.jpg")
    if ids is not None:
        Image.fromarray(ids.astype(np.uint8)).save(root / f"maps/{stem}.png")


def test_labpics_report_names_every_problem(tmp_path):
    two = np.zeros((H, W))
    two[0:5, 0:5], two[10:20, 10:20] = 1, 2
    tiny = np.zeros((H, W))
    tiny[0:6, 0:6], tiny[20, 0:2] = 3, 4
    _pair(tmp_path, "good", two)
    _pair(tmp_path, "trunc", two)
    (tmp_path / "images/trunc.jpg").write_bytes((tmp_path / "images/trunc.jpg").read_bytes()[:-40])
    _pair(tmp_path, "size", two[:-1])
    _pair(tmp_path, "nomap", None)
    _pair(tmp_path, "tiny", tiny)
    _pair(tmp_path, "empty", np.zeros((H, W)))
    split = SplitSpec(format="labpics", images=str(tmp_path / "images"), annotations=str(tmp_path / "maps"))

    report = check_split("train", split, min_object_area=5)

    assert (report.num_images, report.num_loaded, report.num_objects) == (6, 3, 3)
    assert report.objects_per_image == (0, 1.0, 2)
    assert not report.ok
    problems = dict(report.problems)
    assert set(problems) == {str(tmp_path / "images/trunc.jpg"), str(tmp_path / "maps/size.png"),
                             str(tmp_path / "maps/nomap.png")}
    assert "truncated" in problems[str(tmp_path / "images/trunc.jpg")]
    assert "differs" in problems[str(tmp_path / "maps/size.png")]
    assert "no annotation map" in problems[str(tmp_path / "maps/nomap.png")]
    warnings = dict(report.warnings)
    assert set(warnings) == {str(tmp_path / "images/tiny.jpg"), str(tmp_path / "images/empty.jpg")}
    assert "1 object(s) below min_object_area=5 px (smallest 2 px)" in warnings[str(tmp_path / "images/tiny.jpg")]
    assert "no objects" in warnings[str(tmp_path / "images/empty.jpg")]

    text = report.format()
    assert text.splitlines()[0].startswith("train (labpics): 6 images, 3 loaded, 3 objects")
    assert all(path in text for path in list(problems) + list(warnings))
    as_dict = report.to_dict()
    assert json.loads(json.dumps(as_dict))["objects_per_image"] == {"min": 0, "mean": 1.0, "max": 2}
    assert as_dict["ok"] is False and len(as_dict["problems"]) == 3


def test_coco_empty_masks_and_bad_json(tmp_path):
    _pair(tmp_path, "a", None)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": []},
                            {"id": 2, "image_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    split = SplitSpec(format="coco", images=str(tmp_path / "images"), annotations=str(tmp_path / "ann.json"))
    report = check_split("val", split)
    assert report.ok and report.num_objects == 1
    assert report.warnings == [(str(tmp_path / "images/a.jpg"), "1 empty mask(s) (0 pixels)")]

    (tmp_path / "ann.json").write_text("{\"images\": []")
    report = check_split("val", split)
    assert not report.ok and report.num_images == 0
    assert report.problems[0][0] == str(tmp_path / "ann.json") and "invalid JSON" in report.problems[0][1]


def test_clean_synthetic_split_is_ok(tmp_path):
    paths = write_synthetic_images(tmp_path, "sa1b", num_train=3, num_val=0, size=(48, 64), seed=0)
    report = check_split("train", SplitSpec(format="sa1b", images=str(paths["train_images"])))
    assert report.ok and not report.warnings and report.num_loaded == 3 and report.num_objects >= 3
    assert "OK, 0 warning(s)" in report.format()
