"""LabPics-style folders: ``images/<stem>.<ext>`` plus ``annotations/<stem>.png`` instance maps (0 = background)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segfit.data.files import contained
from segfit.data.image_io import list_images, orphans, read_image, read_index_map
from segfit.data.records import DataError, ImageRecord
from segfit.spec.schema import SplitSpec


@dataclass(frozen=True)
class LabPicsSample:
    image: Path
    map: Path


def index(split: SplitSpec) -> dict[str, LabPicsSample]:
    """Pairs every image with the map of the same stem; a missing map is reported when that image is loaded."""
    if not split.annotations:
        raise DataError(split.images, "labpics split without annotations: set the folder of PNG instance maps")
    annotations = Path(split.annotations)
    if not annotations.is_dir():
        raise DataError(str(annotations), "annotations folder (PNG instance maps) not found")
    return {stem: LabPicsSample(path, annotations / f"{stem}.png") for stem, path in list_images(split.images).items()}


def orphan_annotations(split: SplitSpec) -> list[Path]:
    """Maps with no image of their stem."""
    return orphans(split.annotations, ".png", split.images)


def load(sample: LabPicsSample, split: SplitSpec) -> ImageRecord:
    if not sample.map.is_file():
        raise DataError(str(sample.map), f"no annotation map for {sample.image}")
    contained(sample.map, split.annotations)
    image = read_image(sample.image)
    ids = read_index_map(sample.map, split.map_channels)
    if ids.shape != image.shape[:2]:
        raise DataError(str(sample.map), f"map size {ids.shape[0]}×{ids.shape[1]} differs from the size "
                                         f"{image.shape[0]}×{image.shape[1]} of {sample.image}")
    return ImageRecord(image=image, masks=masks_from_ids(ids), source=str(sample.image))


def masks_from_ids(ids: np.ndarray) -> np.ndarray:
    """N×H×W bool, one mask per nonzero id in increasing id order."""
    values = np.unique(ids)
    values = values[values != 0]
    return ids[None] == values[:, None, None]
