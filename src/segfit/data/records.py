"""The records that flow from format readers to recipes.

Readers know file formats, not models: each yields these records at the original size, and a family's recipe
turns them into model inputs. Tracking pairs will get their own record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class DataError(ValueError):
    """A sample that cannot be used, with the file it came from and what is wrong with it."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def check_image_and_masks(image: np.ndarray, masks: np.ndarray, source: str, annotation: str) -> tuple[int, int]:
    """(H, W) of an H×W×3 uint8 image whose N×H×W masks (from ``annotation``) fit it, else a ``DataError``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(source, f"image must be H×W×3 uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        where = "" if annotation == source else f" (from {annotation})"
        raise DataError(source, f"masks of shape {masks.shape[1:]}{where} do not match the image size {(h, w)}")
    return h, w


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
        h, w = check_image_and_masks(self.image, self.masks, self.source, self.source)
        if self.ignore is not None and self.ignore.shape != (h, w):
            raise DataError(self.source, f"ignore mask of shape {self.ignore.shape} does not match the image size {(h, w)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.image.shape[0], self.image.shape[1]


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a video from listing its folders, before decoding anything."""

    name: str
    """The video's name (its folder name; ``file_list_txt`` selects by it)."""
    source: str
    """The video's frame folder (for an image read as a one-frame video, the image's folder)."""
    frame_names: tuple[str, ...]
    """File names of all frames, in playing order."""
    annotated: tuple[int, ...]
    """Positions (into ``frame_names``) of the frames that have an annotation, increasing."""


@dataclass
class VideoRecord:
    """Frames of one video (all of them, or a clip) and the masks of a fixed set of objects in each frame.

    Frame ``t`` is the file ``frame_names[t]`` inside ``source``. An object absent from an annotated frame has an
    empty mask there; every mask of a frame without an annotation is empty too, and ``annotated[t]`` is False:
    "not annotated" is not "absent", so losses and metrics skip those frames.
    """

    frames: np.ndarray
    """T×H×W×3 uint8, RGB (a list of H×W×3 arrays is stacked; all frames of a video share one size)."""
    masks: np.ndarray
    """T×N×H×W bool: mask of object ``object_ids[n]`` in frame ``t``."""
    object_ids: tuple[int, ...]
    """The N objects' ids as the annotation names them (palette index, object folder number, SA-V masklet id; an
    image read as a video: 1..N)."""
    frame_names: tuple[str, ...]
    """The T frame file names (``00000.jpg``), for messages and output names."""
    source: str
    """The video's frame folder."""
    annotated: np.ndarray | None = None
    """T bool: which frames have an annotation (None: all of them)."""
    ignore: np.ndarray | None = None
    """T×H×W bool: pixels left out of losses and metrics (DAVIS "void", palette index 255)."""

    def __post_init__(self) -> None:
        self.object_ids, self.frame_names = tuple(self.object_ids), tuple(self.frame_names)
        if len(self.frame_names) != len(self.frames):
            raise DataError(self.source, f"{len(self.frames)} frames but {len(self.frame_names)} frame names")
        if isinstance(self.frames, (list, tuple)):
            self.frames = stack_frames(self.frames, self.frame_names, self.source)
        if self.frames.ndim != 4 or self.frames.shape[3] != 3 or self.frames.dtype != np.uint8 or not len(self.frames):
            raise DataError(self.source, f"frames must be T×H×W×3 uint8 with T ≥ 1, got {self.frames.shape} "
                                         f"{self.frames.dtype}")
        t, h, w = self.frames.shape[:3]
        if self.masks.ndim != 4 or self.masks.shape[:1] + self.masks.shape[2:] != (t, h, w):
            raise DataError(self.source, f"masks of shape {self.masks.shape} do not match {t} frames of {h}×{w} "
                                         f"(T×N×H×W)")
        if len(self.object_ids) != self.masks.shape[1] or len(set(self.object_ids)) != len(self.object_ids):
            raise DataError(self.source, f"object ids {self.object_ids} must be {self.masks.shape[1]} distinct ids")
        self.annotated = np.ones(t, bool) if self.annotated is None else np.asarray(self.annotated, bool)
        if self.annotated.shape != (t,):
            raise DataError(self.source, f"annotated flags of shape {self.annotated.shape} for {t} frames")
        if self.ignore is not None and self.ignore.shape != (t, h, w):
            raise DataError(self.source, f"ignore masks of shape {self.ignore.shape} do not match {t} frames of {h}×{w}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return self.frames.shape[1], self.frames.shape[2]

    def subset(self, frames: Sequence[int] | None = None, objects: Sequence[int] | None = None) -> VideoRecord:
        """The given frame positions (any order, e.g. reversed) and object ids (in that order) of this record."""
        t = list(range(len(self.frames))) if frames is None else list(frames)
        n = list(range(len(self.object_ids))) if objects is None else [self.object_ids.index(i) for i in objects]
        return VideoRecord(
            frames=self.frames[t], masks=self.masks[t][:, n], object_ids=tuple(self.object_ids[k] for k in n),
            frame_names=tuple(self.frame_names[k] for k in t), source=self.source, annotated=self.annotated[t],
            ignore=None if self.ignore is None else self.ignore[t],
        )

    def frame(self, t: int) -> ImageRecord:
        """Frame ``t`` as an image record (its masks in ``object_ids`` order, empty ones included)."""
        return ImageRecord(image=self.frames[t], masks=self.masks[t], source=f"{self.source}/{self.frame_names[t]}",
                           ignore=None if self.ignore is None else self.ignore[t])


def stack_frames(frames: Sequence[np.ndarray], names: Sequence[str], source: str) -> np.ndarray:
    """T×H×W×3 from a list of frames; a frame whose size differs from the first is a ``DataError`` naming it."""
    for name, frame in zip(names, frames):
        if frame.shape != frames[0].shape:
            raise DataError(f"{source}/{name}", f"frame is {frame.shape[0]}×{frame.shape[1]}, the video's first "
                                                f"frame {frames[0].shape[0]}×{frames[0].shape[1]}")
    return np.stack(frames) if len(frames) else np.zeros((0, 0, 0, 3), np.uint8)


@dataclass
class SegmentRecord:
    """One image with labelled segments, as its annotation names them (semantic, instance and panoptic data).

    A semantic map gives one segment per value present (ignore values included: the label map decides what they
    mean); instance and panoptic annotations give one segment per object, with its category id.
    """

    image: np.ndarray
    """H×W×3 uint8, RGB."""
    masks: np.ndarray
    """N×H×W bool, one per segment (instance masks may overlap)."""
    category_ids: np.ndarray
    """N int64: the class id of each segment as written on disk (PNG value, ``category_id``)."""
    source: str
    """The image file, for messages and output names."""
    annotation: str
    """The file the segments come from (mask PNG, JSON), named in label errors."""
    crowd: np.ndarray | None = None
    """N bool: COCO ``iscrowd`` segments (not trained; PQ and AP ignore predictions on them)."""

    def __post_init__(self) -> None:
        check_image_and_masks(self.image, self.masks, self.source, self.annotation)
        self.category_ids = np.asarray(self.category_ids, np.int64).reshape(-1)
        self.crowd = np.zeros(len(self.masks), bool) if self.crowd is None else np.asarray(self.crowd, bool)
        if len(self.category_ids) != len(self.masks) or len(self.crowd) != len(self.masks):
            raise DataError(self.annotation, f"{len(self.masks)} masks but {len(self.category_ids)} category ids "
                                             f"and {len(self.crowd)} crowd flags")

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


def segments_of_map(id_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N×H×W bool masks, N values) of an H×W map: one segment per distinct value, in increasing order."""
    values = np.unique(id_map)
    return id_map[None] == values[:, None, None], values.astype(np.int64)


@dataclass
class TrackSequence:
    """One target followed through one video: the frame files and the target's box in each (box trackers).

    A sequence is listed, not decoded: frames are read when a pair or a tracking run needs them. In a ``cropped``
    sequence (pysot's crop511 layout) every frame file is already the 511×511 region around the target, and only
    the box's width and height are used (the target sits at the crop's centre).
    """

    name: str
    """The video's name (and track number, for layouts with several targets per video)."""
    source: str
    """The sequence's folder (or the annotation file), for messages."""
    frames: tuple[str, ...]
    """Frame files in playing order."""
    boxes: np.ndarray
    """T×4 float64 boxes ``x, y, w, h`` in frame pixels (x, y: the top-left corner; NaN where unknown)."""
    visible: np.ndarray
    """T bool: the target is visible in the frame and its box is usable (finite, positive size)."""
    cropped: bool = False
    video: str = ""
    """The video the sequence follows a target through; empty: its own ``name``. Sequences of one video (pysot's
    tracks) count as one video when pairs are drawn."""

    def __post_init__(self) -> None:
        self.video = self.video or self.name
        self.frames = tuple(self.frames)
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, bool)
        if len(self.boxes) != len(self.frames) or self.visible.shape != (len(self.frames),):
            raise DataError(self.source, f"{len(self.frames)} frames but {len(self.boxes)} boxes and "
                                         f"{len(self.visible)} visibility flags")

    @property
    def usable(self) -> np.ndarray:
        """Positions of the frames a training pair can use: visible, with a finite box of positive size."""
        ok = self.visible & np.isfinite(self.boxes).all(axis=1) & (self.boxes[:, 2] > 0) & (self.boxes[:, 3] > 0)
        return np.flatnonzero(ok)
