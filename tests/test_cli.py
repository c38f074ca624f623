"""The ``segfit`` command end to end on generated data: every task a user runs, and its errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Sam2Model

from segfit.cli import main
from segfit.models.sam2.build import build_sam2

SMALL_RUN = ["model.size=test", "model.image_size=256", "train.max_steps=2", "train.eval_every=2",
             "train.checkpoint_every=2", "train.log_every=1", "evaluate.max_clicks=2", "data.batch_size=1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A synthetic dataset and a spec pointing at it, as `make demo` makes them."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["data", "synth", "--out", str(root / "data"), "--num-train", "3", "--num-val", "2", "--size", "96x128"]) == 0
    (root / "spec.yaml").write_text(f"""
results_dir: {root}/run
model: {{name: sam2}}
data:
  train: {{format: labpics, images: {root}/data/train/images, annotations: {root}/data/train/masks}}
  val: {{format: labpics, images: {root}/data/val/images, annotations: {root}/data/val/masks}}
""")
    return root


def run(workspace: Path, *args: str) -> int:
    return main([args[0], "-e", str(workspace / "spec.yaml"), *SMALL_RUN, *args[1:]])


@pytest.mark.slow
def test_train_evaluate_infer_export(workspace, capsys):
    assert run(workspace, "train") == 0
    out = workspace / "run"
    assert (out / "spec.resolved.yaml").is_file() and (out / "checkpoints" / "best" / "model.safetensors").is_file()
    assert {"loss.png", "metrics.png"} <= {p.name for p in (out / "plots").iterdir()}

    assert run(workspace, "evaluate") == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and "miou@1" in metrics and "box_miou" in metrics
    assert "checkpoints/best/model.safetensors" in capsys.readouterr().out  # evaluates the run's best weights

    images = sorted((workspace / "data" / "val" / "images").iterdir())
    assert run(workspace, "inference", f"inference.input={images[0].parent}") == 0  # automatic maps
    assert {f"{p.stem}_{kind}.png" for p in images for kind in ("index", "color", "overlay")} == {
        p.name for p in (out / "inference").iterdir()}
    assert run(workspace, "inference", f"inference.input={images[0]}", "inference.mode=prompted",
               "inference.points=[[40,30]]", "inference.boxes=[[10,10,60,50]]", f"inference.output_dir={workspace}/prompted") == 0
    written = {p.name for p in (workspace / "prompted").iterdir()}
    assert written == {f"{images[0].stem}_mask1.png", f"{images[0].stem}_mask2.png", f"{images[0].stem}_overlay.png"}
    mask = np.asarray(Image.open(workspace / "prompted" / f"{images[0].stem}_mask1.png"))
    assert mask.shape == (96, 128)  # original size

    assert run(workspace, "export") == 0
    hf = Sam2Model.from_pretrained(out / "export" / "hf")
    trained = build_sam2("test", image_size=256, checkpoint=out / "checkpoints" / "best" / "model.safetensors")
    for (name, a), b in zip(hf.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, b), name
    official = torch.load(out / "export" / "sam2_finetuned.pt", weights_only=True)
    assert "sam_mask_decoder.iou_prediction_head.layers.0.weight" in official["model"]


def test_data_check_exit_codes(workspace, tmp_path, capsys):
    def check(*overrides: str) -> int:
        return main(["data", "check", "-e", str(workspace / "spec.yaml"), *overrides])

    assert check() == 0
    capsys.readouterr()
    broken = tmp_path / "masks"
    broken.mkdir()
    for path in (workspace / "data" / "train" / "masks").iterdir():
        (broken / path.name).write_bytes(path.read_bytes()[:40])  # truncated PNGs
    assert check(f"data.train.annotations={broken}") == 1
    report = capsys.readouterr().out
    assert all(str(broken / path.name) in report for path in broken.iterdir())  # each bad file is named


def test_automatic_inference_needs_an_input(workspace, capsys):
    assert run(workspace, "inference") == 2
    assert "inference.input" in capsys.readouterr().err


def test_unknown_key_is_a_clear_error(workspace, capsys):
    assert run(workspace, "train", "train.max_step=3") == 2
    assert "train.max_step: unknown key (did you mean train.max_steps?)" in capsys.readouterr().err


def test_unwritable_results_dir_is_a_clear_error(workspace, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert run(workspace, "train", f"results_dir={tmp_path}/a_file/run") == 2
    assert f"segfit train: error: results_dir {tmp_path}/a_file/run is not writable" in capsys.readouterr().err


def test_convert_round_trip(tmp_path):
    model = build_sam2("tiny", image_size=256)
    official = tmp_path / "model.pt"
    from segfit.models.sam2.weights import save_official_pt

    save_official_pt(model, official)
    assert main(["convert", str(official), str(tmp_path / "hf")]) == 0
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.pt")]) == 0
    a = torch.load(official, weights_only=True)["model"]
    b = torch.load(tmp_path / "back.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_help_lists_the_tasks(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for task in ("train", "evaluate", "inference", "export", "convert", "data"):
        assert task in text
