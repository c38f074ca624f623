"""SAM 2 with FSDP under torchrun: 2 CPU processes (gloo) × batch 1 train as 1 process × batch 2, validate sharded
as one process does, and their consolidated checkpoint evaluates in one process (``segfit evaluate``)."""

import json

import pytest
import safetensors.torch
import torch
from test_sam2_data_parallel import DETERMINISTIC
from torchrun_train import train_under_torchrun

from segfit.cli import main as segfit
from segfit.data.synthetic import write_synthetic_images
from segfit.engine.logging import read_records
from segfit.engine.trainer import train
from segfit.registry import recipe_for
from segfit.spec import load_spec, save_resolved


@pytest.mark.slow
def test_fsdp_trains_sam2_as_one_process_with_twice_the_batch(tmp_path):
    data = tmp_path / "data"
    write_synthetic_images(data, num_train=4, num_val=3, size=(64, 80), max_objects=3, seed=1)
    common = [*DETERMINISTIC, f"data.train.images={data}/train/images", f"data.train.annotations={data}/train/masks",
              f"data.val.images={data}/val/images", f"data.val.annotations={data}/val/masks",
              "train.eval_every=3", "train.eval_at_start=true", "evaluate.max_clicks=3", "evaluate.num_samples=1",
              "model.trainable=[image_encoder,prompt_encoder,mask_decoder]"]  # the Hiera blocks are FSDP units
    fsdp = load_spec(None, [*common, "data.batch_size=1", "train.distributed=fsdp", f"results_dir={tmp_path / 'fsdp'}"])
    train_under_torchrun(fsdp, tmp_path)
    one = load_spec(None, [*common, "data.batch_size=2", f"results_dir={tmp_path / 'one'}"])
    train(recipe_for(one), one)

    records = {name: read_records(tmp_path / name / "metrics.jsonl") for name in ("fsdp", "one")}
    assert [(r["step"], r["split"]) for r in records["fsdp"]] == [(r["step"], r["split"]) for r in records["one"]]
    # other batch shapes and thread counts (other float sums) as for DDP (test_sam2_data_parallel.py), and the
    # reduce-scatter's sum of shards: losses differ by ≤ 3e-7 relative, weights up to 1.0 by ≤ 1.2e-7 (seen)
    for sharded, single in zip(records["fsdp"], records["one"]):
        if sharded["split"] == "train":
            for key in ("loss", "loss_mask", "loss_dice", "loss_iou", "loss_class", "grad_norm"):
                assert sharded[key] == pytest.approx(single[key], rel=1e-5), (sharded["step"], key)
        else:  # each process validated its half of the images, merged: the counts of one process, and its means
            assert {k: sharded[k] for k in ("num_images", "num_objects")} == {k: single[k] for k in
                                                                                ("num_images", "num_objects")}
            # (step 0: the same weights; step 3: weights within 1e-7) a mask pixel whose logit is within rounding
            # of 0 may flip, moving an IoU by ~1 / object area (≥ 1e-3 here): none seen
            for key in ("miou@1", "miou@3", "box_miou", "noc@85", "noc@90"):
                assert sharded[key] == pytest.approx(single[key], abs=1e-6), (sharded["step"], key)

    last = tmp_path / "fsdp" / "checkpoints" / "last"
    assert segfit(["consolidate", str(last)]) == 0
    weights = {name: safetensors.torch.load_file(tmp_path / name / "checkpoints" / "last" / "model.safetensors")
               for name in ("fsdp", "one")}
    assert weights["fsdp"].keys() == weights["one"].keys()
    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["fsdp"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    # the consolidated weights in a 1-process evaluate: the step-3 validation's numbers
    spec_file = save_resolved(fsdp, tmp_path / "eval_spec")
    assert segfit(["evaluate", "-e", str(spec_file), f"evaluate.checkpoint={last}"]) == 0
    evaluated = json.loads((tmp_path / "fsdp" / "eval" / "metrics.json").read_text())
    at_end = records["fsdp"][-1]
    assert evaluated["num_objects"] == at_end["num_objects"]
    assert evaluated["miou@1"] == pytest.approx(at_end["miou@1"], abs=1e-6)  # as above
