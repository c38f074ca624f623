"""The whole path (data → matcher → loss → optimiser → post-processing → metric) learns: a tiny model over-fits four
synthetic images through the engine, then evaluate and inference read the run's best checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image

from m2f_tiny import tiny_spec_overrides
from segfit.spec import load_spec
from segfit.tasks import evaluate, inference, train

OVERFIT = ["data.train.batch_size=4", "data.augmentation.hflip=0", "train.max_steps=250", "train.eval_every=250",
           "train.checkpoint_every=250", "train.log_every=50", "train.optim.scheduler=constant", "train.optim.base_lr=3e-3",
           "train.optim.backbone_multiplier=1.0", "train.optim.grad_clip=1.0", "model.object_mask_threshold=0.5",
           "model.overlap_threshold=0.5"]
"""Scored on the training images themselves; lr and thresholds suited to a tiny model trained 250 steps."""


@pytest.mark.slow  # 250 training steps per mode (~20 s each on 2 free cores)
@pytest.mark.parametrize(("kind", "metric", "at_least"), [("semantic", "miou", 0.9), ("panoptic", "pq", 0.8)])
def test_overfits_then_evaluates_and_infers(kind, metric, at_least, synthetic, tmp_path):
    paths = synthetic(kind)
    spec = load_spec(None, tiny_spec_overrides(kind, paths, tmp_path / "run", val_source="train") + OVERFIT)
    summary = train.run(spec)
    assert summary["val"][metric] >= at_least, summary["val"]

    scores = evaluate.run(spec, "val")  # the best checkpoint, in a fresh model
    assert scores[metric] == pytest.approx(summary["val"][metric], abs=1e-6)  # same weights, same images

    written = inference.run(load_spec(None, tiny_spec_overrides(kind, paths, tmp_path / "run")
                                      + [f"inference.input={paths['val_images']}"]))
    names = sorted(p.name for p in written)
    if kind == "semantic":
        assert names == ["img_0000.png", "img_0000_overlay.png", "img_0001.png", "img_0001_overlay.png"]
        assert set(np.unique(np.asarray(Image.open(written[0])))) <= {1, 2, 3, 4, 5}  # label-map ids
    else:
        result = json.loads((tmp_path / "run" / "inference" / "panoptic.json").read_text())
        assert [a["file_name"] for a in result["annotations"]] == ["img_0000.png", "img_0001.png"]
        assert all(s["category_id"] in range(1, 6) for a in result["annotations"] for s in a["segments_info"])
