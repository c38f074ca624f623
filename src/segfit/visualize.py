"""Pictures of masks for people: colour index maps, overlays on the image, panels side by side, PNG files.

Shared by every model family (evaluation samples, inference outputs, training previews). Images are H×W×3
uint8 RGB throughout; OpenCV only draws, so its BGR convention never applies.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
"""Hue step between consecutive ids: consecutive objects get far-apart hues and the hues never repeat."""
SATURATIONS = (0.95, 0.65, 0.8)
VALUES = (1.0, 0.8, 0.9)
"""Saturation / brightness cycles on top of the hue, so ids with close hues still differ (distinct ≥ 5000 ids)."""

POSITIVE_COLOR = (0, 255, 0)
NEGATIVE_COLOR = (255, 0, 0)
BOX_COLOR = (255, 255, 0)
TITLE_FONT = cv2.FONT_HERSHEY_SIMPLEX


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, deterministic; id 0 (background) is black, the others bright and distinct."""
    ids = np.arange(1, max(n, 1))
    hue = (ids * GOLDEN_RATIO_CONJUGATE) % 1.0
    sat = np.asarray(SATURATIONS)[ids % len(SATURATIONS)]
    val = np.asarray(VALUES)[(ids // len(SATURATIONS)) % len(VALUES)]
    colours = np.concatenate([np.zeros((1, 3)), _hsv_to_rgb(hue, sat, val)])
    return np.round(colours * 255).astype(np.uint8)[:n]


def _hsv_to_rgb(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) → (n, 3) RGB in [0, 1], the standard six-sector formula."""
    sector = np.floor(hue * 6).astype(np.int64) % 6
    frac = hue * 6 - np.floor(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - frac * sat), val * (1 - (1 - frac) * sat)
    red = np.choose(sector, [val, q, p, p, t, val])
    green = np.choose(sector, [t, val, val, q, p, p])
    blue = np.choose(sector, [p, p, t, val, val, q])
    return np.stack([red, green, blue], axis=1)


def colorize(index_map: np.ndarray) -> np.ndarray:
    """H×W non-negative ids → H×W×3 uint8, id k coloured ``palette(...)[k]``."""
    ids = np.asarray(index_map)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"index_map: expected an H×W integer array, got shape {ids.shape} {ids.dtype}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"index_map: ids must be ≥ 0, got {ids.min()}")
    return palette(int(ids.max(initial=0)) + 1)[ids]


def overlay(
    image: np.ndarray,
    masks_or_index_map: np.ndarray,
    alpha: float = 0.5,
    contours: bool = True,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """The image with each object blended in its colour (``alpha``) and outlined; pixels of no object are unchanged.

    ``masks_or_index_map``: N×H×W bool masks (object i gets colour i + 1; where masks overlap the last one
    fills, every one is outlined) or an H×W index map (0 = none). Points (…, 2) xy are drawn green when their
    label is 1 (the default) and red when 0; other labels (padding, box corners) are not drawn. Boxes (…, 4) xyxy.
    """
    canvas = _as_rgb(image, "image").copy()
    thickness = _line_width(canvas)
    ids, outline_ids = _fill_and_outline_ids(np.asarray(masks_or_index_map), canvas.shape[:2], thickness)
    colours = palette(int(ids.max(initial=0)) + 1)
    filled = ids > 0
    blended = (1 - alpha) * canvas[filled] + alpha * colours[ids[filled]].astype(np.float64)
    canvas[filled] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if contours:
        outlined = outline_ids > 0
        canvas[outlined] = colours[outline_ids[outlined]]
    if boxes is not None:
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), BOX_COLOR, thickness + 1)
    if points is not None:
        _draw_points(canvas, np.asarray(points, dtype=np.float64).reshape(-1, 2), labels)
    return canvas


def _line_width(canvas: np.ndarray) -> int:
    """Contour width in pixels: 1 up to 750 px images, growing with the size so outlines stay visible."""
    return max(1, round(max(canvas.shape[:2]) / 500))


def _fill_and_outline_ids(array: np.ndarray, hw: tuple[int, ...], thickness: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour id per pixel to fill (where masks overlap the last one wins) and per contour pixel (0 = none).

    Contours run along the inside of each object, ``thickness`` pixels wide; the image border is not a contour.
    """
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    if array.ndim == 2 and array.shape == hw:
        ids = array.astype(np.int64)
        if ids.size and ids.min() < 0:
            raise ValueError(f"index map: ids must be ≥ 0, got {ids.min()}")
        # A pixel is on a contour when some neighbour has another id: grey erosion or dilation changes it there.
        as_float = ids.astype(np.float32)  # exact for ids < 2**24
        changed = (cv2.erode(as_float, kernel, borderType=cv2.BORDER_REPLICATE) != as_float) | (
            cv2.dilate(as_float, kernel, borderType=cv2.BORDER_REPLICATE) != as_float
        )
        return ids, np.where(changed, ids, 0)
    if array.ndim == 3 and array.shape[1:] == hw:
        ids = np.zeros(hw, dtype=np.int64)
        outline_ids = np.zeros(hw, dtype=np.int64)
        for i, mask in enumerate(array.astype(bool)):
            ids[mask] = i + 1
            eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
            outline_ids[mask & ~eroded] = i + 1
        return ids, outline_ids
    height, width = hw
    raise ValueError(f"masks: expected N×{height}×{width} masks or a {height}×{width} index map, got {array.shape}")


def _draw_points(canvas: np.ndarray, points: np.ndarray, labels: np.ndarray | None) -> None:
    labels = np.ones(len(points), np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != len(points):
        raise ValueError(f"labels: {len(labels)} labels for {len(points)} points")
    radius = max(3, round(max(canvas.shape[:2]) / 150))
    for (x, y), label in zip(points, labels):
        if label not in (0, 1):
            continue
        centre = (round(x), round(y))
        cv2.circle(canvas, centre, radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(canvas, centre, radius, POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR, -1, cv2.LINE_AA)


def side_by_side(*panels: np.ndarray, titles: list[str] | None = None) -> np.ndarray:
    """Panels left to right (e.g. ground truth | prediction), shorter ones padded black at the bottom.

    With ``titles``, a black strip with each panel's title in white sits above it. Width = sum of widths.
    """
    if not panels:
        raise ValueError("side_by_side: give at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"titles: {len(titles)} titles for {len(panels)} panels")
    rgb = [_as_rgb(panel, f"panel {i}") for i, panel in enumerate(panels)]
    height = max(panel.shape[0] for panel in rgb)
    row = np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in rgb], axis=1)
    if titles is None:
        return row
    scale = max(0.4, height / 800)
    text_height = cv2.getTextSize("Ag", TITLE_FONT, scale, 1)[0][1]
    strip = np.zeros((2 * text_height + 4, row.shape[1], 3), np.uint8)
    left = 0
    for panel, title in zip(rgb, titles):
        cv2.putText(strip, title, (left + 4, text_height + 4), TITLE_FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        left += panel.shape[1]
    return np.concatenate([strip, row], axis=0)


def _as_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """H×W×3 uint8 as is; H×W grey (uint8 or bool) repeated to three channels."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"{name}: expected an H×W×3 (or H×W) uint8 image, got shape {array.shape} {array.dtype}")
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 (or uint16 single-channel, or bool → 0/255) array as PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    Image.fromarray(array.astype(np.uint8) * 255 if array.dtype == bool else array).save(path, format="PNG")
    return path
