"""Prompt simulation from ground-truth masks (clicks and boxes), shared by promptable models and the click metric.

Follows the official trainer's maths (``sam2/modeling/sam2_utils.py``): box noise, uniform error-region clicks
and RITM-style error-centre clicks. Conventions shared by every function here:

- masks are ``(N, H, W)`` bool, one per object; outputs are batched over the same N objects;
- points are ``(x, y)`` = (column, row) of a pixel in the masks' frame, float32, with no +0.5 (the SAM 2 prompt
  encoder adds it);
- labels are int64: 1 positive click, 0 negative click, -1 "not a point" (padding the model ignores), 2 / 3 the
  top-left / bottom-right box corners.

Random clicks, noisy boxes and uniform correction clicks stay on the masks' device and never wait for it (no
``.item()``, no data-dependent branch), so a GPU training step runs them without a host sync. Centre clicks use
OpenCV's exact distance transform on the host, as the reference does.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

POSITIVE, NOT_A_POINT, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 1, -1, 2, 3


def _check_masks(masks: Tensor, name: str = "masks") -> None:
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"{name}: expected an (N, H, W) bool tensor, got {tuple(masks.shape)} {masks.dtype}")


def _flat_index_to_xy(index: Tensor, width: int) -> Tensor:
    """Raster index → float ``(x, y)`` in the last dimension."""
    return torch.stack((index % width, torch.div(index, width, rounding_mode="floor")), dim=-1).float()


def _random_pixels(regions: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` raster indices per ``(N, H·W)`` bool row, uniform over its True pixels, with replacement (0 for an
    empty row): the r-th True pixel, r uniform in [0, area), found in the running pixel count (no full noise map)."""
    area = regions.sum(dim=1, keepdim=True, dtype=torch.int32)
    rank = (torch.rand(len(regions), count, generator=generator, device=regions.device) * area).int()
    rank = torch.minimum(rank, area - 1)  # u · area can round up to area in float32 for large areas
    running = regions.cumsum(dim=1, dtype=torch.int32)
    index = torch.searchsorted(running, rank + 1).clamp_max(regions.shape[1] - 1)
    return index.masked_fill(area == 0, 0)


def sample_points_in_masks(
    masks: Tensor, num_points: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``num_points`` positive clicks drawn uniformly inside each mask.

    Points are distinct when the mask has at least ``num_points`` pixels, else drawn with replacement.
    An empty mask yields label -1 points at (0, 0), so a batch stays rectangular.
    ``generator`` must live on the masks' device. Returns points ``(N, num_points, 2)``, labels ``(N, num_points)``.
    """
    _check_masks(masks)
    if num_points < 1:
        raise ValueError(f"num_points: must be at least 1, got {num_points}")
    n, h, w = masks.shape
    flat = masks.reshape(n, h * w)
    area = flat.sum(dim=1)
    index = _random_pixels(flat, num_points, generator)
    if 1 < num_points <= h * w:  # one draw is always distinct; several are when the mask has enough pixels
        # The mask pixels with the largest random keys form a uniform random subset (decided per mask on the
        # device: no host sync on whether any mask is large enough).
        keys = torch.rand(n, h * w, generator=generator, device=masks.device).masked_fill(~flat, -1.0)
        index = torch.where((area >= num_points)[:, None], keys.topk(num_points, dim=1).indices, index)
    labels = torch.full((n, num_points), POSITIVE, dtype=torch.long, device=masks.device)
    return _flat_index_to_xy(index, w), labels.masked_fill((area == 0)[:, None], NOT_A_POINT)


def _farthest_from_boundary(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Per mask, the largest Euclidean distance of a mask pixel to the nearest pixel outside the mask, and the
    raster index of the first pixel that reaches it (both 0 for an empty mask).

    The image border counts as outside (1-px zero padding) and OpenCV's exact L2 transform (``DIST_L2``, mask size
    0) is used, as in the official error-centre sampler, so the pixel is the reference's. Each mask is cropped to its
    box first: with the zero ring around the crop the distances inside are unchanged, and raster order within a crop
    agrees with the image's, but small regions cost little.
    """
    w = masks.shape[-1]
    boxes = mask_to_box(masks).long().tolist()
    arrays = masks.cpu().numpy()
    best = torch.zeros(len(boxes))
    index = torch.zeros(len(boxes), dtype=torch.long)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        crop = np.pad(arrays[i, y0 : y1 + 1, x0 : x1 + 1].astype(np.uint8), 1)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 0)[1:-1, 1:-1]
        row, col = divmod(int(dist.argmax()), dist.shape[1])
        best[i] = float(dist[row, col])
        index[i] = (y0 + row) * w + x0 + col
    return best.to(masks.device), index.to(masks.device)


def center_points(masks: Tensor) -> tuple[Tensor, Tensor]:
    """One positive click per object at the mask pixel farthest from its boundary (RITM's first click).

    Returns points ``(N, 1, 2)`` and labels ``(N, 1)``; an empty mask gives label -1 at (0, 0).
    """
    _check_masks(masks)
    best, index = _farthest_from_boundary(masks)
    labels = torch.where(best > 0, POSITIVE, NOT_A_POINT).long()
    return _flat_index_to_xy(index, masks.shape[-1])[:, None], labels[:, None]


def next_click(
    gt: Tensor, pred: Tensor | None, method: str = "center", generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One correction click per object from the errors of ``pred`` against ``gt`` (both ``(N, H, W)`` bool).

    ``pred=None`` means nothing predicted yet (the click then comes from ``gt``).

    - ``center`` (evaluation, RITM): the pixel farthest from the boundary of the false-negative or the
      false-positive region, whichever reaches farther; positive if it is the false-negative one (ties → negative).
    - ``uniform`` (training): a pixel drawn uniformly from the union of both error regions, labelled by its region.

    A prediction with no error gets a negative click in the background (uniform there for ``uniform``; for
    ``center`` the background pixel farthest from the object and the image border, where the reference would click
    (0, 0) even when that lies inside the object). No background, or an empty ``gt`` with an empty prediction,
    gives label -1 (nothing to click). Returns points ``(N, 1, 2)`` and labels ``(N, 1)``.
    """
    _check_masks(gt, "gt")
    pred = torch.zeros_like(gt) if pred is None else pred
    _check_masks(pred, "pred")
    if pred.shape != gt.shape:
        raise ValueError(f"pred: shape {tuple(pred.shape)} differs from gt {tuple(gt.shape)}")
    n, w = len(gt), gt.shape[-1]
    false_neg, false_pos = gt & ~pred, ~gt & pred
    correct = ~(false_neg | false_pos).flatten(1).any(dim=1) & gt.flatten(1).any(dim=1)
    background_click = correct[:, None, None] & ~gt  # where a correctly found object gets its negative click
    region = false_neg | false_pos | background_click
    if method == "center":
        best, where = _farthest_from_boundary(torch.cat((false_neg, false_pos | background_click)))
        (fn_best, fp_best), (fn_index, fp_index) = best.split(n), where.split(n)
        positive = fn_best > fp_best
        index = torch.where(positive, fn_index, fp_index)
    elif method == "uniform":
        index = _random_pixels(region.flatten(1), 1, generator)[:, 0]
        positive = false_neg.flatten(1).gather(1, index[:, None])[:, 0]
    else:
        raise ValueError(f"next_click: unknown method {method!r}; use 'center' or 'uniform'")
    nothing = ~region.flatten(1).any(dim=1)
    labels = torch.where(nothing, NOT_A_POINT, positive.long())
    points = _flat_index_to_xy(index.masked_fill(nothing, 0), w)
    return points[:, None], labels[:, None]


def mask_to_box(masks: Tensor) -> Tensor:
    """Tight ``(x0, y0, x1, y1)`` box per mask: min / max pixel column and row (inclusive, as the reference).

    Returns ``(N, 4)`` float32; an empty mask gives a zero box.
    """
    _check_masks(masks)
    _, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)  # (N, W), (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    box = torch.stack(
        (
            torch.where(cols, xs, w).amin(dim=1),
            torch.where(rows, ys, h).amin(dim=1),
            torch.where(cols, xs, -1).amax(dim=1),
            torch.where(rows, ys, -1).amax(dim=1),
        ),
        dim=1,
    )
    return box.masked_fill(~cols.any(dim=1)[:, None], 0).float()


def noisy_boxes(
    masks: Tensor, noise: float = 0.1, noise_bound: float = 20, generator: torch.Generator | None = None
) -> Tensor:
    """Tight boxes with each side moved by uniform noise in ±min(noise · box size, noise_bound) pixels.

    The official trainer's box jitter (SAM's defaults: 10 % of the box width / height, at most 20 px), with the
    box then clamped to the image ``[0, W-1] × [0, H-1]``. Returns ``(N, 4)`` float32 xyxy.
    """
    box = mask_to_box(masks)
    if noise <= 0:
        return box
    h, w = masks.shape[-2:]
    max_dx = ((box[:, 2] - box[:, 0]) * noise).clamp_max(noise_bound)
    max_dy = ((box[:, 3] - box[:, 1]) * noise).clamp_max(noise_bound)
    jitter = 2 * torch.rand(len(box), 4, generator=generator, device=masks.device) - 1
    x0, y0, x1, y1 = (box + jitter * torch.stack((max_dx, max_dy, max_dx, max_dy), dim=1)).clamp_min(0).unbind(1)
    return torch.stack((x0.clamp_max(w - 1), y0.clamp_max(h - 1), x1.clamp_max(w - 1), y1.clamp_max(h - 1)), dim=1)


def box_to_points(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, 4)`` xyxy boxes → corner points ``(N, 2, 2)``, labels ``(N, 2)`` = (2, 3): for models fed boxes as points."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected an (N, 4) tensor, got {tuple(boxes.shape)}")
    labels = torch.arange(BOX_TOP_LEFT, BOX_BOTTOM_RIGHT + 1, device=boxes.device)  # made on the device: no copy
    return boxes.float().reshape(-1, 2, 2), labels.repeat(len(boxes), 1)
