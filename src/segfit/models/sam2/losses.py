"""SAM 2 training losses for one prompting step, batched over objects, at full resolution, at 1/4 or on points.

The maths of the official ``MultiStepMultiMasksAndIous`` (``training/loss_fns.py``): sigmoid focal + dice on the
best of the predicted masks, L1 between the IoU head and the actual IoU, BCE on "the object is present". On top
of it, an optional ``valid`` mask drops ignored pixels (e.g. COCO crowd regions) from every pixel sum.
Pixel tensors are ``(..., H, W)``; ``targets`` and ``valid`` broadcast against the logits.

Where the decoder's low-resolution logits meet the ground truth is a choice (``MaskTargets``): ``full`` upsamples
them to the model resolution (official); ``low`` sums the ground truth over each low-resolution pixel instead, which
gives exactly the full-resolution loss of the logits upsampled by nearest neighbour at 1/16 of the pixels;
``points`` evaluates the losses at importance-sampled points (Mask2Former / PointRend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from segfit.engine.distributed import loss_divisor

Resolution = Literal["full", "low", "points"]


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


LOSS_KEYS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


def _true_class_focal(logits: Tensor, gamma: float) -> Tensor:
    """−log σ(x) · (1 − σ(x))^γ: the unweighted focal loss of logit x for the class it should predict (pass −x for
    a negative pixel)."""
    return F.softplus(-logits) * torch.sigmoid(-logits) ** gamma


def _weighted_sum(values: Tensor, weight: Tensor | None) -> Tensor:
    """Σ over the last two (pixel) dimensions of ``values · weight`` (``weight`` None = all 1)."""
    return (values if weight is None else values * weight).flatten(-2).sum(-1)


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, valid: Tensor | None = None
) -> Tensor:
    """RetinaNet focal loss averaged over the (valid) pixels of each mask → shape ``logits.shape[:-2]``.

    Float targets t in [0, 1] are the fraction of the pixel that is object: its loss is t · (positive loss) +
    (1 − t) · (negative loss), which equals the binary loss for t ∈ {0, 1} and, for the sums ``low_res_targets``
    makes, the mean binary loss over the pixels a low-resolution pixel covers (bool targets take a cheaper path
    to the same values). ``valid`` is bool (False = ignored pixel) or a float pixel weight (how many
    full-resolution pixels a low-resolution pixel stands for). ``alpha < 0`` disables the class weighting (with
    ``gamma = 0`` this is plain BCE).
    """
    positive_weight, negative_weight = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    if targets.dtype == torch.bool:  # one evaluation per pixel, at the logit of the pixel's own class
        class_weight = torch.where(targets, positive_weight, negative_weight).to(logits.dtype)
        loss = _true_class_focal(torch.where(targets, logits, -logits), gamma) * class_weight
    else:
        targets = targets.to(logits.dtype)
        loss = (targets * positive_weight * _true_class_focal(logits, gamma)
                + (1 - targets) * negative_weight * _true_class_focal(-logits, gamma))
    if valid is None:
        return loss.flatten(-2).mean(-1)
    weight = valid.to(logits.dtype).expand_as(loss)
    return _weighted_sum(loss, weight) / weight.flatten(-2).sum(-1).clamp_min(1)


def dice_loss(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """1 − (2·Σ p·t + 1) / (Σ p + Σ t + 1) per mask, p = sigmoid(logits); the +1 keeps empty masks finite.

    Sums run over the (weighted) pixels; targets and ``valid`` as in ``sigmoid_focal_loss``.
    """
    targets = targets.to(logits.dtype)
    weight = None if valid is None else valid.to(logits.dtype)
    prob = logits.sigmoid() if weight is None else logits.sigmoid() * weight
    numerator = 2 * _weighted_sum(prob, targets)
    return 1 - (numerator + 1) / (prob.flatten(-2).sum(-1) + _weighted_sum(targets, weight) + 1)


def actual_iou(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """IoU of ``logits > 0`` against the targets per mask; 0 when both are empty (the IoU head's training target).

    With fractional targets and pixel counts as ``valid`` (``low_res_targets``) this is the exact IoU of the
    prediction upsampled by nearest neighbour against the full-resolution ground truth.
    """
    pred = (logits > 0).float()
    targets = targets.float()
    weight = None if valid is None else valid.float()
    inter = _weighted_sum(pred * targets, weight)
    union = _weighted_sum(pred + (1 - pred) * targets, weight)
    return inter / union.clamp_min(1)


def low_res_targets(gt_masks: Tensor, valid: Tensor | None, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Ground truth ``(N, H, W)`` bool for losses on ``size`` logits: per low-resolution pixel, the fraction of its
    valid full-resolution pixels that are object ``(N, 1, h, w)`` and their number (``(1 or N, 1, h, w)``).

    Sums over whole blocks (area pooling; H, W multiples of h, w, as SAM 2's 4× always are): the focal, dice and IoU
    functions above then give, on the low-resolution logits, their full-resolution values for those logits
    upsampled by nearest neighbour, smoothing constant included.
    """
    h, w = gt_masks.shape[-2:]
    if h % size[0] or w % size[1]:
        logits = f"{size[0]}×{size[1]}"
        raise ValueError(f"low_res_targets: ground truth {h}×{w} is not a multiple of the logits' {logits}")
    scale = h * w / (size[0] * size[1])
    valid_map = gt_masks.new_ones(h, w) if valid is None else valid
    valid_map = (valid_map[None] if valid_map.dim() == 2 else valid_map)[:, None].float()
    count = F.interpolate(valid_map, size=size, mode="area") * scale
    inside = F.interpolate((gt_masks[:, None] & valid_map.bool()).float(), size=size, mode="area") * scale
    return inside / count.clamp_min(1e-6), count


def point_sample(values: Tensor, points: Tensor) -> Tensor:
    """``values`` ``(B, C, H, W)`` read at ``points`` ``(B, P, 2)`` (x, y in [0, 1] of the image extent) by bilinear
    interpolation, pixel centres at (i + 0.5) / size (``align_corners=False``, as Mask2Former) → ``(B, C, P)``."""
    return F.grid_sample(values, 2 * points[:, :, None] - 1, align_corners=False)[..., 0]


def uncertain_points(
    logits: Tensor, num_points: int, oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75
) -> Tensor:
    """Where to evaluate a point loss on ``(B, 1, h, w)`` mask logits → ``(B, num_points, 2)`` in [0, 1]².

    Mask2Former's ``get_uncertain_point_coords_with_randomness``: ``num_points · oversample_ratio`` uniform random
    candidates, of which the ``importance_sample_ratio · num_points`` with the smallest |logit| (most uncertain) are
    kept, plus uniform random points for the rest. Uses torch's global generator.
    """
    count = len(logits)
    candidates = torch.rand(count, int(num_points * oversample_ratio), 2, device=logits.device)
    num_uncertain = int(importance_sample_ratio * num_points)
    uncertainty = -point_sample(logits.detach().float(), candidates)[:, 0].abs()
    chosen = uncertainty.topk(num_uncertain, dim=1).indices
    uncertain = candidates.gather(1, chosen[..., None].expand(-1, -1, 2))
    uniform = torch.rand(count, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat((uncertain, uniform), dim=1)


class MaskTargets:
    """The ground truth of N objects, prepared once for the mask terms of every prompting step at one resolution.

    ``gt_masks`` ``(N, H, W)`` bool at the model resolution, ``valid`` ``(H, W)`` or ``(N, H, W)`` bool (False =
    ignored; None when nothing is: the cheaper unweighted sums, decided by the caller on the host so that no
    step waits for the device to say so), ``low_size`` the decoder's low-resolution mask size. Whether an object is present is always decided
    on its full-resolution mask (a tiny object stays present at 1/4 resolution).
    """

    def __init__(
        self,
        gt_masks: Tensor,
        valid: Tensor | None,
        low_size: tuple[int, int],
        resolution: Resolution = "full",
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ):
        if resolution not in ("full", "low", "points"):
            raise ValueError(f"resolution: unknown {resolution!r}; use 'full', 'low' or 'points'")
        self.gt, self.valid, self.resolution = gt_masks, valid, resolution
        self.present = gt_masks.flatten(1).any(dim=1)
        self.point_args = (num_points, oversample_ratio, importance_sample_ratio)
        if resolution != "full":  # the IoU target of ``points`` is the low-resolution one too
            self.fraction, self.count = low_res_targets(gt_masks, valid, low_size)
        if resolution == "points":  # what the points read, as (N, 1, H, W) float images
            self.point_gt = gt_masks[:, None].float()
            self.point_valid = None
            if valid is not None:
                valid_map = (valid[None] if valid.dim() == 2 else valid)[:, None].float()
                self.point_valid = valid_map.expand(len(gt_masks), -1, -1, -1)

    def mask_terms(self, low_logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Focal, dice and actual IoU ``(N, M)`` of low-resolution logits ``(N, M, h, w)``."""
        logits = low_logits.float()
        if self.resolution == "full":
            if not logits.requires_grad:
                return self._full_terms(logits)
            # Recomputed in the backward pass: only the low-resolution logits are kept, instead of about eight
            # full-resolution tensors per mask (upsampled logits, sigmoid, focal factors) for every prompting step.
            return checkpoint(self._full_terms, logits, use_reentrant=False)
        ious = actual_iou(logits.detach(), self.fraction, self.count)
        if self.resolution == "low":
            focal = sigmoid_focal_loss(logits, self.fraction, valid=self.count)
            return focal, dice_loss(logits, self.fraction, self.count), ious
        return (*self._point_terms(logits), ious)

    def _full_terms(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Focal, dice and actual IoU of the logits upsampled (bilinear) to the ground truth's resolution."""
        high = logits
        if logits.shape[-2:] != self.gt.shape[-2:]:
            high = F.interpolate(logits, size=self.gt.shape[-2:], mode="bilinear", align_corners=False)
        valid = None if self.valid is None else (self.valid[:, None] if self.valid.dim() == 3 else self.valid)
        targets = self.gt[:, None]
        return (sigmoid_focal_loss(high, targets, valid=valid), dice_loss(high, targets, valid=valid),
                actual_iou(high.detach(), targets, valid=valid))

    def _point_terms(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Focal and dice at importance-sampled points of each of the M masks (its own points per mask)."""
        n, m, h, w = logits.shape
        num_points = self.point_args[0]
        flat = logits.reshape(n * m, 1, h, w)
        points = uncertain_points(flat, *self.point_args)  # (N·M, P, 2)
        at_points = point_sample(flat, points).reshape(n, m, 1, num_points)
        per_object = points.reshape(n, m * num_points, 2)  # each object's M point sets read from its own mask
        targets = point_sample(self.point_gt, per_object).reshape(n, m, 1, num_points)
        valid = None
        if self.point_valid is not None:
            valid = point_sample(self.point_valid, per_object).reshape(n, m, 1, num_points)
        return sigmoid_focal_loss(at_points, targets, valid=valid), dice_loss(at_points, targets, valid=valid)


def object_terms(
    focal: Tensor,
    dice: Tensor,
    ious: Tensor,
    iou_pred: Tensor,
    present: Tensor,
    object_score_logits: Tensor | None,
    weights: LossWeights = LossWeights(),
    supervise_all_iou: bool = True,
    iou_use_l1: bool = True,
) -> dict[str, Tensor]:
    """Per-object terms ``(N,)`` of one step from per-mask focal, dice, actual IoU and predicted IoU ``(N, M)``.

    Per object, the mask with the lowest ``weights.mask``·focal + ``weights.dice``·dice gets the mask and dice
    terms; the IoU head is regressed (L1, or MSE) on all M masks (mean) or on the chosen one only. With object
    scores, an object whose ground truth is empty (``present`` False) gets only the presence BCE (as the reference,
    whose ``pred_obj_scores`` gates this; without object scores empty objects are trained towards an empty mask).
    Returns the four ``LOSS_KEYS`` (``loss_class`` 0 without object scores), ``iou`` (the chosen mask's actual
    IoU, detached) and ``present`` (float).
    """
    best = (focal * weights.mask + dice * weights.dice).argmin(dim=1, keepdim=True)
    iou_error = (iou_pred.float() - ious).abs() if iou_use_l1 else (iou_pred.float() - ious) ** 2
    loss_iou = iou_error.mean(dim=1) if supervise_all_iou else iou_error.gather(1, best)[:, 0]
    present = present.float()
    if object_score_logits is None:
        gate, loss_class = torch.ones_like(present), torch.zeros_like(present)
    else:
        gate = present
        loss_class = F.binary_cross_entropy_with_logits(object_score_logits.float()[:, 0], present, reduction="none")
    return {
        "loss_mask": focal.gather(1, best)[:, 0] * gate,
        "loss_dice": dice.gather(1, best)[:, 0] * gate,
        "loss_iou": loss_iou * gate,
        "loss_class": loss_class,
        "iou": ious.gather(1, best)[:, 0].detach(),
        "present": present,
    }


def step_terms(
    low_logits: Tensor,
    iou_pred: Tensor,
    object_score_logits: Tensor | None,
    targets: MaskTargets,
    weights: LossWeights = LossWeights(),
    supervise_all_iou: bool = True,
    iou_use_l1: bool = True,
) -> dict[str, Tensor]:
    """``object_terms`` of the decoder's low-resolution logits ``(N, M, h, w)`` at ``targets``' resolution."""
    focal, dice, ious = targets.mask_terms(low_logits)
    return object_terms(focal, dice, ious, iou_pred, targets.present, object_score_logits, weights,
                        supervise_all_iou, iou_use_l1)


def total_losses(terms: list[dict[str, Tensor]], num_objects: int, weights: LossWeights) -> dict[str, Tensor]:
    """Per-object terms of any number of steps (and object groups) → each of ``LOSS_KEYS`` summed over all of them
    and divided by ``num_objects`` (at least 1), and their weighted sum ``loss``, as the official trainer reduces.

    Under data parallelism the divisor is the mean of the processes' ``num_objects``, as the official trainer's:
    the mean of the processes' gradients is then that of one process with every object of their batches."""
    scale = 1 / loss_divisor(num_objects, terms[0]["loss_mask"].device)
    out = {key: sum(t[key].sum() for t in terms) * scale for key in LOSS_KEYS}
    out["loss"] = (out["loss_mask"] * weights.mask + out["loss_dice"] * weights.dice + out["loss_iou"] * weights.iou
                   + out["loss_class"] * weights.object_score)
    return out


def mean_iou(terms: list[dict[str, Tensor]]) -> Tensor:
    """Mean chosen-mask IoU over the present objects of ``terms`` (0 if none), detached: for progress bars."""
    present = torch.cat([t["present"] for t in terms])
    return (torch.cat([t["iou"] for t in terms]) * present).sum() / present.sum().clamp_min(1)


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
    """The loss terms of one prompting step with logits at the ground truth's resolution, averaged over objects.

    ``pred_masks`` ``(N, M, H, W)`` logits (M = 1, or 3 for multimask output), ``iou_pred`` ``(N, M)`` predicted
    IoUs (after the sigmoid, as Hugging Face returns them), ``gt_masks`` ``(N, H, W)`` bool,
    ``object_score_logits`` ``(N, 1)``, ``valid`` ``(N, H, W)`` or ``(H, W)`` bool (False = ignored pixel).
    The terms are ``object_terms``'; computed in float32 whatever the autocast dtype. Returns ``loss_mask``,
    ``loss_dice``, ``loss_iou``, ``loss_class``, each summed over objects and divided by their number, their
    weighted sum ``loss``, and ``iou``: the mean actual IoU of the chosen masks over objects with a non-empty
    ground truth (detached, for the progress bar).
    """
    if pred_masks.dim() != 4 or gt_masks.shape != (pred_masks.shape[0], *pred_masks.shape[2:]):
        raise ValueError(
            f"sam2_losses: pred_masks {tuple(pred_masks.shape)} must be (N, M, H, W) with gt_masks (N, H, W), "
            f"got gt_masks {tuple(gt_masks.shape)}"
        )
    if iou_pred.shape != pred_masks.shape[:2]:
        expected = tuple(pred_masks.shape[:2])
        raise ValueError(f"sam2_losses: iou_pred {tuple(iou_pred.shape)} must be (N, M) = {expected}")
    targets = MaskTargets(gt_masks, valid, tuple(gt_masks.shape[-2:]))
    terms = step_terms(pred_masks, iou_pred, object_score_logits, targets, weights, supervise_all_iou, iou_use_l1)
    return {**total_losses([terms], len(gt_masks), weights), "iou": mean_iou([terms])}
