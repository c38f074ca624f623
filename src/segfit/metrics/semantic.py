"""Semantic segmentation scores from one confusion matrix over all pixels of a split (detectron2's
``SemSegEvaluator`` definitions): IoU_c = TP / (GT + Pred − TP) for the classes present in the ground truth,
mIoU their mean, fwIoU weighted by GT share, mACC the mean per-class recall, pACC = ΣTP / ΣGT."""

from __future__ import annotations

import numpy as np


class SemanticScores:
    """Accumulates predictions against ground truth maps; ground-truth values < 0 are ignored pixels."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        """[gt class, predicted class] pixel counts."""

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        valid = gt >= 0
        pairs = gt[valid].astype(np.int64) * self.num_classes + pred[valid].astype(np.int64)
        self.confusion += np.bincount(pairs, minlength=self.num_classes**2).reshape(self.num_classes, -1)

    def merge(self, other: SemanticScores) -> None:
        """Add the pixels ``other`` counted (another process's part of a split)."""
        self.confusion += other.confusion

    def compute(self, names: list[str] | None = None) -> dict[str, float]:
        """``miou``, ``fwiou``, ``macc``, ``pacc`` and ``iou/<class>`` (NaN for classes absent from the ground truth)."""
        tp = np.diag(self.confusion).astype(np.float64)
        gt, pred = self.confusion.sum(1).astype(np.float64), self.confusion.sum(0).astype(np.float64)
        present = gt > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, tp / (gt + pred - tp), np.nan)
            recall = np.where(present, tp / gt, np.nan)
        total = gt.sum()
        scores = {
            "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
            "fwiou": float((iou[present] * gt[present]).sum() / total) if total else float("nan"),
            "macc": float(np.nanmean(recall)) if present.any() else float("nan"),
            "pacc": float(tp.sum() / total) if total else float("nan"),
        }
        names = names or [str(k) for k in range(self.num_classes)]
        return {**scores, **{f"iou/{name}": float(value) for name, value in zip(names, iou)}}
