"""Masks as COCO JSON (compressed RLE): one image's answers, or one model's track over a video's frames."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from segfit.metrics.coco_masks import encode as rle_encode
from segfit.serve.prompts import Prompt
from segfit.serve.session import Answer

CATEGORIES = [{"id": 1, "name": "object"}]


def coco_annotation(mask: np.ndarray, id: int, image_id: int, **extra: Any) -> dict[str, Any]:
    """One H×W bool mask as a COCO annotation; ``extra`` keys (``model``, ``score``) are ignored by COCO readers."""
    ys, xs = np.nonzero(mask)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) else [0, 0, 0, 0]
    return {"id": id, "image_id": image_id, "category_id": 1, "segmentation": rle_encode(mask),
            "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0, **extra}


def coco_json(file_name: str, hw: tuple[int, int], prompt: Prompt, answers: list[Answer]) -> dict[str, Any]:
    """One COCO image with one annotation per model, plus the prompt."""
    return {
        "images": [{"id": 1, "file_name": file_name, "height": hw[0], "width": hw[1]}],
        "categories": CATEGORIES,
        "annotations": [coco_annotation(a.mask, i, 1, model=a.model, score=a.score) for i, a in enumerate(answers, 1)],
        "prompt": {"points": prompt.points, "labels": prompt.labels, "box": prompt.box},
    }


def video_coco_json(frame_names: Sequence[str], masks: np.ndarray, model: str) -> dict[str, Any]:
    """One COCO image per tracked frame (``frame_names``, T×H×W ``masks``), each with ``model``'s mask."""
    h, w = masks.shape[1:]
    return {
        "images": [{"id": t, "file_name": name, "height": h, "width": w} for t, name in enumerate(frame_names, 1)],
        "categories": CATEGORIES,
        "annotations": [coco_annotation(mask, t, t, model=model) for t, mask in enumerate(masks, 1)],
    }
