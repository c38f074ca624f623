"""The records that flow from format readers to recipes.

Readers know file formats, not models: each yields these records at the image's original size, and a
family's recipe turns them into model inputs. Video clips and tracking pairs get their own records here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A sample that cannot be used, with the file it came from and what is wrong with it."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ImageRecord:
    """One annotated image at its original size."""

    image: np.ndarray
    """H×W×3 uint8, RGB."""
    masks: np.ndarray
    """N×H×W bool, one mask per object instance (N may be 0)."""
    source: str
    """The image file, for messages and output names."""
    ignore: np.ndarray | None = None
    """H×W bool: pixels left out of losses and metrics (e.g. COCO ``iscrowd`` regions)."""

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise DataError(self.source, f"image must be H×W×3 uint8, got {self.image.shape} {self.image.dtype}")
        if self.masks.ndim != 3 or self.masks.shape[1:] != (h, w):
            raise DataError(self.source, f"masks of shape {self.masks.shape[1:]} do not match the image size {(h, w)}")
        if self.ignore is not None and self.ignore.shape != (h, w):
            raise DataError(self.source, f"ignore mask of shape {self.ignore.shape} does not match the image size {(h, w)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.image.shape[0], self.image.shape[1]
