"""MaskAP gives pycocotools' own numbers: the same detections through COCO JSON files and COCOeval directly."""

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segfit.metrics.coco_masks import MaskAP, encode


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_identical_to_pycocotools(tmp_path):
    rng = np.random.default_rng(0)
    metric = MaskAP(num_classes=2)
    images, gt, dets = [], [], []
    for image_id in (1, 2):
        gt_masks = np.stack([_disc(48, 64, 12 + 10 * k, 16 + 14 * k, 6 + 2 * k) for k in range(3)])
        gt_labels, crowd = np.array([0, 1, 0]), np.array([False, False, image_id == 2])
        masks = np.stack([np.roll(m, int(rng.integers(-3, 4)), axis=1) for m in gt_masks] + [_disc(48, 64, 40, 50, 5)])
        labels, scores = np.array([0, 1, 1, 0]), rng.uniform(0.1, 1.0, 4)
        metric.update(gt_masks, gt_labels, crowd, masks, labels, scores)
        images.append({"id": image_id, "height": 48, "width": 64})
        gt += [{"id": len(gt) + k + 1, "image_id": image_id, "category_id": int(c) + 1, "segmentation": encode(m),
                "area": float(m.sum()), "iscrowd": int(z), "bbox": [0, 0, 1, 1]}
               for k, (m, c, z) in enumerate(zip(gt_masks, gt_labels, crowd))]
        dets += [{"image_id": image_id, "category_id": int(c) + 1, "segmentation": encode(m), "score": float(s)}
                 for m, c, s in zip(masks, labels, scores)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": gt,
                                                  "categories": [{"id": 1}, {"id": 2}]}))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        reference = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), iouType="segm")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    ours = metric.compute()
    assert [ours[k] for k in ("ap", "ap50", "ap75", "aps", "apm", "apl")] == list(reference.stats[:6])
    assert 0 < ours["ap"] < 1  # the case is neither trivial nor empty
