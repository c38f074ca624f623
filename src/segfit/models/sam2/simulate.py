"""Prompt simulation for one image's objects during training: prompts → decoder → loss terms.

The whole interactive episode of the official trainer lives here, so the recipe's training step stays a loop
over images. Every random draw uses torch's global generator, which the engine saves and restores (exact resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Sam2Model

from segfit.models.sam2.losses import LossWeights, sam2_losses
from segfit.models.sam2.spec import Sam2PromptSpec
from segfit.prompts import sample_points_in_masks


def prompt_and_score(model: Sam2Model, embeddings: list[Tensor], gt: Tensor, valid: Tensor, prompts: Sam2PromptSpec,
                     weights: LossWeights, multimask_output: bool) -> dict[str, Tensor]:
    """Loss terms of one image: ``embeddings`` of that image (batch 1), ``gt`` (N,S,S) bool at model resolution."""
    # the same click count for every object of an image keeps the prompt tensor rectangular
    k = int(torch.randint(1, prompts.max_points + 1, ()))
    points, labels = sample_points_in_masks(gt, k)
    out = model(image_embeddings=embeddings, input_points=points[None], input_labels=labels[None],
                multimask_output=multimask_output and k == 1)
    logits = F.interpolate(out.pred_masks[0], size=gt.shape[-2:], mode="bilinear", align_corners=False)
    return sam2_losses(logits, out.iou_scores[0], gt, out.object_score_logits[0], weights, valid=valid)
