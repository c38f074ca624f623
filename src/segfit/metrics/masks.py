"""Mask IoU and its running mean over objects."""

from __future__ import annotations

import torch
from torch import Tensor


def mask_iou(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """IoU of bool masks ``(..., H, W)`` → ``(...)``, counting only ``valid`` pixels when given (broadcast).

    Both masks empty (within the valid pixels) counts as a perfect 1.0: predicting "nothing" for an absent object
    is right. (The loss's IoU-head target uses 0 there instead, as the official trainer.)
    """
    if pred.shape != gt.shape:
        raise ValueError(f"mask_iou: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    inter = (pred & gt).flatten(-2).sum(-1)
    union = (pred | gt).flatten(-2).sum(-1)
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0)


class MeanIoU:
    """Mean of per-object IoUs accumulated over batches (every object weighs the same)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, ious: Tensor) -> None:
        self.total += float(ious.double().sum())
        self.count += ious.numel()

    def merge(self, other: MeanIoU) -> None:
        """Add the objects ``other`` saw (another process's part of a split): sums and counts add up."""
        self.total += other.total
        self.count += other.count

    def compute(self) -> float:
        """The mean IoU; NaN before any object was seen."""
        return self.total / self.count if self.count else float("nan")
