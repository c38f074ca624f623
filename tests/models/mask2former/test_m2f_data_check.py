"""``segfit data synth --kind semantic|instance|panoptic`` and ``segfit data check`` on a Mask2Former spec: a mask
with ids outside the label map is named with its values."""

import numpy as np
import pytest
from PIL import Image

from m2f_tiny import tiny_spec_overrides
from segfit.cli import main
from segfit.data.records import DataError
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import load_spec


def test_synth_then_check_names_the_bad_mask(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "synth", "--kind", "semantic", "--out", str(out), "--num-train", "3", "--num-val", "1",
                 "--size", "32x40"]) == 0
    paths = {"label_map": out / "label_map.json", "train_jsonl": out / "train" / "annotations.jsonl",
             "train_root": out / "train", "val_jsonl": out / "val" / "annotations.jsonl", "val_root": out / "val"}
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {name: mask2former}\n")
    overrides = tiny_spec_overrides("semantic", paths, tmp_path / "run")
    assert main(["data", "check", "-e", str(spec), *overrides]) == 0
    assert "train (ade): 3 images, 3 loaded" in capsys.readouterr().out

    bad = out / "train" / "masks" / "img_0001.png"
    ids = np.asarray(Image.open(bad)).copy()
    ids[:2, :2], ids[-1, -1] = 17, 42
    Image.fromarray(ids).save(bad)
    assert main(["data", "check", "-e", str(spec), *overrides]) == 1
    report = capsys.readouterr().out
    assert "1 problem(s)" in report and "img_0001.png" in report and "ids [17, 42] are not in the label map" in report


def test_training_stops_before_the_first_step_on_bad_ids(synthetic, tmp_path):
    paths = synthetic("instance")
    spec = tiny_spec_overrides("instance", paths, tmp_path / "run")
    text = paths["train_json"].read_text().replace('"category_id": 3', '"category_id": 77')
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    recipe = Mask2FormerRecipe(load_spec(None, spec + [f"data.train.instance_json={bad}"]))
    with pytest.raises(DataError, match=r"(?s)data\.train: 1 of 4 label files hold ids outside.*bad\.json: ids \[77\]"):
        recipe.train_dataset()


def test_check_warns_about_orphan_label_files(tmp_path):
    """A panoptic PNG no JSON entry names, or a class-id PNG with no image, is a label silently lost."""
    from segfit.data.check import check_segment_split
    from segfit.data.formats.segments import SegmentReader, SegmentSplit
    from segfit.data.synthetic_segments import write_synthetic_segments

    panoptic = write_synthetic_segments(tmp_path / "panoptic", "panoptic", num_train=2, num_val=0, size=(32, 32),
                                        max_objects=1)
    stray = panoptic["train_panoptic"] / "gone_0001.png"
    stray.write_bytes((next(panoptic["train_panoptic"].glob("*.png"))).read_bytes())
    split = SegmentSplit("coco_panoptic", images=str(panoptic["train_images"]),
                         annotations=str(panoptic["train_json"]), masks=str(panoptic["train_panoptic"]))
    report = check_segment_split("train", "coco_panoptic", lambda: SegmentReader(split), lambda r: (r.source, []), [])
    assert (str(stray), "no image of this name (orphan annotation file): never used") in report.warnings

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.jpg")
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / f"{stem}.png")
    assert SegmentReader(SegmentSplit("folders", images=str(images), masks=str(masks))).orphan_annotations() == [
        masks / "b.png"]
