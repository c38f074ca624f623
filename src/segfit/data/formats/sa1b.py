"""SA-1B style: ``<stem>.jpg`` plus ``<stem>.json`` = ``{"image": {...}, "annotations": [{"segmentation": RLE}]}``.

The per-image JSON is read when its image is loaded (SA-1B JSONs are large); empty masks (``area`` 0 in SA-1B)
go with every object below ``min_object_area``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segfit.data.formats.coco import decode_segmentation
from segfit.data.files import contained, read_json
from segfit.data.image_io import list_images, orphans, read_image
from segfit.data.records import DataError, ImageRecord
from segfit.spec.schema import SplitSpec


@dataclass(frozen=True)
class Sa1bSample:
    image: Path
    json: Path


def index(split: SplitSpec) -> dict[str, Sa1bSample]:
    """JSONs live in ``annotations`` (default: next to the images, as SA-1B ships them)."""
    images = list_images(split.images)
    folder = Path(split.annotations or split.images)
    if not folder.is_dir():
        raise DataError(str(folder), "annotations folder (per-image JSON) not found")
    return {stem: Sa1bSample(path, folder / f"{stem}.json") for stem, path in images.items()}


def orphan_annotations(split: SplitSpec) -> list[Path]:
    """Per-image JSONs with no image of their stem."""
    return orphans(split.annotations or split.images, ".json", split.images)


def load(sample: Sa1bSample, split: SplitSpec) -> ImageRecord:
    annotations = _annotations(sample, split)
    image = read_image(sample.image)
    h, w = image.shape[:2]
    masks = []
    for j, ann in enumerate(annotations):
        where = f"annotation {ann.get('id', j) if isinstance(ann, dict) else j}"
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise DataError(str(sample.json), f"{where}: missing 'segmentation'")
        try:
            masks.append(decode_segmentation(ann["segmentation"], h, w))
        except ValueError as err:
            raise DataError(str(sample.json), f"{where}: {err} (image {sample.image} is {h}×{w})") from err
    return ImageRecord(image=image, masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                       source=str(sample.image))


def _annotations(sample: Sa1bSample, split: SplitSpec) -> list[Any]:
    if not sample.json.is_file():
        raise DataError(str(sample.json), f"no annotation JSON for {sample.image}")
    data = read_json(contained(sample.json, split.annotations or split.images))
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(str(sample.json), "missing list 'annotations' (SA-1B format)")
    return data["annotations"]
