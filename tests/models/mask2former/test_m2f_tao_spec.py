"""TAO's example spec (configs/mask2former_tao_coco_panoptic.yaml, key for key) runs with only its paths changed:
train, evaluate, inference and export through the CLI. Command-line overrides shrink the model and the images to CPU
test size and pick fp32 (TAO's fp16 needs CUDA); the file itself is untouched apart from the paths."""

import json
from pathlib import Path

import pytest
import torch

from m2f_tiny import TINY_MODEL
from segfit.cli import main
from segfit.data.synthetic_segments import LABEL_MAP
from segfit.models.mask2former.build import build_mask2former
from segfit.models.mask2former.spec import Mask2FormerModelSpec, Mask2FormerSpec
from segfit.spec.load import from_dict

TAO_SPEC = Path(__file__).parents[3] / "configs" / "mask2former_tao_coco_panoptic.yaml"
CPU_SIZE = [o for o in TINY_MODEL if "num_classes" not in o] + [
    "train.precision=fp32", "train.num_epochs=2", "train.validation_interval=1", "data.train.batch_size=2"]


def _tao_paths(tmp_path: Path, paths: dict[str, Path]) -> dict[str, str]:
    """Placeholder path in the TAO file → a file of this test."""
    label_map = LABEL_MAP + [{"id": k, "name": f"unused_{k}", "isthing": 1, "color": [0, 0, 0]} for k in range(6, 201)]
    (tmp_path / "colormap.json").write_text(json.dumps(label_map))  # 200 classes, as the spec's num_classes
    run = tmp_path / "run"
    return {
        "/workspace/mask2former_coco_swint/swin_tiny_patch4_window7_224_22k.pth": str(tmp_path / "swin.pth"),
        "/workspace/mask2former_coco_swint/train/model_epoch=049.pth": str(run / "checkpoints" / "best"),
        "/workspace/mask2former_coco_swint": str(run),
        "/datasets/coco/colormap.json": str(tmp_path / "colormap.json"),
        "/datasets/coco/annotations/panoptic_train2017.json": str(paths["train_json"]),
        "/datasets/coco/annotations/panoptic_val2017.json": str(paths["val_json"]),
        "/datasets/coco/panoptic_train2017": str(paths["train_panoptic"]),
        "/datasets/coco/panoptic_val2017": str(paths["val_panoptic"]),
        "/datasets/coco/train2017": str(paths["train_images"]),
        "/datasets/coco/val2017": str(paths["val_images"]),
        "/workspace/test_images/": str(paths["val_images"]),
    }


@pytest.mark.slow  # four CLI runs
def test_tao_example_spec_runs_with_paths_changed(synthetic, tmp_path):
    text = TAO_SPEC.read_text()
    for placeholder, path in _tao_paths(tmp_path, synthetic("panoptic")).items():
        assert placeholder in text
        text = text.replace(placeholder, path)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(text)
    model_spec = from_dict(Mask2FormerSpec, {"model": {"backbone": {"swin": {"type": "test", "window_size": 4}}}}).model
    backbone = build_mask2former(model_spec, ["x"]).model.pixel_level_module.encoder.state_dict()
    torch.save({"model": backbone}, tmp_path / "swin.pth")  # backbone weights as a .pth

    assert main(["train", "-e", str(spec_file), *CPU_SIZE]) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [2, 4]  # 4 images, batch 2: epoch = 2 steps
    assert main(["evaluate", "-e", str(spec_file), *CPU_SIZE]) == 0
    assert "miou" in json.loads((run / "eval" / "metrics.json").read_text())  # mode: semantic, on panoptic data
    assert main(["inference", "-e", str(spec_file), *CPU_SIZE]) == 0
    assert sorted(p.name for p in (run / "inference").glob("*.png"))[:2] == ["img_0000.png", "img_0000_overlay.png"]
    assert main(["export", "-e", str(spec_file), *CPU_SIZE]) == 0  # TAO's opset 17 is written as 18, with a message
    assert (run / "export" / "model.onnx").is_file()
