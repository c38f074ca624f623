"""Prompt simulation for a batch's objects during training: an interactive episode → loss terms.

As the official ``SAM2Train``: per object a first prompt (a click, a noisy box or the ground-truth mask, drawn
with the spec's probabilities), then ``num_correction_clicks`` correction clicks, one per step, each re-predicting
with all clicks so far and the previous step's low-res logits as mask input; the losses of every step are summed
(docs/prompts-and-losses.md).

The objects of every image of the batch are flattened and decoded together: each gathers its own image's
embeddings by index (the official ``obj_to_frame_idx``). Objects that drew the same prompt kind share one decoder
call per step, so a step makes 1 + ``num_correction_clicks`` calls per kind present, whatever the batch size: they
have the same number of prompt tokens, so none needs padding tokens (which are real tokens to the decoder and
change its output), and the multimask flag, one per call, is right for each kind. The kinds are drawn on the host
and their object indices copied to the device without waiting; nothing else leaves the device, so with random
first clicks and uniform correction clicks (the defaults) the episode needs no host sync. Every random draw uses
torch's global generators, which the engine saves and restores (exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Sam2Model

from segfit.engine.transfer import host_to_device
from segfit.models.sam2.losses import LossWeights, MaskTargets, mean_iou, step_terms, total_losses
from segfit.models.sam2.predict import predict_low_res
from segfit.models.sam2.spec import Sam2LossSpec, Sam2PromptSpec
from segfit.prompts import NOT_A_POINT, box_to_points, center_points, next_click, noisy_boxes, sample_points_in_masks

PROMPT_KINDS = ("click", "box", "mask")
"""Index of each first-prompt kind in ``draw_prompt_kinds``' output."""

MASK_PROMPT_LOGIT = 10.0
"""A ground-truth mask prompt becomes logits ±10, as the official trainer's ``_use_mask_as_output`` writes it."""


def draw_prompt_kinds(num_objects: int, prompts: Sam2PromptSpec) -> Tensor:
    """Each object's first-prompt kind (an index into ``PROMPT_KINDS``), drawn independently on the host (CPU
    generator) → ``(N,)`` int64 on the CPU."""
    probs = torch.tensor([prompts.prob_click, prompts.prob_box, prompts.prob_mask])
    return torch.multinomial(probs, num_objects, replacement=True)


def mask_prompt(gt: Tensor, size: tuple[int, int]) -> Tensor:
    """Ground-truth masks ``(n, H, W)`` → low-res mask-input logits ``(n, 1, h, w)``: ±10 downsampled with
    antialiasing, what the official trainer outputs for a mask-prompted frame (and would feed to a correction step)."""
    logits = (2 * gt[:, None].float() - 1) * MASK_PROMPT_LOGIT
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class _Group:
    """Objects sharing a first-prompt kind: their ground truth, image, ignore mask and every prompt given so far."""

    kind: str
    gt: Tensor
    image_index: Tensor | None
    valid: Tensor | None
    targets: MaskTargets
    points: Tensor | None
    labels: Tensor | None
    mask_input: Tensor | None = None

    def multimask(self, step: int) -> bool:
        """Official rule: three masks only for a single click (the first step of 1-click prompts)."""
        return step == 0 and self.kind == "click" and self.points is not None and self.points.shape[1] == 1

    def add_correction(self, low: Tensor, iou_pred: Tensor, prompts: Sam2PromptSpec) -> None:
        point, label, self.mask_input = correction_click(low, iou_pred, self.gt, self.valid, prompts)
        self.points = point if self.points is None else torch.cat((self.points, point), dim=1)
        self.labels = label if self.labels is None else torch.cat((self.labels, label), dim=1)


def correction_click(low: Tensor, iou_pred: Tensor, gt: Tensor, valid: Tensor | None,
                     prompts: Sam2PromptSpec) -> tuple[Tensor, Tensor, Tensor]:
    """One more click per object from the errors of the mask the model ranks best (or, with
    ``prob_click_from_gt``, inside the ground truth) → point (n, 1, 2), label (n, 1), and that mask's low-res
    logits (n, 1, h, w), the next step's mask input (not detached, as the official trainer)."""
    best = iou_pred.argmax(dim=1)[:, None, None, None].expand(-1, 1, *low.shape[-2:])
    chosen = low.gather(1, best)
    pred = F.interpolate(chosen.detach(), size=gt.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
    from_gt = torch.rand(len(pred), device=pred.device) < prompts.prob_click_from_gt
    pred = pred & ~from_gt[:, None, None]  # an empty prediction: the click comes from the ground truth
    if valid is not None:
        gt, pred = gt & valid, pred & valid
    point, label = next_click(gt, pred, prompts.correction_click)
    return point, label, chosen


def first_points(kind: str, gt: Tensor, num_clicks: int, prompts: Sam2PromptSpec) -> tuple[Tensor, Tensor]:
    """Step-0 points (n, k, 2) and labels (n, k) of objects prompted by ``click`` or ``box``. An object whose mask
    is empty gets "not a point" tokens only (nothing to click; its box would be degenerate), so its only training
    signal is "absent"."""
    if kind == "box":
        points, labels = box_to_points(noisy_boxes(gt, prompts.box_noise, prompts.box_noise_max))
    elif prompts.click_at == "center":
        points, labels = center_points(gt)
        if num_clicks > 1:
            more_points, more_labels = sample_points_in_masks(gt, num_clicks - 1)
            points, labels = torch.cat((points, more_points), dim=1), torch.cat((labels, more_labels), dim=1)
    else:
        points, labels = sample_points_in_masks(gt, num_clicks)
    return points, labels.masked_fill(~gt.flatten(1).any(dim=1)[:, None], NOT_A_POINT)


def _groups(gt: Tensor, image_index: Tensor | None, valid: Tensor | None, prompts: Sam2PromptSpec,
            loss: Sam2LossSpec, low_size: tuple[int, int]) -> list[_Group]:
    """The objects split by first-prompt kind. The draw and the split happen on the host; each group's object
    indices reach the device without a sync (a group holding every object takes the tensors as they are)."""
    kinds = draw_prompt_kinds(len(gt), prompts)
    if valid is not None and image_index is not None:
        valid = valid[image_index]  # (N, S, S): each object's own image's ignore mask
    groups = []
    for index, kind in enumerate(PROMPT_KINDS):
        members = (kinds == index).nonzero()[:, 0]
        if not len(members):
            continue
        rows = None if len(members) == len(gt) else host_to_device(members, gt.device)
        group_gt = _take(gt, rows)
        group_valid = valid if valid is None or valid.dim() == 2 else _take(valid, rows)
        targets = MaskTargets(group_gt, group_valid, low_size, loss.resolution, loss.num_points,
                              loss.oversample_ratio, loss.importance_sample_ratio)
        groups.append(_Group(kind, group_gt, _take(image_index, rows), group_valid, targets, None, None))
    return groups


def _take(values: Tensor | None, rows: Tensor | None) -> Tensor | None:
    """``values[rows]``; None rows mean all of them."""
    return values if values is None or rows is None else values[rows]


def prompt_and_score(model: Sam2Model, embeddings: list[Tensor], gt: Tensor, valid: Tensor | None,
                     prompts: Sam2PromptSpec, loss: Sam2LossSpec, multimask_output: bool,
                     image_index: Tensor | None = None) -> dict[str, Tensor]:
    """Loss terms of one episode for N objects: ``gt`` (N,S,S) bool at the model resolution, ``embeddings`` the
    three levels of the batch's B images, ``image_index`` (N,) the image of each object (None: B is 1), ``valid``
    (S,S) or (B,S,S) bool, False on ignored pixels (None: nothing ignored).

    Returns ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` (summed over the 1 + num_correction_clicks
    steps, divided by N), their weighted sum ``loss``, and ``iou``: the mean actual IoU of the present objects at
    the last step (detached).
    """
    if not len(gt):
        raise ValueError("prompt_and_score: no objects (the dataset keeps only images with objects)")
    weights = LossWeights(loss.mask, loss.dice, loss.iou, loss.object_score)
    low_size = tuple(embeddings[0].shape[-2:])  # decoder output and mask input: the stride-4 features' size
    groups = _groups(gt, image_index, valid, prompts, loss, low_size)
    num_clicks = int(torch.randint(1, prompts.max_points + 1, ()))  # a host draw, the same for every click object
    for group in groups:
        if group.kind == "mask":
            group.mask_input = mask_prompt(group.gt, low_size)
        else:
            group.points, group.labels = first_points(group.kind, group.gt, num_clicks, prompts)
    terms = []
    for step in range(prompts.num_correction_clicks + 1):
        for group in groups:
            low, iou_pred, object_scores = predict_low_res(model, embeddings, group.points, group.labels,
                                                           mask_input=group.mask_input,
                                                           multimask_output=multimask_output and group.multimask(step),
                                                           image_index=group.image_index)
            terms.append(step_terms(low, iou_pred, object_scores, group.targets, weights, loss.supervise_all_iou))
            if step < prompts.num_correction_clicks:
                group.add_correction(low, iou_pred, prompts)
    return {**total_losses(terms, len(gt), weights), "iou": mean_iou(terms[-len(groups):])}
