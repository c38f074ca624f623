"""Loading an image and its class-id PNG: what the semantic formats (``ade``, ``folders``) share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segfit.data.image_io import read_image, read_index_map
from segfit.data.records import DataError, SegmentRecord, segments_of_map


@dataclass(frozen=True)
class SemanticSample:
    image: Path
    mask: Path


def load(sample: SemanticSample) -> SegmentRecord:
    """One segment per value of the PNG (ignore values included: the label map says what each value means)."""
    image = read_image(sample.image)
    ids = read_index_map(sample.mask, None)
    if ids.shape != image.shape[:2]:
        raise DataError(str(sample.mask), f"mask is {ids.shape[0]}×{ids.shape[1]}, its image {sample.image} "
                                          f"{image.shape[0]}×{image.shape[1]}")
    masks, values = segments_of_map(ids)
    return SegmentRecord(image=image, masks=masks, category_ids=values, source=str(sample.image),
                         annotation=str(sample.mask))


def ids(sample: SemanticSample) -> tuple[str, set[int]]:
    """The values of the mask PNG (the image is not read)."""
    return str(sample.mask), {int(v) for v in np.unique(read_index_map(sample.mask, None))}
