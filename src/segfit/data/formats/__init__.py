"""On-disk dataset formats behind one lazy reader: ``open_split(split)`` indexes files, ``load(i)`` decodes.

A format is two functions: ``index(split)`` → samples by image stem (paths, parsed JSON: cheap, run once) and
``load(sample, split)`` → ``ImageRecord`` (decoding, run per access). The stem index is what ``file_list_txt``
selects from; the shared reader adds the ``min_object_area`` filter.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, NamedTuple, Protocol

from segfit.data.formats import coco, labpics, sa1b
from segfit.data.records import DataError, ImageRecord
from segfit.spec.schema import SplitSpec


class ImageReader(Protocol):
    def __len__(self) -> int: ...

    def source(self, i: int) -> str:
        """The image file of sample ``i`` (no decoding)."""

    def load(self, i: int) -> ImageRecord:
        """Decode sample ``i``; raises ``DataError`` naming the bad file."""


class Format(NamedTuple):
    index: Callable[[SplitSpec], dict[str, Any]]
    """Samples by stem; each sample has an ``image`` path."""
    load: Callable[[Any, SplitSpec], ImageRecord]


FORMATS: dict[str, Format] = {
    "labpics": Format(labpics.index, labpics.load),
    "coco": Format(coco.index, coco.load),
    "sa1b": Format(sa1b.index, sa1b.load),
}


class SplitReader:
    """The samples of one split, decoded on access; objects smaller than ``min_object_area`` pixels are dropped
    (0 keeps every object, even empty ones: the dataset checker uses that to report them)."""

    def __init__(self, samples: list[Any], load: Callable[[Any, SplitSpec], ImageRecord], split: SplitSpec,
                 min_object_area: int):
        self.samples = samples
        self._load = load
        self.split = split
        self.min_object_area = min_object_area

    def __len__(self) -> int:
        return len(self.samples)

    def source(self, i: int) -> str:
        return str(self.samples[i].image)

    def load(self, i: int) -> ImageRecord:
        record = self._load(self.samples[i], self.split)
        if self.min_object_area <= 0:
            return record
        return replace(record, masks=record.masks[record.masks.sum(axis=(1, 2)) >= self.min_object_area])


def open_split(split: SplitSpec, min_object_area: int = 1) -> ImageReader:
    """Index a split (lazy: images are decoded by ``load``); missing folders/files raise ``DataError``."""
    if split.format not in FORMATS:
        raise ValueError(f"data format {split.format!r} is unknown; formats: {', '.join(sorted(FORMATS))}")
    if min_object_area < 0:
        raise ValueError(f"min_object_area must be ≥ 0, got {min_object_area}")
    if not split.images:
        raise ValueError(f"{split.format} split without an images folder: set its 'images'")
    fmt = FORMATS[split.format]
    samples = fmt.index(split)
    if split.file_list_txt:
        samples = _listed(samples, split.file_list_txt, split.images)
    return SplitReader(list(samples.values()), fmt.load, split, min_object_area)


def _listed(samples: dict[str, Any], list_file: str, images: str) -> dict[str, Any]:
    """The samples named in ``list_file`` (one stem per line, extension optional; blanks and # comments skipped)."""
    path = Path(list_file)
    if not path.is_file():
        raise DataError(list_file, "file_list_txt not found")
    chosen: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        stem = name if name in samples else str(PurePosixPath(name).with_suffix(""))
        if stem not in samples:
            raise DataError(list_file, f"line {number}: {name!r} names no image of the split ({images})")
        chosen.setdefault(stem, samples[stem])
    if not chosen:
        raise DataError(list_file, "file_list_txt lists no image stems")
    return chosen
