"""SAM 2 training losses for one prompting step, batched over objects.

The maths of the official ``MultiStepMultiMasksAndIous`` (``training/loss_fns.py``): sigmoid focal + dice on the
best of the predicted masks, L1 between the IoU head and the actual IoU, BCE on "the object is present". On top
of it, an optional ``valid`` mask drops ignored pixels (e.g. COCO crowd regions) from every pixel sum.
Pixel tensors are ``(..., H, W)``; ``targets`` and ``valid`` broadcast against the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; defaults are the official trainer's (and the paper's 20:1:1:1)."""

    mask: float = 20.0
    """Sigmoid focal loss."""
    dice: float = 1.0
    iou: float = 1.0
    """IoU-head regression."""
    object_score: float = 1.0
    """Object-presence BCE."""


def _pixel_weights(logits: Tensor, valid: Tensor | None) -> Tensor:
    """1 for counted pixels, 0 for ignored ones, broadcast to the logits' shape."""
    if valid is None:
        return torch.ones_like(logits)
    return valid.to(logits.dtype).expand_as(logits)


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, valid: Tensor | None = None
) -> Tensor:
    """RetinaNet focal loss averaged over the (valid) pixels of each mask → shape ``logits.shape[:-2]``.

    ``alpha < 0`` disables the class weighting (with ``gamma = 0`` this is plain BCE).
    """
    targets = targets.to(logits.dtype).expand_as(logits)
    weight = _pixel_weights(logits, valid)
    prob = logits.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return (loss * weight).flatten(-2).sum(-1) / weight.flatten(-2).sum(-1).clamp_min(1)


def dice_loss(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """1 − (2·Σ p·t + 1) / (Σ p + Σ t + 1) per mask, p = sigmoid(logits); the +1 keeps empty masks finite."""
    targets = targets.to(logits.dtype).expand_as(logits)
    weight = _pixel_weights(logits, valid)
    prob = logits.sigmoid() * weight
    targets = targets * weight
    numerator = 2 * (prob * targets).flatten(-2).sum(-1)
    denominator = prob.flatten(-2).sum(-1) + targets.flatten(-2).sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def actual_iou(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """IoU of ``logits > 0`` against the targets per mask; 0 when both are empty (the IoU head's training target)."""
    pred = logits > 0
    gt = (targets > 0).expand_as(pred)
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    inter = (pred & gt).flatten(-2).sum(-1).float()
    union = (pred | gt).flatten(-2).sum(-1).float()
    return inter / union.clamp_min(1)


def sam2_losses(
    pred_masks: Tensor,
    iou_pred: Tensor,
    gt_masks: Tensor,
    object_score_logits: Tensor | None = None,
    weights: LossWeights = LossWeights(),
    valid: Tensor | None = None,
    supervise_all_iou: bool = True,
    iou_use_l1: bool = True,
) -> dict[str, Tensor]:
    """The loss terms of one prompting step, each summed over objects and divided by their number.

    ``pred_masks`` ``(N, M, H, W)`` logits at the ground truth's resolution (M = 1, or 3 for multimask output),
    ``iou_pred`` ``(N, M)`` predicted IoUs (after the sigmoid, as Hugging Face returns them), ``gt_masks``
    ``(N, H, W)`` bool, ``object_score_logits`` ``(N, 1)``, ``valid`` ``(N, H, W)`` or ``(H, W)`` bool (False =
    ignored pixel).

    Per object, the mask with the lowest ``weights.mask``·focal + ``weights.dice``·dice gets the mask and dice
    terms; the IoU head is regressed (L1, or MSE) on all M masks (mean) or on the chosen one only. With object
    scores, an object whose ground truth is empty gets only the presence BCE (as the reference, whose
    ``pred_obj_scores`` gates this; without object scores empty objects are trained towards an empty mask).
    Computed in float32 whatever the autocast dtype. Returns ``loss_mask``, ``loss_dice``, ``loss_iou``,
    ``loss_class`` (0 without object scores), their weighted sum ``loss``, and ``iou``: the detached mean actual
    IoU of the chosen masks over objects with a non-empty ground truth (for the progress bar).
    """
    if pred_masks.dim() != 4 or gt_masks.shape != (pred_masks.shape[0], *pred_masks.shape[2:]):
        raise ValueError(
            f"sam2_losses: pred_masks {tuple(pred_masks.shape)} must be (N, M, H, W) with gt_masks (N, H, W), "
            f"got gt_masks {tuple(gt_masks.shape)}"
        )
    if iou_pred.shape != pred_masks.shape[:2]:
        expected = tuple(pred_masks.shape[:2])
        raise ValueError(f"sam2_losses: iou_pred {tuple(iou_pred.shape)} must be (N, M) = {expected}")
    logits, iou_pred = pred_masks.float(), iou_pred.float()
    targets = gt_masks[:, None]
    valid = None if valid is None else (valid[:, None] if valid.dim() == 3 else valid)
    num_objects = max(len(logits), 1)

    focal = sigmoid_focal_loss(logits, targets, valid=valid)  # (N, M)
    dice = dice_loss(logits, targets, valid=valid)
    ious = actual_iou(logits.detach(), targets, valid=valid)
    iou_error = (iou_pred - ious).abs() if iou_use_l1 else (iou_pred - ious) ** 2

    best = (focal * weights.mask + dice * weights.dice).argmin(dim=1, keepdim=True)
    loss_iou = iou_error.mean(dim=1) if supervise_all_iou else iou_error.gather(1, best)[:, 0]
    present = gt_masks.flatten(1).any(dim=1).float()
    zero = logits.new_zeros(())
    if object_score_logits is None:
        gate, loss_class = torch.ones_like(present), zero
    else:
        gate = present
        loss_class = F.binary_cross_entropy_with_logits(object_score_logits.float()[:, 0], present, reduction="sum")

    terms = {
        "loss_mask": (focal.gather(1, best)[:, 0] * gate).sum() / num_objects,
        "loss_dice": (dice.gather(1, best)[:, 0] * gate).sum() / num_objects,
        "loss_iou": (loss_iou * gate).sum() / num_objects,
        "loss_class": loss_class / num_objects,
    }
    terms["loss"] = (
        terms["loss_mask"] * weights.mask
        + terms["loss_dice"] * weights.dice
        + terms["loss_iou"] * weights.iou
        + terms["loss_class"] * weights.object_score
    )
    chosen_iou = ious.gather(1, best)[:, 0]
    terms["iou"] = ((chosen_iou * present).sum() / present.sum().clamp_min(1)).detach()
    return terms
