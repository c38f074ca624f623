"""DAVIS / MOSE videos: ``images/<video>/<frame>.jpg`` frame folders plus ``annotations/<video>/`` masks.

A video's masks are either palette PNGs ``<frame>.png``, whose non-zero indices are objects, or one folder of
binary PNGs per object, ``<object id>/<frame>.png`` (the official trainer's ``is_palette=False``). Masks are
matched to frames by stem; a frame without a mask is unannotated (datasets annotated every k frames). Index 255
of a palette PNG is DAVIS's "void" (uncertain border pixels): the DAVIS evaluation code turns it into background,
the official SAM 2 loader would make it an object; here it is neither, it is the frame's ignore region.

Folders are listed when a video is first used and frames are decoded per request, so a clip of 8 frames reads
8 frames, and one bad video costs that video only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from segfit.data.files import contained, subfolders
from segfit.data.formats.frames import Annotation, check_every_object_appears, read_frames
from segfit.data.image_io import list_images, natural_key, read_index_map
from segfit.data.records import DataError, VideoInfo, VideoRecord
from segfit.spec.schema import SplitSpec

VOID = 255
"""Palette index of DAVIS's void pixels."""


@dataclass(frozen=True)
class _Listing:
    frames: dict[str, Path]
    """Frame files by stem, in playing (natural) order."""
    palette: dict[str, Path]
    """Palette layout: the PNG of each annotated frame, by stem (empty in the per-object layout)."""
    objects: dict[int, dict[str, Path]]
    """Per-object layout: object id → that object's PNGs by frame stem (empty in the palette layout)."""
    object_dirs: dict[int, Path]
    """Per-object layout: object id → its folder."""

    @property
    def annotated_stems(self) -> set[str]:
        return set(self.palette) if self.palette else {stem for pngs in self.objects.values() for stem in pngs}


@dataclass
class DavisVideo:
    """One video of a DAVIS-layout split."""

    name: str
    frame_dir: Path
    annotation_dir: Path

    def info(self) -> VideoInfo:
        listing = self._listing
        annotated = listing.annotated_stems
        return VideoInfo(name=self.name, source=str(self.frame_dir),
                         frame_names=tuple(path.name for path in listing.frames.values()),
                         annotated=tuple(t for t, stem in enumerate(listing.frames) if stem in annotated))

    def objects(self, frame: int) -> list[int]:
        """Ids of the objects visible in frame ``frame`` (a position); decodes that frame's masks only."""
        stem = list(self._listing.frames)[frame]
        present, _ = self._annotation(stem)
        return sorted(object_id for object_id, mask in present.items() if mask.any())

    def load(self, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        """Decode the frames at these positions (default all) with the masks of these object ids (default every
        object of the video; an object absent from a frame has an empty mask there)."""
        listing = self._listing
        stems, annotated = list(listing.frames), listing.annotated_stems
        declared = sorted(listing.objects) or None  # per-object folders name the objects; palette frames show them
        record = read_frames(self.frame_dir, list(listing.frames.values()), [stem in annotated for stem in stems],
                             frames, lambda t, size: self._annotation(stems[t], size),
                             declared if objects is None else objects)
        if frames is None and objects is None and declared:
            check_every_object_appears(record, lambda object_id: str(listing.object_dirs[object_id]))
        return record

    def _annotation(self, stem: str, size: tuple[int, int] | None = None) -> Annotation:
        """The masks of frame ``stem`` (none when it has no annotation); masks of another ``size`` than the frame's
        are an error naming the PNG."""
        listing = self._listing
        if listing.palette:
            if stem not in listing.palette:
                return {}, None
            ids = self._checked(read_index_map(listing.palette[stem], None), listing.palette[stem], stem, size)
            values = np.flatnonzero(np.bincount(ids.ravel()))  # PNG values are ≥ 0; np.unique is several times slower
            present = {int(v): ids == v for v in values if v not in (0, VOID)}
            return present, (ids == VOID) if VOID in values else None
        present = {}
        for object_id, pngs in listing.objects.items():
            if stem in pngs:
                present[object_id] = self._checked(read_index_map(pngs[stem], None), pngs[stem], stem, size) > 0
        return present, None

    def _checked(self, mask: np.ndarray, png: Path, stem: str, size: tuple[int, int] | None) -> np.ndarray:
        if size is not None and mask.shape != size:
            raise DataError(str(png), f"mask is {mask.shape[0]}×{mask.shape[1]} but frame "
                                      f"{self._listing.frames[stem]} is {size[0]}×{size[1]}")
        return mask

    @cached_property
    def _listing(self) -> _Listing:
        """Both folders listed once per process; problems with the layout are ``DataError``s (not cached)."""
        if not self.frame_dir.is_dir():
            raise DataError(str(self.frame_dir), f"frame folder of video {self.name} not found "
                                                 f"(its masks are in {self.annotation_dir})")
        frames = list_images(self.frame_dir, self.frame_dir.parent)
        if not self.annotation_dir.is_dir():
            raise DataError(str(self.annotation_dir), f"mask folder of video {self.name} not found "
                                                      f"(its frames are in {self.frame_dir})")
        root = self.annotation_dir.parent
        entries = sorted(self.annotation_dir.iterdir())
        palette = _pngs(entries, root)
        folders = sorted(subfolders(self.annotation_dir, root))
        if palette and folders:
            raise DataError(str(self.annotation_dir), "holds both PNG masks and object folders; a video's masks are "
                                                      "either <frame>.png palette PNGs or <object id>/<frame>.png")
        objects: dict[int, dict[str, Path]] = {}
        object_dirs = {}
        for folder in folders:
            if not folder.name.isdecimal():
                raise DataError(str(folder), "object folders are named by integer object id (0, 1, 2, ...)")
            if int(folder.name) in objects:
                raise DataError(str(folder), f"a second folder for object {int(folder.name)}")
            objects[int(folder.name)] = _pngs(sorted(folder.iterdir()), root)
            object_dirs[int(folder.name)] = folder
        for stem, png in list(palette.items()) + [item for pngs in objects.values() for item in pngs.items()]:
            if stem not in frames:
                raise DataError(str(png), f"mask of frame {stem}, but {self.frame_dir} has no frame {stem}")
        listing = _Listing(frames, palette, objects, object_dirs)
        if not listing.annotated_stems:
            raise DataError(str(self.annotation_dir), "no PNG masks (<frame>.png, or <object id>/<frame>.png)")
        return listing


def index(split: SplitSpec) -> dict[str, DavisVideo]:
    """Every video folder of ``images`` or ``annotations`` (a video missing from one of them is reported when it
    is used), in natural order."""
    if not split.annotations:
        raise DataError(split.images, "davis split without annotations: set the folder of mask folders "
                                      "(Annotations)")
    folders = {}
    for role, root in (("frame", Path(split.images)), ("mask", Path(split.annotations))):
        if not root.is_dir():
            raise DataError(str(root), f"folder of {role} folders (one per video) not found")
        folders[role] = {entry.name for entry in subfolders(root)}
    names = sorted(folders["frame"] | folders["mask"], key=natural_key)
    if not names:
        raise DataError(split.images, "no video folders in this folder")
    return {name: DavisVideo(name, Path(split.images) / name, Path(split.annotations) / name) for name in names}


def _pngs(entries: list[Path], root: Path) -> dict[str, Path]:
    """The PNG files of a listing by stem, none a link out of ``root``."""
    return {path.stem: contained(path, root) if path.is_symlink() else path
            for path in entries if path.suffix.lower() == ".png" and path.is_file()}
