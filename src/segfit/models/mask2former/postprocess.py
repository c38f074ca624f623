"""Query predictions of one image → a semantic map, scored instance masks or a panoptic map (at the original size).

The three rules are Mask2Former's (``semantic_inference``, ``instance_inference``, ``panoptic_inference``):
semantic sums the queries' mask probabilities weighted by their class probabilities; instance keeps the top-k
(query, class) pairs scored by class probability × mean mask probability inside the mask; panoptic keeps
confident queries and gives each pixel to the query with the highest class × mask probability, dropping segments
mostly hidden by others and merging stuff segments of one class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass
class Instances:
    masks: Tensor
    """K×H×W bool."""
    labels: Tensor
    """K class indices."""
    scores: Tensor


@dataclass
class Panoptic:
    segment_map: np.ndarray
    """H×W int64: segment id (1, 2, ...) of each pixel, 0 where no segment."""
    segments: list[dict]
    """One per id: ``{"id", "label" (class index), "isthing", "score"}``."""


def masks_to_original(mask_logits: Tensor, resized_hw: tuple[int, int], original_hw: tuple[int, int]) -> Tensor:
    """Q×h×w logits of a padded input (stride 4) → Q×H×W logits at the original size: upsample to the padded input,
    crop the padding away, resize to the original."""
    padded = (mask_logits.shape[-2] * 4, mask_logits.shape[-1] * 4)
    up = F.interpolate(mask_logits[None], size=padded, mode="bilinear", align_corners=False)
    up = up[..., : resized_hw[0], : resized_hw[1]]
    return F.interpolate(up, size=original_hw, mode="bilinear", align_corners=False)[0]


def class_probs(class_logits: Tensor) -> Tensor:
    """Q×(C+1) logits → Q×C probabilities (the last, "no object", dropped after the softmax)."""
    return class_logits.float().softmax(-1)[:, :-1]


def semantic_map(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """H×W class indices: argmax over classes of Σ_q p(class | q) · sigmoid(mask_q)."""
    return torch.einsum("qc,qhw->chw", class_probs(class_logits), mask_logits.float().sigmoid()).argmax(0)


def instances(class_logits: Tensor, mask_logits: Tensor, topk: int) -> Instances:
    scores = class_probs(class_logits)
    num_classes = scores.shape[1]
    top_scores, flat = scores.flatten().topk(min(topk, scores.numel()))
    queries, labels = flat // num_classes, flat % num_classes
    masks = mask_logits[queries] > 0
    mask_scores = (mask_logits[queries].sigmoid() * masks).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp_min(1)
    return Instances(masks, labels, top_scores * mask_scores)


def panoptic(class_logits: Tensor, mask_logits: Tensor, is_thing: np.ndarray, object_mask_threshold: float,
             overlap_threshold: float) -> Panoptic:
    probs = class_logits.float().softmax(-1)
    scores, labels = probs.max(-1)
    keep = (labels < probs.shape[1] - 1) & (scores > object_mask_threshold)
    scores, labels, mask_probs = scores[keep], labels[keep], mask_logits[keep].float().sigmoid()
    height, width = mask_logits.shape[-2:]
    segment_map = np.zeros((height, width), np.int64)
    segments: list[dict] = []
    if not len(scores):
        return Panoptic(segment_map, segments)
    owner = (scores[:, None, None] * mask_probs).argmax(0)
    stuff_ids: dict[int, int] = {}
    for k in range(len(scores)):
        label = int(labels[k])
        own = (owner == k) & (mask_probs[k] >= 0.5)
        area, full = int(own.sum()), int((mask_probs[k] >= 0.5).sum())
        if not area or not full or area / full < overlap_threshold:
            continue
        thing = bool(is_thing[label])
        if not thing and label in stuff_ids:  # stuff of one class is one segment
            segment_map[own.cpu().numpy()] = stuff_ids[label]
            continue
        segment_id = len(segments) + 1
        stuff_ids.update({} if thing else {label: segment_id})
        segment_map[own.cpu().numpy()] = segment_id
        segments.append({"id": segment_id, "label": label, "isthing": thing, "score": float(scores[k])})
    return Panoptic(segment_map, segments)
