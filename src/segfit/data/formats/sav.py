"""SA-V training videos: JPEG frame folders ``images/<video>/00000.jpg`` (extracted from the mp4 files, e.g. by
``segfit data extract-frames``) plus ``annotations/<video>_manual.json``, whose ``masklet`` holds, for every
annotated frame, one COCO RLE per object.

Masklet entry k belongs to frame number k × ``ann_every`` (SA-V: masks at 6 fps on 24 fps video, so 4). Frames
are matched by the number in their name, so a folder with every frame and one with only the annotated frames
(the official extraction keeps every 4th frame under its own number) both work. As the official
``JSONRawDataset``: only the manual masklets are read, and an entry that is null or holds a null object leaves
its frame unannotated. The SA-V val/test PNG folders are the ``davis`` per-object layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segfit.data.files import contained, read_json, subfolders
from segfit.data.formats.coco import decode_segmentation, rle_runs
from segfit.data.formats.frames import Annotation, check_every_object_appears, read_frames
from segfit.data.image_io import list_images, natural_key
from segfit.data.records import DataError, VideoInfo, VideoRecord
from segfit.spec.schema import SplitSpec

SUFFIX = "_manual.json"


@dataclass(frozen=True)
class _Masklets:
    object_ids: tuple[int, ...]
    """``masklet_id`` when the JSON has it, else 0..N-1."""
    entries: tuple[Any, ...]
    """Per annotated frame: a list of N RLEs, or None."""


@dataclass
class SavVideo:
    """One SA-V video: its frame folder and its manual masklet JSON."""

    name: str
    frame_dir: Path
    json: Path
    ann_every: int

    def info(self) -> VideoInfo:
        frames = self._frames
        return VideoInfo(name=self.name, source=str(self.frame_dir), frame_names=tuple(p.name for p in frames.values()),
                         annotated=tuple(t for t, number in enumerate(frames) if self._entry(number) is not None))

    def objects(self, frame: int) -> list[int]:
        """Ids of the objects visible in frame ``frame`` (a position); decodes that frame's RLEs only."""
        entry = self._entry(list(self._frames)[frame])
        if entry is None:
            return []
        return [object_id for object_id, rle in zip(_masklets(self.json).object_ids, entry)
                if _runs(rle, self.json, object_id)[1::2].any()]

    def load(self, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        """The frames at these positions (default all) with these objects' masks (default every masklet)."""
        numbers = list(self._frames)
        masklets = _masklets(self.json)

        def annotation(t: int, size: tuple[int, int]) -> Annotation:
            entry = self._entry(numbers[t])
            if entry is None:
                return {}, None
            return {object_id: _decoded(rle, size, self.json, object_id, numbers[t])
                    for object_id, rle in zip(masklets.object_ids, entry)}, None

        annotated = [self._entry(number) is not None for number in numbers]
        record = read_frames(self.frame_dir, list(self._frames.values()), annotated, frames, annotation,
                             masklets.object_ids if objects is None else objects)
        if frames is None and objects is None:
            check_every_object_appears(record, lambda object_id: str(self.json))
        return record

    def _entry(self, number: int) -> Any:
        """The masklet entry of frame ``number``: a list of RLEs, or None when that frame is not annotated."""
        entries = _masklets(self.json).entries
        k, rest = divmod(number, self.ann_every)
        entry = entries[k] if not rest and k < len(entries) else None
        return None if entry is None or any(rle is None for rle in entry) else entry

    @cached_property
    def _frames(self) -> dict[int, Path]:
        """Frame files by frame number, once per process; every masklet entry needs its frame."""
        if not self.frame_dir.is_dir():
            raise DataError(str(self.frame_dir), f"frame folder of video {self.name} not found (extract the frames "
                                                 f"of {self.name}.mp4 first: segfit data extract-frames)")
        frames: dict[int, Path] = {}
        for stem, path in list_images(self.frame_dir, self.frame_dir.parent).items():
            if not stem.isdecimal():
                raise DataError(str(path), "SA-V frames are named by frame number (00000.jpg, 00004.jpg, ...)")
            frames[int(stem)] = path
        entries = _masklets(self.json).entries
        missing = [k * self.ann_every for k, entry in enumerate(entries) if entry and k * self.ann_every not in frames]
        if missing:
            raise DataError(str(self.json), f"masklet entries of frame(s) {missing[:5]} (every ann_every="
                                            f"{self.ann_every} frames), but {self.frame_dir} has no such frame")
        return frames


@lru_cache(maxsize=8)
def _masklets(path: Path) -> _Masklets:
    """The parsed JSON; a few are kept, since a clip asks for a video's info, objects and frames in turn."""
    data = read_json(contained(path, path.parent), "masklet JSON (<video>_manual.json)")
    entries = data.get("masklet") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(e is None or isinstance(e, list) for e in entries):
        raise DataError(str(path), "missing list 'masklet' (per annotated frame, a list of RLEs, one per object)")
    counts = {len(entry) for entry in entries if entry is not None}
    if len(counts) > 1:
        raise DataError(str(path), f"masklet entries list different numbers of objects: {sorted(counts)}")
    count = counts.pop() if counts else 0
    ids = data.get("masklet_id")
    valid_ids = isinstance(ids, list) and all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids) == count
    return _Masklets(tuple(ids) if valid_ids else tuple(range(count)), tuple(entries))


def _decoded(rle: Any, size: tuple[int, int], path: Path, object_id: int, frame: int) -> np.ndarray:
    """The RLE's mask, of the frame's ``size``."""
    try:
        return decode_segmentation(rle, *size)
    except ValueError as err:
        raise DataError(str(path), f"frame {frame}, object {object_id}: {err}") from err


def _runs(rle: Any, path: Path, object_id: int) -> np.ndarray:
    """The RLE's checked runs at the size it states: whether an object shows, without decoding a mask of a size
    that only the JSON vouches for."""
    size = rle.get("size") if isinstance(rle, dict) else None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
            and "counts" in rle):
        raise DataError(str(path), f"object {object_id}: an RLE needs 'size': [height, width] and 'counts'")
    try:
        return rle_runs(rle, *size)
    except ValueError as err:
        raise DataError(str(path), f"object {object_id}: {err}") from err


def index(split: SplitSpec) -> dict[str, SavVideo]:
    """Every video with a frame folder in ``images`` or a ``<video>_manual.json`` in ``annotations`` (default:
    ``images``), in natural order; one missing its other half is reported when it is used."""
    images, annotations = Path(split.images), Path(split.annotations or split.images)
    for role, root in (("frame folders", images), ("masklet JSON files", annotations)):
        if not root.is_dir():
            raise DataError(str(root), f"folder of {role} not found")
    names = {entry.name for entry in subfolders(images)}
    names |= {entry.name[:-len(SUFFIX)] for entry in annotations.iterdir() if entry.name.endswith(SUFFIX)}
    if not names:
        raise DataError(split.images, f"no video folders or *{SUFFIX} files")
    return {name: SavVideo(name, images / name, annotations / f"{name}{SUFFIX}", split.ann_every)
            for name in sorted(names, key=natural_key)}
