"""``segfit data check``: every bad file is named, nothing stops the check, counts are right (images and videos)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segfit.cli import main
from segfit.data.check import check_split, check_splits, check_video_split
from segfit.data.synthetic import write_synthetic_images, write_synthetic_videos
from segfit.spec.schema import DataSpec, MixSpec, SplitSpec

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


# ---- videos ------------------------------------------------------------------------------------------------
def test_video_split_report(tmp_path):
    paths = write_synthetic_videos(tmp_path, num_train=4, num_val=0, size=(24, 32), num_frames=6, max_objects=2,
                                   ann_every=2, seed=3)
    frames, masks = paths["train_images"], paths["train_annotations"]
    split = SplitSpec(format="davis", images=str(frames), annotations=str(masks))
    report = check_video_split("train", split, num_frames=3)
    assert report.ok and not report.warnings
    assert (report.num_videos, report.num_loaded, report.num_frames, report.num_annotated) == (4, 4, 24, 12)
    assert report.num_objects == sum(len(np.unique(np.asarray(Image.open(p)))) - 1 for p in
                                     (masks / f"video_{i:03d}/00000.png" for i in range(4)))

    Image.new("P", (31, 24)).save(masks / "video_001/00002.png")                    # mask of the wrong size
    (frames / "video_002/00003.jpg").unlink()                                        # a missing frame: its mask...
    (masks / "video_002/00002.png").rename(masks / "video_002/00003.png")            # ...has no frame
    for png in (masks / "video_003").iterdir():
        png.unlink()
    (masks / "video_003/1").mkdir()                                                  # an object that never appears
    Image.new("L", (32, 24)).save(masks / "video_003/1/00000.png")
    report = check_video_split("train", split, num_frames=3)
    problems = dict(report.problems)
    assert set(problems) == {str(masks / "video_001/00002.png"), str(masks / "video_002/00003.png"),
                             str(masks / "video_003/1")}
    assert "mask is 24×31 but frame" in problems[str(masks / "video_001/00002.png")]
    assert "has no frame 00003" in problems[str(masks / "video_002/00003.png")]
    assert "object 1 never appears" in problems[str(masks / "video_003/1")]
    assert report.num_loaded == 1 and report.warnings == [] and not report.ok
    text = report.format()
    assert text.startswith("train (davis): 4 videos, 1 loaded, 6 frames (3 annotated)") and "3 problem(s)" in text
    assert all(path in text for path in problems)
    assert json.loads(json.dumps(report.to_dict()))["problems"][0]["file"] in problems

    report = check_video_split("train", split, num_frames=4)
    assert report.warnings == [(str(frames / "video_000"), "3 annotated frame(s), fewer than the clip's "
                                                          "num_frames=4: never sampled for training")]


def test_a_training_mix_is_checked_dataset_by_dataset_under_its_names(tmp_path):
    videos = write_synthetic_videos(tmp_path / "v", num_train=2, num_val=0, size=(24, 32), num_frames=4, ann_every=1)
    images = write_synthetic_images(tmp_path / "i", num_train=2, num_val=0, size=(48, 64))
    data = DataSpec(train_mix=[
        MixSpec(name="clips", format="davis", images=str(videos["train_images"]),
                annotations=str(videos["train_annotations"]), num_frames=5),
        MixSpec(images=str(images["train_images"]), annotations=str(images["train_annotations"])),
    ])
    clips, photos = check_splits(data)
    assert clips.format().startswith("clips (davis): 2 videos") and photos.format().startswith("train1")
    assert len(clips.warnings) == 2 and "num_frames=5" in clips.warnings[0][1]  # the dataset's own clip length


def test_video_split_missing_folder(tmp_path):
    report = check_video_split("val", SplitSpec(format="davis", images=str(tmp_path / "JPEGImages"),
                                                annotations=str(tmp_path)))
    assert not report.ok and report.num_videos == 0 and "not found" in report.problems[0][1]


def test_synth_and_check_commands(tmp_path, capsys):
    out = tmp_path / "videos"
    assert main(["data", "synth", "--kind", "video", "--out", str(out), "--num-train", "2", "--num-val", "1",
                 "--size", "32x40", "--num-frames", "4"]) == 0
    assert sorted(p.name for p in (out / "train/JPEGImages").iterdir()) == ["video_000", "video_001"]
    assert len(list((out / "val/Annotations/video_000").iterdir())) == 4
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
model: {{name: sam2}}
data:
  train: {{format: davis, images: {out}/train/JPEGImages, annotations: {out}/train/Annotations}}
  val: {{format: davis, images: {out}/val/JPEGImages, annotations: {out}/val/Annotations}}
  video: {{num_frames: 4}}
""")
    capsys.readouterr()
    assert main(["data", "check", "-e", str(spec)]) == 0
    printed = capsys.readouterr().out
    assert "train (davis): 2 videos, 2 loaded, 8 frames (8 annotated)" in printed and "val (davis): 1 videos" in printed
    assert main(["data", "check", "-e", str(spec), "data.video.num_frames=5"]) == 0  # warnings only
    assert "never sampled for training" in capsys.readouterr().out
    (out / "train/Annotations/video_001/00002.png").write_bytes(b"not a png")
    assert main(["data", "check", "-e", str(spec)]) == 1
    assert main(["data", "synth", "--kind", "video", "--format", "coco", "--out", str(tmp_path / "x")]) == 2
    assert "does not fit --kind video" in capsys.readouterr().err
