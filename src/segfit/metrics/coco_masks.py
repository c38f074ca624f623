"""COCO mask AP through pycocotools' ``COCOeval`` (``iouType="segm"``), on ground truth and detections held in
memory: the numbers are pycocotools' own (the backend is named in the results as ``ap_backend``)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("ap", "ap50", "ap75", "aps", "apm", "apl")
"""The first six of ``COCOeval.stats``: AP at IoU .50:.95, .50, .75, then AP for small, medium, large objects."""


def encode(mask: np.ndarray) -> dict:
    """H×W bool → COCO compressed RLE with a str ``counts`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


class MaskAP:
    """Collects ground truth and detections image by image; ``compute`` runs COCOeval once."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.detections: list[dict] = []

    def update(self, gt_masks: np.ndarray, gt_labels: np.ndarray, gt_crowd: np.ndarray, masks: np.ndarray,
               labels: np.ndarray, scores: np.ndarray) -> None:
        """One image: its ground-truth instances (N×H×W, class indices, crowd flags) and K scored detections."""
        image_id = len(self.images) + 1
        height, width = gt_masks.shape[1:] if gt_masks.ndim == 3 and len(gt_masks) else masks.shape[1:]
        self.images.append({"id": image_id, "height": int(height), "width": int(width)})
        for mask, label, crowd in zip(gt_masks, gt_labels, gt_crowd):
            rle = encode(mask)
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": int(label) + 1,
                            "segmentation": rle, "area": float(mask.sum()), "iscrowd": int(crowd),
                            "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
        self.detections += [{"image_id": image_id, "category_id": int(label) + 1, "segmentation": encode(mask),
                             "score": float(score)} for mask, label, score in zip(masks, labels, scores)]

    def merge(self, other: MaskAP) -> None:
        """Append the images ``other`` collected (another process's part of a split) after this one's, numbered on
        as ``update`` would have numbered them."""
        images, annotations = len(self.images), len(self.gt)
        self.images += [{**image, "id": image["id"] + images} for image in other.images]
        self.gt += [{**gt, "id": gt["id"] + annotations, "image_id": gt["image_id"] + images} for gt in other.gt]
        self.detections += [{**found, "image_id": found["image_id"] + images} for found in other.detections]

    def compute(self) -> dict[str, float]:
        coco = COCO()
        coco.dataset = {"images": self.images, "annotations": self.gt,
                        "categories": [{"id": k + 1} for k in range(self.num_classes)]}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco.createIndex()
            if not self.detections:
                return dict.fromkeys(STAT_NAMES, 0.0)
            evaluator = COCOeval(coco, coco.loadRes(self.detections), iouType="segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
