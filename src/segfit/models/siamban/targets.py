"""Point targets: which score cells are positive, negative or ignored for a search crop's target box, and the
box-side distances each cell regresses (SiamBAN's ``PointTarget``, its defaults in ``SiambanTargetSpec``)."""

from __future__ import annotations

import numpy as np

from segfit.models.siamban.model import STRIDE


def points(size: int, search_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) search-crop pixel of every cell of a ``size × size`` score map: stride 8, centred on the crop."""
    offsets = (search_size - 1) / 2 + STRIDE * (np.arange(size) - (size - 1) / 2)
    ys, xs = np.meshgrid(offsets, offsets, indexing="ij")
    return xs, ys


def point_targets(box: np.ndarray, size: int, search_size: int, negative: bool, rng: np.random.Generator,
                  pos_num: int = 16, total_num: int = 64, neg_num: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(size×size int64 labels: 1 positive, 0 negative, -1 ignored; 4×size×size float32 l, t, r, b distances).

    Positives: cells inside the ellipse of semi-axes (w/4, h/4) around the box centre, at most ``pos_num``;
    negatives: cells outside the (w/2, h/2) ellipse, at most ``total_num - pos_num``; a random subset when there
    are more. In a negative pair (the box is a distractor) only the cells inside its (w/4, h/4) ellipse are
    negatives, at most ``neg_num``.
    """
    xs, ys = points(size, search_size)
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    loc = np.stack([xs - x1, ys - y1, x2 - xs, y2 - ys]).astype(np.float32)
    labels = np.full((size, size), -1, np.int64)
    inner = ((xs - cx) / (w / 4)) ** 2 + ((ys - cy) / (h / 4)) ** 2 < 1
    if negative:
        labels.flat[_subset(inner, neg_num, rng)] = 0
        return labels, loc
    outer = ((xs - cx) / (w / 2)) ** 2 + ((ys - cy) / (h / 2)) ** 2 > 1
    labels.flat[_subset(inner, pos_num, rng)] = 1
    labels.flat[_subset(outer, total_num - pos_num, rng)] = 0
    return labels, loc


def _subset(mask: np.ndarray, keep: int, rng: np.random.Generator) -> np.ndarray:
    chosen = np.flatnonzero(mask)
    return chosen if len(chosen) <= keep else rng.choice(chosen, keep, replace=False)
