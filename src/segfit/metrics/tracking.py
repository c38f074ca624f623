"""One-pass (OPE) box-tracking metrics: OTB-style success / precision / normalised precision and GOT-10k AO / SR.

Boxes are ``x, y, w, h``; overlaps are continuous (no +1 pixel), centres are ``x + (w - 1) / 2`` (the pysot
toolkit's conventions). Per sequence, only frames whose target is visible count (LaSOT's rule; OTB marks none
absent), and a visible frame whose ground truth is not a usable box (NaN, zero size) counts as a miss:
- success: the share of frames with IoU > t for t = 0, 0.05, ..., 1 (21 thresholds); ``success_auc`` is their mean;
- precision: the share of frames whose centre error is ≤ t pixels, t = 0..50, reported at 20;
- normalised precision: the same with centre offsets divided by the ground truth's width and height, t = 0..0.5
  in steps of 0.01, reported at 0.2;
  these three are averaged over sequences;
- GOT-10k: the first frame (the given box) is left out, the IoUs of all sequences' frames are pooled; ``ao`` is
  their mean, ``sr50`` / ``sr75`` the shares above 0.5 / 0.75.
"""

from __future__ import annotations

import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0, 1, 21)
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.linspace(0, 0.5, 51)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two T×4 ``x, y, w, h`` arrays (NaN where a box is not usable)."""
    left, top = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(inter / union, 0, 1)


def centers(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + (boxes[:, 2:] - 1) / 2


def sequence_curves(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
    """Success (21), precision (51) and normalised precision (51) curves of one sequence."""
    gt, pred = gt[visible], pred[visible]
    usable = np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    iou = np.where(usable, np.nan_to_num(overlap(pred, gt), nan=0.0), -1.0)
    offset = centers(pred) - centers(gt)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(usable, np.linalg.norm(offset, axis=1), np.inf)
        norm_error = np.where(usable, np.linalg.norm(offset / gt[:, 2:], axis=1), np.inf)
    count = max(len(gt), 1)
    return {
        "success": (iou[None] > SUCCESS_THRESHOLDS[:, None]).sum(1) / count,
        "precision": (error[None] <= PRECISION_THRESHOLDS[:, None]).sum(1) / count,
        "norm_precision": (norm_error[None] <= NORM_PRECISION_THRESHOLDS[:, None]).sum(1) / count,
    }


class TrackingMetrics:
    """Accumulates sequences (``update``), then ``compute`` → the metrics, ``curves`` → the mean curves to plot."""

    def __init__(self) -> None:
        self.sequences: list[dict[str, float]] = []
        self._curves: list[dict[str, np.ndarray]] = []
        self._got_ious: list[np.ndarray] = []

    def update(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, name: str = "") -> dict[str, float]:
        """Score one sequence (frame 0 holds the given box); returns its row of per-sequence results."""
        pred, gt, visible = np.asarray(pred, float), np.asarray(gt, float), np.asarray(visible, bool)
        curves = sequence_curves(pred, gt, visible)
        later = visible.copy()
        later[:1] = False
        ious = np.nan_to_num(overlap(pred[later], gt[later]), nan=0.0)
        self._curves.append(curves)
        self._got_ious.append(ious)
        row = {"sequence": name, "frames": len(gt), "success_auc": float(curves["success"].mean()),
               "precision": float(curves["precision"][20]), "ao": float(ious.mean()) if len(ious) else float("nan")}
        self.sequences.append(row)
        return row

    def merge(self, other: TrackingMetrics) -> None:
        """Add the sequences ``other`` scored (another process's part of a split), after this one's."""
        self.sequences += other.sequences
        self._curves += other._curves
        self._got_ious += other._got_ious

    def curves(self) -> dict[str, np.ndarray]:
        return {key: np.mean([c[key] for c in self._curves], axis=0) for key in self._curves[0]}

    def compute(self) -> dict[str, float]:
        if not self._curves:
            raise ValueError("no sequence was scored")
        mean = self.curves()
        ious = np.concatenate(self._got_ious)
        got = ({"ao": float(ious.mean()), "sr50": float((ious > 0.5).mean()), "sr75": float((ious > 0.75).mean())}
               if len(ious) else {"ao": float("nan"), "sr50": float("nan"), "sr75": float("nan")})
        return {"success_auc": float(mean["success"].mean()), "precision": float(mean["precision"][20]),
                "norm_precision": float(mean["norm_precision"][20]), **got}
