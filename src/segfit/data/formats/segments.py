"""Labelled-segment datasets (semantic, instance, panoptic) behind one lazy reader: ``open_segment_split``.

Each format is an ``index`` over its files (cheap, run once) and a ``load`` of one sample → ``SegmentRecord``
(decoding, run per access). Records carry class ids as written on disk; a family's label map interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from segfit.data.formats import ade, coco, coco_panoptic, folders, semantic_png
from segfit.data.image_io import orphans, unused_files
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


Ids = Callable[[Any], tuple[str, set[int]]]
"""A sample → (its annotation file, the class ids it holds), without decoding the image."""


def _json_ids(key: str, entries: str, where: Callable[[Any], str]) -> Ids:
    return lambda sample: (where(sample), {int(entry.get(key, 0)) for entry in getattr(sample, entries)})


def _index(split: SegmentSplit) -> tuple[list[Any], Callable[[Any], SegmentRecord], Ids]:
    if split.format in ("ade", "folders"):
        samples = (ade.index(split.annotations, split.root) if split.format == "ade"
                   else folders.index(split.images, split.masks))
        return samples, semantic_png.load, semantic_png.ids
    if split.format == "coco":
        samples = coco.index(SplitSpec(format="coco", images=split.images, annotations=split.annotations))
        return list(samples.values()), coco.load_segments, _json_ids("category_id", "annotations", lambda s: str(s.json))
    if split.format == "coco_panoptic":
        samples = coco_panoptic.index(split.annotations, split.images, split.masks)
        return samples, coco_panoptic.load, _json_ids("category_id", "segments", lambda s: str(s.png))
    raise ValueError(f"segment format {split.format!r} is unknown; formats: ade, folders, coco, coco_panoptic")


class SegmentReader:
    """The samples of one split, decoded on access."""

    def __init__(self, split: SegmentSplit):
        self.split = split
        self.samples, self._load, self._ids = _index(split)

    def __len__(self) -> int:
        return len(self.samples)

    def source(self, i: int) -> str:
        return str(self.samples[i].image)

    def load(self, i: int) -> SegmentRecord:
        """Decode sample ``i``; raises ``DataError`` naming the bad file."""
        return self._load(self.samples[i])

    def orphan_annotations(self) -> list[Path]:
        """Annotation files no sample uses: a class-id PNG (``folders``) or a panoptic PNG (``coco_panoptic``) with
        no image or no JSON entry. One-file formats (``ade``'s JSONL, ``coco``) have none: an entry naming a missing
        file already fails ``index``."""
        if self.split.format == "folders":
            return orphans(self.split.masks, ".png", self.split.images)
        if self.split.format == "coco_panoptic":
            return unused_files(self.split.masks, ".png", {sample.png.stem for sample in self.samples})
        return []

    def ids(self, i: int) -> tuple[str, set[int]]:
        """(annotation file, class ids) of sample ``i``: its mask PNG's values, or its JSON ``category_id``s."""
        return self._ids(self.samples[i])
