"""One image → the mode's prediction at its original size, from PyTorch or from an exported ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from segfit.models.mask2former import postprocess
from segfit.models.mask2former.dataset import eval_input, test_size
from segfit.models.mask2former.labels import LabelMap
from segfit.models.mask2former.spec import Mask2FormerSpec

Forward = Callable[[Tensor], tuple[Tensor, Tensor]]
"""B×3×H×W pixel values → (B×Q×(C+1) class logits, B×Q×H/4×W/4 mask logits)."""


@dataclass
class Prediction:
    semantic: np.ndarray | None = None
    """H×W class indices."""
    instances: postprocess.Instances | None = None
    panoptic: postprocess.Panoptic | None = None


def torch_forward(model: torch.nn.Module) -> Forward:
    device = next(model.parameters()).device

    def forward(pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = model(pixel_values=pixel_values.to(device))
        return out.class_queries_logits, out.masks_queries_logits

    return forward


@torch.no_grad()
def predict(forward: Forward, image: np.ndarray, spec: Mask2FormerSpec, labels: LabelMap) -> Prediction:
    """Run the model on an H×W×3 uint8 image and post-process for ``model.mode``."""
    data, model = spec.data, spec.model
    class_logits, mask_logits = forward(eval_input(image, data.augmentation, data.pixel_mean, data.pixel_std))
    class_logits = class_logits[0].float().cpu()
    masks = postprocess.masks_to_original(mask_logits[:1].float().cpu()[0], test_size(*image.shape[:2], data.augmentation),
                                          image.shape[:2])
    if model.mode == "semantic":
        return Prediction(semantic=postprocess.semantic_map(class_logits, masks).numpy())
    if model.mode == "instance":
        return Prediction(instances=postprocess.instances(class_logits, masks, model.test_topk_per_image))
    return Prediction(panoptic=postprocess.panoptic(class_logits, masks, labels.is_thing, model.object_mask_threshold,
                                                    model.overlap_threshold))
