"""COCO panoptic: a JSON (``images``, ``annotations`` with ``segments_info``, ``categories``) and a folder of RGB
PNGs whose colour encodes the segment id (id = R + 256·G + 256²·B, 0 = void), as panopticapi writes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from segfit.data.files import read_json, within
from segfit.data.image_io import read_image
from segfit.data.records import DataError, SegmentRecord


@dataclass(frozen=True)
class PanopticSample:
    image: Path
    png: Path
    segments: tuple[dict[str, Any], ...]


def index(panoptic_json: str, img_dir: str, panoptic_dir: str) -> list[PanopticSample]:
    """Samples in the JSON's annotation order; structure and image references are checked here."""
    path = Path(panoptic_json)
    if not path.is_file():
        raise DataError(str(path), "COCO panoptic JSON not found")
    for folder in (img_dir, panoptic_dir):
        if not Path(folder).is_dir():
            raise DataError(folder, "folder not found")
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise DataError(str(path), "expected an object with lists 'images' and 'annotations' (COCO panoptic)")
    images = {entry.get("id"): entry for entry in data["images"]
              if isinstance(entry, dict) and isinstance(entry.get("id"), (int, str))}
    samples = []
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {"image_id", "file_name", "segments_info"} <= ann.keys():
            raise DataError(str(path), f"annotations[{j}]: needs image_id, file_name and segments_info")
        image_id = ann["image_id"]
        if not isinstance(image_id, (int, str)) or image_id not in images or "file_name" not in images[image_id]:
            raise DataError(str(path), f"annotations[{j}]: image_id {image_id!r} is not in images")
        samples.append(PanopticSample(within(img_dir, images[image_id]["file_name"], path),
                                      within(panoptic_dir, ann["file_name"], path),
                                      _segments(ann["segments_info"], path, j)))
    return samples


def _segments(info: Any, path: Path, j: int) -> tuple[dict[str, Any], ...]:
    """``segments_info``: objects with integer ``id`` and ``category_id``, ids distinct."""
    if not isinstance(info, list) or not all(isinstance(s, dict) and isinstance(s.get("id"), int)
                                             and isinstance(s.get("category_id"), int) for s in info):
        raise DataError(str(path), f"annotations[{j}]: segments_info must be a list of objects with integer 'id' "
                                   f"and 'category_id'")
    if len({s["id"] for s in info}) != len(info):
        raise DataError(str(path), f"annotations[{j}]: segments_info repeats a segment id")
    return tuple(info)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 panoptic PNG colours → H×W segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """H×W segment ids → H×W×3 uint8 colours (the inverse of ``rgb_to_id``)."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def load(sample: PanopticSample) -> SegmentRecord:
    """One segment per ``segments_info`` entry; PNG ids missing from the JSON (or the reverse) are a ``DataError``."""
    image = read_image(sample.image)
    if not sample.png.is_file():
        raise DataError(str(sample.png), "panoptic PNG not found")
    ids = rgb_to_id(read_image(sample.png))
    if ids.shape != image.shape[:2]:
        raise DataError(str(sample.png), f"PNG is {ids.shape[0]}×{ids.shape[1]}, its image {sample.image} "
                                         f"{image.shape[0]}×{image.shape[1]}")
    listed = [int(s["id"]) for s in sample.segments]
    present = set(np.unique(ids).tolist()) - {0}
    if present - set(listed) or set(listed) - present:
        raise DataError(str(sample.png), f"segment ids in the PNG but not in segments_info: "
                                         f"{sorted(present - set(listed))}; in segments_info but not in the PNG: "
                                         f"{sorted(set(listed) - present)}")
    masks = ids[None] == np.asarray(listed, np.int64).reshape(-1, 1, 1)
    return SegmentRecord(image=image, masks=masks, category_ids=[int(s["category_id"]) for s in sample.segments],
                         source=str(sample.image), annotation=str(sample.png),
                         crowd=[bool(s.get("iscrowd", 0)) for s in sample.segments])
