"""The interactive-segmentation click protocol (RITM / SAM style) and its metrics, mIoU@k and NoC@IoU.

A simulated user clicks once per object at the point farthest from the object's boundary, then, after every
prediction, at the centre of the largest error region (positive in a miss, negative in a false alarm). All clicks
accumulate and the previous prediction's low-res logits are fed back, as an interactive tool would.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from segfit.metrics.masks import mask_iou
from segfit.prompts import center_points, next_click

PredictFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]
"""(points ``(N, k, 2)``, labels ``(N, k)``, previous low-res logits ``(N, 1, h, w)`` or None) →
(predicted bool masks ``(N, H, W)``, low-res logits ``(N, 1, h, w)``); the recipe supplies it (it runs the model)."""

MIOU_CLICKS = (1, 3, 5)
NOC_THRESHOLDS = {"noc@85": 0.85, "noc@90": 0.90}


def click_protocol(gt: Tensor, predict: PredictFn, max_clicks: int = 20, valid: Tensor | None = None) -> Tensor:
    """IoU of every object after 1..max_clicks clicks → ``(N, max_clicks)``.

    ``valid`` (``(N, H, W)`` or ``(H, W)`` bool) leaves ignored pixels out of the IoU and of the error regions
    the clicks are placed in.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks: must be at least 1, got {max_clicks}")
    points, labels = center_points(gt)
    target = gt if valid is None else gt & valid
    low_res: Tensor | None = None
    ious = []
    for click in range(max_clicks):
        pred, low_res = predict(points, labels, low_res)
        ious.append(mask_iou(pred, gt, valid))
        if click + 1 < max_clicks:
            new_points, new_labels = next_click(target, pred if valid is None else pred & valid, "center")
            points, labels = torch.cat((points, new_points), dim=1), torch.cat((labels, new_labels), dim=1)
    return torch.stack(ious, dim=1)


def noc(ious_per_click: Tensor, threshold: float, max_clicks: int = 20) -> Tensor:
    """Number of clicks each object needs to reach IoU ≥ ``threshold`` → ``(N,)`` int64; ``max_clicks`` if never
    (within the first ``max_clicks`` clicks)."""
    ious = ious_per_click[:, :max_clicks]
    reached = ious >= ious.new_tensor(threshold)  # in the IoUs' dtype: a float32 IoU of exactly 9/10 reaches 0.9
    first = reached.long().argmax(dim=1) + 1
    return torch.where(reached.any(dim=1), first, torch.full_like(first, max_clicks))


class ClickMetrics:
    """Running mIoU@1/3/5 and NoC@85/90 over objects.

    NoC is capped at the number of clicks run (C, the width of the IoU table; 20 in the literature), and mIoU@k is
    reported only for k ≤ C. Every update must have the same C.
    """

    def __init__(self) -> None:
        self.iou_sums: Tensor | None = None
        self.noc_sums = dict.fromkeys(NOC_THRESHOLDS, 0)
        self.count = 0

    def update(self, ious_per_click: Tensor) -> None:
        ious = ious_per_click.detach().cpu()
        clicks = ious.shape[1]
        if self.iou_sums is not None and clicks != len(self.iou_sums):
            earlier = len(self.iou_sums)
            raise ValueError(f"ClickMetrics.update: {clicks} clicks per object, earlier updates had {earlier}")
        sums = ious.double().sum(dim=0)
        self.iou_sums = sums if self.iou_sums is None else self.iou_sums + sums
        for key, threshold in NOC_THRESHOLDS.items():
            self.noc_sums[key] += int(noc(ious, threshold, clicks).sum())
        self.count += len(ious)

    def merge(self, other: ClickMetrics) -> None:
        """Add the objects ``other`` saw (another process's part of a split): sums and counts add up."""
        if other.iou_sums is None:
            return
        if self.iou_sums is not None and len(self.iou_sums) != len(other.iou_sums):
            raise ValueError(f"ClickMetrics.merge: {len(other.iou_sums)} clicks per object, this one has "
                             f"{len(self.iou_sums)}")
        self.iou_sums = other.iou_sums.clone() if self.iou_sums is None else self.iou_sums + other.iou_sums
        for key, total in other.noc_sums.items():
            self.noc_sums[key] += total
        self.count += other.count

    def compute(self) -> dict[str, float]:
        """``miou@k`` and ``noc@85`` / ``noc@90`` (all NaN before any object was seen)."""
        if self.iou_sums is None or not self.count:
            return dict.fromkeys([*(f"miou@{k}" for k in MIOU_CLICKS), *NOC_THRESHOLDS], float("nan"))
        clicks = len(self.iou_sums)
        out = {f"miou@{k}": float(self.iou_sums[k - 1]) / self.count for k in MIOU_CLICKS if k <= clicks}
        out.update({key: total / self.count for key, total in self.noc_sums.items()})
        return out
