"""Automatic instance map without prompts: points → one mask per point → masks stitched into one index map.

The LabPics fine-tuning recipe's procedure, batched: single-click prompts spread over the image (or a region of
interest), each click's best-scoring mask, then masks painted in order of predicted score, each on the pixels
still free, skipping masks that mostly cover objects already placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from segfit.models.sam2.predict import Sam2Predictor
from segfit.models.sam2.spec import Sam2AutomaticSpec


@dataclass
class AutoMapResult:
    index_map: np.ndarray
    """(H, W) int32: 0 = no object, 1..K = objects in the order they were placed (highest score first)."""
    scores: list[float]
    """``scores[k - 1]`` is the predicted IoU of object k."""
    points: np.ndarray
    """(P, 2) xy of every click used, in prediction order (float32 pixel coordinates)."""


def automatic_map(
    predictor: Sam2Predictor,
    image: np.ndarray,
    region: np.ndarray | None = None,
    config: Sam2AutomaticSpec | None = None,
    multimask_output: bool = True,
) -> AutoMapResult:
    """Sets ``image`` on the predictor, then points → one mask per point → stitched index map.

    ``region`` (H×W bool, None = the whole image) limits both where points are placed and which pixels the
    map may label; pixels outside it stay 0. Each point's mask is the best-scoring of the 3 multimask outputs, or
    without ``multimask_output`` the single mask (a model trained with ``model.multimask_output: false``).
    """
    config = config or Sam2AutomaticSpec()
    hw = image.shape[:2]
    region = np.ones(hw, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    if region.shape != hw:
        raise ValueError(f"region: shape {region.shape} differs from the image size {hw}")
    if config.grid:
        points = grid_points(region, config.num_points)
    else:
        points = random_points(region, config.num_points, config.seed)
    if not len(points):
        return AutoMapResult(index_map=np.zeros(hw, dtype=np.int32), scores=[], points=points)
    predictor.set_image(image)
    masks, scores = predict_point_masks(predictor, points, config.batch_size, multimask_output)
    index_map, kept = stitch_masks(masks, scores, region, config)
    return AutoMapResult(index_map=index_map, scores=kept, points=points)


def random_points(region: np.ndarray, num_points: int, seed: int) -> np.ndarray:
    """Up to ``num_points`` distinct pixels drawn uniformly (seeded) from the region, as (P, 2) xy float32."""
    rows, cols = np.nonzero(region)
    chosen = np.random.default_rng(seed).choice(len(rows), size=min(num_points, len(rows)), replace=False)
    return np.stack([cols[chosen], rows[chosen]], axis=1).astype(np.float32)


def grid_points(region: np.ndarray, num_points: int) -> np.ndarray:
    """Pixels holding the centres of a ⌈√n⌉ × ⌈√n⌉ grid of equal cells over the image, kept if in the region.

    Row-major order, as (P, 2) xy float32.
    """
    side = math.ceil(math.sqrt(num_points))
    height, width = region.shape
    cols = ((np.arange(side) + 0.5) * width / side).astype(np.int64)
    rows = ((np.arange(side) + 0.5) * height / side).astype(np.int64)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    inside = region[yy, xx]
    return np.stack([xx[inside], yy[inside]], axis=1).astype(np.float32)


def predict_point_masks(predictor: Sam2Predictor, points: np.ndarray, batch_size: int,
                        multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One positive click per point, best of the 3 multimask outputs (or the single mask): masks (P, H, W) bool,
    scores (P,) float32."""
    masks, scores = [], []
    for start in range(0, len(points), batch_size):
        batch = torch.from_numpy(points[start : start + batch_size])[:, None]
        labels = torch.ones(batch.shape[:2], dtype=torch.long)
        pred = predictor.predict(batch, labels, multimask_output=multimask_output, best_only=True)
        masks.append(pred.masks[:, 0].cpu().numpy())
        scores.append(pred.scores[:, 0].float().cpu().numpy())
    return np.concatenate(masks), np.concatenate(scores)


def stitch_masks(
    masks: np.ndarray, scores: np.ndarray, region: np.ndarray, config: Sam2AutomaticSpec
) -> tuple[np.ndarray, list[float]]:
    """Paint masks (P, H, W) into an index map, highest score first (ties keep point order).

    A mask (cut to the region) is placed, on its still-free pixels only, when its score ≥ ``min_score``,
    its area ≥ ``min_area`` (and > 0), and at most ``overlap_threshold`` of its area is already taken.
    Returns the map and the score of each placed id.
    """
    index_map = np.zeros(region.shape, dtype=np.int32)
    taken = np.zeros(region.shape, dtype=bool)
    kept: list[float] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < config.min_score:
            continue
        mask = masks[i] & region
        area = int(mask.sum())
        if area == 0 or area < config.min_area:
            continue
        overlap = int((mask & taken).sum())
        if overlap / area > config.overlap_threshold or overlap == area:
            continue
        free = mask & ~taken
        kept.append(float(scores[i]))
        index_map[free] = len(kept)
        taken |= free
    return index_map, kept
