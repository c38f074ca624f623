"""Semantic segmentation as two folders: ``images/`` and ``masks/``, a one-channel class-id PNG per image with the
image's stem."""

from __future__ import annotations

from pathlib import Path

from segfit.data.formats.semantic_png import SemanticSample
from segfit.data.files import contained
from segfit.data.image_io import list_images
from segfit.data.records import DataError


def index(images: str, masks: str) -> list[SemanticSample]:
    """Every image of ``images`` (natural order) with its mask; an image without a mask is a ``DataError``."""
    if not Path(masks).is_dir():
        raise DataError(masks, "masks folder not found")
    samples = []
    for stem, image in list_images(images).items():
        mask = Path(masks) / f"{stem}.png"
        if not mask.is_file():
            raise DataError(str(image), f"no mask {mask.name} in {masks}")
        samples.append(SemanticSample(image, contained(mask, masks)))
    return samples
