"""The crop geometry of Siamese trackers, one set of functions for data preparation, training and tracking.

Pixel centres sit at integer coordinates; a box ``x, y, w, h`` has its centre at ``x + (w - 1) / 2`` (the reference
tracker's convention). A crop maps a square (or, for the scale augmentation, a rectangle) around a centre onto an
``out × out`` image, the centre landing on the output's centre ``(out - 1) / 2``; what falls outside the frame is
filled with the frame's mean colour.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CONTEXT = 0.5
"""Context around the target: the template region is sqrt((w + p)(h + p)) with p = CONTEXT·(w + h)."""
PREP_SIZE = 511
"""Side of the prepared crops (pysot's crop511): the region around the target that every augmentation draws from."""


def context_size(w: float, h: float) -> float:
    """Side of the template region around a ``w × h`` target."""
    pad = CONTEXT * (w + h)
    return math.sqrt((w + pad) * (h + pad))


def box_center(box: np.ndarray) -> tuple[float, float]:
    x, y, w, h = box
    return x + (w - 1) / 2, y + (h - 1) / 2


def crop(image: np.ndarray, center: tuple[float, float], size: float | tuple[float, float], out: int,
         pad: np.ndarray | None = None) -> np.ndarray:
    """The ``size`` (side, or (width, height)) region of ``image`` centred at ``center``, resized to ``out × out``."""
    sw, sh = (size, size) if np.isscalar(size) else size
    matrix = crop_matrix(center, (sw, sh), out)
    fill = image.reshape(-1, image.shape[-1]).mean(axis=0) if pad is None else pad
    return cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=tuple(float(v) for v in fill))


def crop_matrix(center: tuple[float, float], size: tuple[float, float], out: int) -> np.ndarray:
    """2×3 affine from frame to crop coordinates."""
    sx, sy = out / size[0], out / size[1]
    half = (out - 1) / 2
    return np.array([[sx, 0, half - center[0] * sx], [0, sy, half - center[1] * sy]], np.float64)


def map_box(box: np.ndarray, center: tuple[float, float], size: tuple[float, float], out: int) -> np.ndarray:
    """``x1, y1, x2, y2`` corners in frame coordinates → the crop's coordinates (``crop`` with the same arguments)."""
    m = crop_matrix(center, size, out)
    return np.array([box[0] * m[0, 0] + m[0, 2], box[1] * m[1, 1] + m[1, 2],
                     box[2] * m[0, 0] + m[0, 2], box[3] * m[1, 1] + m[1, 2]])
