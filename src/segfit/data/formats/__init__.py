"""On-disk dataset formats behind lazy readers: ``open_split`` for images, ``open_video_split`` for videos.

An image format is three functions: ``index(split)`` → samples by image stem (paths, parsed JSON: cheap, run once),
``load(sample, split)`` → ``ImageRecord`` (decoding, run per access) and ``orphan_annotations(split)`` → annotation
files with no image (for ``segfit data check``). The stem index is what ``file_list_txt`` selects from; the shared
reader adds the ``min_object_area`` filter.

A video format is one function, ``index(split)`` → ``VideoSource``s by video name, each listing its own folders
and decoding only the frames asked for. Any image split also opens as one-frame videos, so image datasets can be
mixed into video training without a copy of their readers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np

from segfit.data.files import read_text
from segfit.data.formats import coco, davis, labpics, sa1b, sav
from segfit.data.records import DataError, ImageRecord, VideoInfo, VideoRecord
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
    orphan_annotations: Callable[[SplitSpec], list[Path]]
    """Annotation files with no image (never read: ``segfit data check`` warns about them)."""


FORMATS: dict[str, Format] = {
    "labpics": Format(labpics.index, labpics.load, labpics.orphan_annotations),
    "coco": Format(coco.index, coco.load, coco.orphan_annotations),
    "sa1b": Format(sa1b.index, sa1b.load, sa1b.orphan_annotations),
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
    if split.format in VIDEO_FORMATS:
        raise ValueError(f"data format {split.format!r} holds videos; this reads images: "
                         f"{', '.join(sorted(FORMATS))} (videos open with open_video_split)")
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


def _listed(samples: dict[str, Any], list_file: str, images: str, kind: str = "image") -> dict[str, Any]:
    """The samples named in ``list_file`` (one name per line, extension optional; blanks and # comments skipped)."""
    chosen: dict[str, Any] = {}
    for number, line in enumerate(read_text(Path(list_file), "file_list_txt").splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        stem = name if name in samples or not PurePosixPath(name).name else str(PurePosixPath(name).with_suffix(""))
        if stem not in samples:
            raise DataError(list_file, f"line {number}: {name!r} names no {kind} of the split ({images})")
        chosen.setdefault(stem, samples[stem])
    if not chosen:
        raise DataError(list_file, f"file_list_txt lists no {kind} names")
    return chosen


# ---- videos ------------------------------------------------------------------------------------------------
class VideoSource(Protocol):
    """One video on disk."""

    def info(self) -> VideoInfo:
        """Frame names and annotated frames, from listing its folders; raises ``DataError`` for a bad layout."""

    def objects(self, frame: int) -> list[int]:
        """Ids of the objects visible in the frame at this position (decodes that frame's masks only)."""

    def load(self, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        """The frames at these positions (default all) with these objects' masks (default all objects)."""


class VideoReader(Protocol):
    """The videos of one split, by index (what the engine's ``(index, seed)`` items point at)."""

    def __len__(self) -> int: ...

    def info(self, i: int) -> VideoInfo: ...

    def objects(self, i: int, frame: int) -> list[int]: ...

    def load(self, i: int, frames: Sequence[int] | None = None,
             objects: Sequence[int] | None = None) -> VideoRecord: ...


VIDEO_FORMATS: dict[str, Callable[[SplitSpec], dict[str, VideoSource]]] = {
    "davis": davis.index,
    "sav": sav.index,
}


class VideoSplitReader:
    """A video format's videos in split order."""

    def __init__(self, videos: list[VideoSource]):
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def info(self, i: int) -> VideoInfo:
        return self.videos[i].info()

    def objects(self, i: int, frame: int) -> list[int]:
        return self.videos[i].objects(frame)

    def load(self, i: int, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        return self.videos[i].load(frames, objects)


class ImagesAsVideos:
    """An image split as one-frame videos, object ids 1..N in the image's object order (how the official trainer
    mixes SA-1B into video training). The last image decoded is kept, since a sampler asks for its objects and
    then loads it."""

    def __init__(self, reader: ImageReader):
        self.reader = reader
        self._last: tuple[int, ImageRecord] | None = None

    def __len__(self) -> int:
        return len(self.reader)

    def info(self, i: int) -> VideoInfo:
        path = Path(self.reader.source(i))
        return VideoInfo(name=path.stem, source=str(path.parent), frame_names=(path.name,), annotated=(0,))

    def objects(self, i: int, frame: int) -> list[int]:
        _position_in_one(frame)
        return [n + 1 for n, mask in enumerate(self._record(i).masks) if mask.any()]

    def load(self, i: int, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        """``objects``: ids 1..N; an id the image does not have gets an empty mask, as in a video it is absent from."""
        record = self._record(i)
        positions = [0] if frames is None else [_position_in_one(t) for t in frames]
        ids = range(1, len(record.masks) + 1) if objects is None else objects
        masks = np.zeros((len(ids), *record.size), bool)
        for n, k in enumerate(ids):
            if 1 <= k <= len(record.masks):
                masks[n] = record.masks[k - 1]
        path = Path(record.source)
        return VideoRecord(frames=record.image[None][positions], masks=masks[None][positions],
                           object_ids=tuple(ids), frame_names=(path.name,) * len(positions), source=str(path.parent),
                           ignore=None if record.ignore is None else record.ignore[None][positions])

    def _record(self, i: int) -> ImageRecord:
        if self._last is None or self._last[0] != i:
            self._last = (i, self.reader.load(i))
        return self._last[1]


def open_video_split(split: SplitSpec, min_object_area: int = 1) -> VideoReader:
    """Index a split of videos (lazy: folders are listed and frames decoded on use). An image format opens as
    one-frame videos (``min_object_area`` applies to those only: in a video, an object small in one frame is
    still the same object). Missing top-level folders raise ``DataError``."""
    if split.format not in VIDEO_FORMATS:
        return ImagesAsVideos(open_split(split, min_object_area))
    if not split.images:
        raise ValueError(f"{split.format} split without an images folder: set its 'images' (one folder per video)")
    videos = VIDEO_FORMATS[split.format](split)
    if split.file_list_txt:
        videos = _listed(videos, split.file_list_txt, split.images, "video")
    return VideoSplitReader(list(videos.values()))


def _position_in_one(t: int) -> int:
    if t not in (0, -1):
        raise IndexError(f"frame position {t}: an image is a one-frame video")
    return 0

