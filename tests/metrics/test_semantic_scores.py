"""mIoU / fwIoU / mACC / pACC against hand-computed values (detectron2 SemSegEvaluator definitions)."""

import math

import numpy as np

from segfit.metrics.semantic import SemanticScores


def test_hand_computed_case():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, -1]])  # -1: ignored, whatever is predicted there
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 2]])
    scores = SemanticScores(3)
    scores.update(pred, gt)
    out = scores.compute(["a", "b", "c"])
    # class 0: gt 4 px, pred 3 px, tp 3 → IoU 3/4; class 1: gt 3, pred 3, tp 2 → 2/4; class 2: absent from gt → NaN
    assert math.isclose(out["iou/a"], 3 / 4) and math.isclose(out["iou/b"], 2 / 4) and math.isnan(out["iou/c"])
    assert math.isclose(out["miou"], (3 / 4 + 2 / 4) / 2)
    assert math.isclose(out["fwiou"], (3 / 4 * 4 + 2 / 4 * 3) / 7)
    assert math.isclose(out["macc"], (3 / 4 + 2 / 3) / 2)
    assert math.isclose(out["pacc"], 5 / 7)


def test_accumulates_over_images_as_one_confusion_matrix():
    rng = np.random.default_rng(0)
    gts, preds = rng.integers(-1, 4, (3, 8, 8)), rng.integers(0, 4, (3, 8, 8))
    split, whole = SemanticScores(4), SemanticScores(4)
    for gt, pred in zip(gts, preds):
        split.update(pred, gt)
    whole.update(preds.reshape(-1, 8), gts.reshape(-1, 8))
    assert split.compute() == whole.compute()
