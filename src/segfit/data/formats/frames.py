"""What the video formats share: a folder of frame files plus per-frame masks → a ``VideoRecord``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segfit.data.image_io import read_image
from segfit.data.records import DataError, VideoRecord, stack_frames

Annotation = tuple[dict[int, np.ndarray], np.ndarray | None]
"""One frame's masks: object id → H×W bool mask of the objects it annotates, and its void region (or None)."""


def read_frames(frame_dir: Path, frames: list[Path], annotated: list[bool], positions: Sequence[int] | None,
                annotation: Callable[[int, tuple[int, int]], Annotation], objects: Sequence[int] | None) -> VideoRecord:
    """Decode the frames at ``positions`` (default all) and their masks, ``annotation(position, frame size)``.

    ``objects`` (default: every object annotated in those frames, increasing) fixes the record's objects; one
    absent from a frame has an empty mask there.
    """
    positions = list(range(len(frames))) if positions is None else [_position(t, len(frames), frame_dir)
                                                                     for t in positions]
    names = [frames[t].name for t in positions]
    images = stack_frames([read_image(frames[t]) for t in positions], names, str(frame_dir))
    h, w = images.shape[1:3]
    annotations = [annotation(t, (h, w)) for t in positions]
    if objects is None:
        objects = sorted({object_id for present, _ in annotations for object_id in present})
    masks = np.zeros((len(positions), len(objects), h, w), bool)
    for t, (present, _) in enumerate(annotations):
        for n, object_id in enumerate(objects):
            if object_id in present:
                masks[t, n] = present[object_id]
    voids = [void for _, void in annotations]
    ignore = None if all(v is None for v in voids) else np.stack([np.zeros((h, w), bool) if v is None else v
                                                                  for v in voids])
    return VideoRecord(frames=images, masks=masks, object_ids=tuple(objects), frame_names=tuple(names),
                       source=str(frame_dir), annotated=np.array([annotated[t] for t in positions], bool),
                       ignore=ignore)


def check_every_object_appears(record: VideoRecord, where: Callable[[int], str]) -> None:
    """A whole video whose object never shows is a ``DataError`` naming ``where(object id)`` (its file)."""
    for n, object_id in enumerate(record.object_ids):
        if not record.masks[:, n].any():
            raise DataError(where(object_id), f"object {object_id} never appears: its mask is empty in all "
                                              f"{int(record.annotated.sum())} annotated frames")


def _position(t: int, count: int, folder: Path) -> int:
    if not -count <= t < count:
        raise IndexError(f"frame position {t} is outside the {count} frames of {folder}")
    return t % count
