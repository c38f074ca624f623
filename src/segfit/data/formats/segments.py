"""Labelled-segment datasets (semantic, instance, panoptic) behind one lazy reader: ``open_segment_split``.

Each format is an ``index`` over its files (cheap, run once) and a ``load`` of one sample → ``SegmentRecord``
(decoding, run per access). Records carry class ids as written on disk; a family's label map interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from segfit.data.formats import ade, coco, coco_panoptic, folders, semantic_png
from segfit.data.records import SegmentRecord
from segfit.spec.schema import SplitSpec

SegmentFormat = Literal["ade", "folders", "coco", "coco_panoptic"]


@dataclass(frozen=True)
class SegmentSplit:
    """Where one split's files are (absolute or relative to the working directory)."""

    format: SegmentFormat
    images: str = ""
    """Folder of images (``folders``, ``coco``, ``coco_panoptic``)."""
    annotations: str = ""
    """The JSONL (``ade``) or JSON (``coco``, ``coco_panoptic``) file."""
    masks: str = ""
    """Folder of class-id PNGs (``folders``) or panoptic PNGs (``coco_panoptic``)."""
    root: str = ""
    """``ade``: the folder the JSONL's paths are relative to."""


def _index(split: SegmentSplit) -> tuple[list[Any], Callable[[Any], SegmentRecord]]:
    if split.format == "ade":
        return ade.index(split.annotations, split.root), semantic_png.load
    if split.format == "folders":
        return folders.index(split.images, split.masks), semantic_png.load
    if split.format == "coco":
        samples = coco.index(SplitSpec(format="coco", images=split.images, annotations=split.annotations))
        return list(samples.values()), coco.load_segments
    if split.format == "coco_panoptic":
        return coco_panoptic.index(split.annotations, split.images, split.masks), coco_panoptic.load
    raise ValueError(f"segment format {split.format!r} is unknown; formats: ade, folders, coco, coco_panoptic")


class SegmentReader:
    """The samples of one split, decoded on access."""

    def __init__(self, split: SegmentSplit):
        self.split = split
        self.samples, self._load = _index(split)

    def __len__(self) -> int:
        return len(self.samples)

    def source(self, i: int) -> str:
        return str(self.samples[i].image)

    def load(self, i: int) -> SegmentRecord:
        """Decode sample ``i``; raises ``DataError`` naming the bad file."""
        return self._load(self.samples[i])
