"""Image, mask, prompt and logit transforms between the original image frame and the SAM 2 input frame.

They reproduce the reference ``SAM2Transforms`` exactly: the image is stretched (no letterbox) to a square
``image_size`` × ``image_size`` input, so the two axes scale independently. Prompt coordinates are pixel
coordinates: a click on pixel (column c, row r) is ``(x=c, y=r)``; they are only rescaled here, because the
prompt encoder itself adds +0.5 to move onto pixel centres (as the reference does).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from segfit.data.frame_kernels import resize_uint8

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_MEAN, _STD = (torch.tensor(v).view(-1, 1, 1) for v in (MEAN, STD))


def preprocess_image(image: np.ndarray | torch.Tensor, image_size: int,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×S×S float32, ImageNet-normalised (written into ``out`` when given).

    Same order as the reference: scale to [0, 1] first, then a bilinear antialiased resize of the *float*
    tensor (torchvision ``Resize`` default), then normalise. Resizing uint8 or with PIL differs by about one
    grey level, which moves mask logits by ~1e-2. Every step after the uint8 → float conversion writes into one
    tensor (this function's or ``out``): torchvision's ``normalize`` would copy it first.
    """
    if isinstance(image, np.ndarray):  # copied when read-only (decoded arrays may be) or strided backwards
        image = torch.from_numpy(image if image.flags.writeable and min(image.strides) >= 0 else image.copy())
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got shape {tuple(image.shape)} {image.dtype}")
    chw = image.permute(2, 0, 1)
    if chw.shape[-2:] == (image_size, image_size):  # the resize would be the identity: skip its cost
        target = torch.empty(chw.shape) if out is None else out
        scaled = target.copy_(chw).div_(255.0)
    else:
        scaled = TF.resize(chw.float().div(255.0), [image_size, image_size], interpolation=InterpolationMode.BILINEAR,
                           antialias=True)
    return torch.sub(scaled, _MEAN, out=scaled if out is None else out).div_(_STD)


def preprocess_frames(frames: Sequence[np.ndarray], image_size: int, exact: bool = True) -> torch.Tensor:
    """T frames H×W×3 uint8 → T×3×S×S float32, each as ``preprocess_image``, written straight into one tensor (a
    clip of 8 frames at 1024² is 100 MB: stacking per-frame tensors would copy it once more).

    ``exact=False`` resizes the uint8 frames instead (``frame_kernels.resize_uint8``, about a grey level from the
    exact float resize at a tenth of its cost), for training clips under ``data.video.augment.backend: fast``.
    """
    out = torch.empty((len(frames), 3, image_size, image_size))
    for frame, slot in zip(frames, out):
        preprocess_image(frame if exact else resize_uint8(frame, (image_size, image_size)), image_size, out=slot)
    return out


def resize_masks(masks: torch.Tensor | np.ndarray, image_size: int) -> torch.Tensor:
    """N×H×W bool → N×S×S bool by nearest neighbour.

    ``nearest-exact`` samples pixel centres, so masks stay aligned with the image resize (which also uses
    half-pixel centres) instead of drifting by up to one source pixel towards the top-left. The masks are packed
    as the bits of uint8 planes (8 to a plane) and resized together: the same samples at an eighth of the cost.
    """
    stack = torch.as_tensor(masks)
    if stack.ndim != 3:
        raise ValueError(f"expected N×H×W masks, got shape {tuple(stack.shape)}")
    stack = stack.bool()
    count = stack.shape[0]
    if count == 0:
        return torch.zeros((0, image_size, image_size), dtype=torch.bool)
    bits = torch.arange(8, dtype=torch.uint8).view(1, 8, 1, 1)
    padded = torch.cat((stack, stack.new_zeros((-count % 8, *stack.shape[1:])))) if count % 8 else stack
    packed = (padded.reshape(-1, 8, *stack.shape[1:]).to(torch.uint8) << bits).sum(1, dtype=torch.uint8)
    resized = F.interpolate(packed[None], size=(image_size, image_size), mode="nearest-exact")[0]
    return ((resized[:, None] >> bits) & 1).bool().flatten(0, 1)[:count]


def points_to_model(points: torch.Tensor, orig_hw: tuple[int, int], image_size: int) -> torch.Tensor:
    """(..., 2) xy pixel coordinates in the original image → the model input frame: ``x·S/W``, ``y·S/H``.

    A click on pixel (column c, row r) is ``(c, r)``; do not add 0.5, the prompt encoder does.
    """
    return _scale_xy(points, orig_hw, image_size)


def boxes_to_model(boxes: torch.Tensor, orig_hw: tuple[int, int], image_size: int) -> torch.Tensor:
    """(..., 4) xyxy pixel boxes in the original image → the model input frame (both corners as points)."""
    if boxes.shape[-1] != 4:
        raise ValueError(f"expected boxes with 4 values (x0, y0, x1, y1) in the last dimension, got {tuple(boxes.shape)}")
    corners = boxes.reshape(*boxes.shape[:-1], 2, 2)
    return _scale_xy(corners, orig_hw, image_size).reshape(boxes.shape)


def masks_to_original(logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) low-resolution logits → (..., H, W) logits at the original size.

    One bilinear step (align_corners=False) straight from the low-resolution logits, as the reference
    ``postprocess_masks`` does; going through the square input size first would blur differently.
    """
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    resized = F.interpolate(flat, size=tuple(orig_hw), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, *orig_hw)


def _scale_xy(points: torch.Tensor, orig_hw: tuple[int, int], image_size: int) -> torch.Tensor:
    """Divide then multiply, in the reference's order, so results match it bit for bit."""
    if points.shape[-1] != 2:
        raise ValueError(f"expected points with 2 values (x, y) in the last dimension, got {tuple(points.shape)}")
    height, width = orig_hw
    points = points if points.is_floating_point() else points.float()
    x = points[..., 0] / width * image_size
    y = points[..., 1] / height * image_size
    return torch.stack([x, y], dim=-1)
