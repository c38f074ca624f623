"""A prompt as the page sends it (clicks and/or a box, in original image pixels), checked before it reaches a
model, and the ground-truth object it points at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


MAX_POINTS = 64
"""Clicks per prompt: far more than anyone clicks, few enough that a script cannot stall the decoder."""


class PromptError(ValueError):
    """A request the server refuses, with the key at fault in the message."""


@dataclass(frozen=True)
class Prompt:
    image: str
    """An id from the image (or video) catalogue."""
    points: list[list[float]]
    """[[x, y], ...] (x = column, y = row), all for one object."""
    labels: list[int]
    """1 positive, 0 negative, one per point."""
    box: list[float] | None
    """[x0, y0, x1, y1] or None."""

    @classmethod
    def parse(cls, body: Any, id_key: str = "image") -> Prompt:
        """``{"image": id, "points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1] | null}``
        (for a video, its id under ``"video"``)."""
        if not isinstance(body, dict) or not isinstance(body.get(id_key), str):
            raise PromptError(f"{id_key}: expected a JSON object with the {id_key} id as '{id_key}'")
        points = body.get("points") or []
        labels = body.get("labels") or []
        box = body.get("box")
        if not isinstance(points, list) or not all(_numbers(p, 2) for p in points):
            raise PromptError(f"points: expected [[x, y], ...], got {points!r:.80}")
        if len(points) > MAX_POINTS:
            raise PromptError(f"points: {len(points)} clicks; at most {MAX_POINTS} per prompt")
        if not isinstance(labels, list) or len(labels) != len(points) or any(v not in (0, 1) for v in labels):
            raise PromptError(f"labels: expected one 1 (positive) or 0 (negative) per point, got {labels!r:.80}")
        if box is not None and not (_numbers(box, 4) and box[0] < box[2] and box[1] < box[3]):
            raise PromptError(f"box: expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {box!r:.80}")
        if not points and box is None:
            raise PromptError("points, box: no prompt; click a point or drag a box")
        return cls(body[id_key], [[float(v) for v in p] for p in points], [int(v) for v in labels],
                   None if box is None else [float(v) for v in box])

    def check_inside(self, hw: tuple[int, int]) -> None:
        """Every coordinate within the H×W image (the page never sends others; a script might)."""
        h, w = hw
        for i, (x, y) in enumerate(self.points):
            if not (0 <= x <= w and 0 <= y <= h):
                raise PromptError(f"points[{i}]: ({x:g}, {y:g}) is outside the {w}×{h} image")
        if self.box is not None and not (0 <= self.box[0] and 0 <= self.box[1] and self.box[2] <= w and self.box[3] <= h):
            raise PromptError(f"box: {self.box} reaches outside the {w}×{h} image")


def _numbers(value: Any, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value))


def target_object(masks: np.ndarray, prompt: Prompt) -> int | None:
    """The ground-truth object (index into N×H×W ``masks``) the prompt means: the one under the first positive
    click, else the one with most pixels inside the box; None when the prompt points at none."""
    positives = [p for p, label in zip(prompt.points, prompt.labels) if label == 1]
    if positives:
        h, w = masks.shape[1:]
        x, y = positives[0]
        hits = np.flatnonzero(masks[:, min(int(y), h - 1), min(int(x), w - 1)])
        return int(hits[0]) if len(hits) else None
    if prompt.box is not None and len(masks):
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        inside = masks[:, y0:y1, x0:x1].sum(axis=(1, 2))
        return int(inside.argmax()) if inside.max() > 0 else None
    return None
