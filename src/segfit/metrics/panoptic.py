"""Panoptic quality with panopticapi's definitions (``pq_compute_single_core`` / ``PQStat.pq_average``).

A prediction matches a ground-truth segment of its class when IoU > 0.5, where the union leaves out the
prediction's pixels on void (unlabelled) ground truth. Crowd segments are never matched or missed; an unmatched
prediction is not a false positive when more than half of it lies on void or on a crowd region of its class.
Per class PQ = ΣIoU / (TP + ½FP + ½FN), SQ = ΣIoU / TP, RQ = TP / (TP + ½FP + ½FN); classes with no TP, FP or FN
are left out of the averages over all, thing and stuff classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OFFSET = 2**31
"""Pairs of (ground-truth id, predicted id) are counted as gt · OFFSET + pred."""


@dataclass
class Segments:
    """One image's panoptic segmentation: an id map (0 = void / no segment) and what each id is."""

    id_map: np.ndarray
    """H×W int64."""
    labels: dict[int, int]
    """Segment id → class index."""
    crowd: frozenset[int] = frozenset()
    """Ground truth: ids of crowd segments."""


class PanopticQuality:
    def __init__(self, is_thing: np.ndarray):
        self.is_thing = np.asarray(is_thing, bool)
        n = len(self.is_thing)
        self.iou, self.tp, self.fp, self.fn = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)

    def update(self, gt: Segments, pred: Segments) -> None:
        if gt.id_map.shape != pred.id_map.shape:
            raise ValueError(f"ground truth {gt.id_map.shape} and prediction {pred.id_map.shape} differ in shape")
        pairs, counts = np.unique(gt.id_map.astype(np.int64) * OFFSET + pred.id_map, return_counts=True)
        overlap = {(int(p // OFFSET), int(p % OFFSET)): int(c) for p, c in zip(pairs, counts)}
        gt_area = {i: int((gt.id_map == i).sum()) for i in gt.labels}
        pred_area = {i: int((pred.id_map == i).sum()) for i in pred.labels}
        matched_gt, matched_pred = set(), set()
        for (g, p), inter in overlap.items():
            if g not in gt.labels or p not in pred.labels or g in gt.crowd or gt.labels[g] != pred.labels[p]:
                continue
            union = pred_area[p] + gt_area[g] - inter - overlap.get((0, p), 0)
            if inter / union > 0.5:
                label = gt.labels[g]
                self.tp[label] += 1
                self.iou[label] += inter / union
                matched_gt.add(g)
                matched_pred.add(p)
        crowd_of = {gt.labels[g]: g for g in gt.crowd}
        for g, label in gt.labels.items():
            if g not in matched_gt and g not in gt.crowd:
                self.fn[label] += 1
        for p, label in pred.labels.items():
            if p in matched_pred or not pred_area[p]:
                continue
            ignored = overlap.get((0, p), 0) + (overlap.get((crowd_of[label], p), 0) if label in crowd_of else 0)
            if ignored / pred_area[p] <= 0.5:
                self.fp[label] += 1

    def merge(self, other: PanopticQuality) -> None:
        """Add the segments ``other`` matched (another process's part of a split): per-class sums and counts."""
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def compute(self) -> dict[str, float]:
        """``pq``, ``sq``, ``rq`` over all classes, ``*_th`` over things, ``*_st`` over stuff (NaN with no class)."""
        out = {}
        for suffix, chosen in (("", np.ones_like(self.is_thing)), ("_th", self.is_thing), ("_st", ~self.is_thing)):
            seen = chosen & (self.tp + self.fp + self.fn > 0)
            tp, fp, fn, iou = self.tp[seen], self.fp[seen], self.fn[seen], self.iou[seen]
            denominator = tp + 0.5 * fp + 0.5 * fn
            with np.errstate(divide="ignore", invalid="ignore"):
                sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
            for name, values in (("pq", iou / denominator), ("sq", sq), ("rq", tp / denominator)):
                out[f"{name}{suffix}"] = float(values.mean()) if seen.any() else float("nan")
        return out
