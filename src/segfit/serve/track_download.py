"""Tracked masks kept for download, and the download: per model, a zip of DAVIS-style palette PNGs (the writer
``segfit inference`` uses for videos, readable back as ``format: davis`` annotations) and a COCO JSON of the same
masks. Tracking on a CPU takes minutes, so the download reuses the masks the page was shown instead of tracking
again."""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from segfit.data.image_io import palette_image
from segfit.serve.coco import video_coco_json
from segfit.serve.videos import Track

RECENT_TRACKS = 4
"""Tracks kept for download (a re-prompt tracks again); the oldest goes first."""

OBJECT_ID = 1
"""The palette index of the tracked object (0 is the background): the page tracks one object at a time."""


@dataclass(frozen=True)
class KeptTrack:
    video: str
    """The folder name in the zip (the video's name)."""
    frame_names: tuple[str, ...]
    """The tracked frames' names, from the prompted frame on."""
    width: int
    masks: dict[str, np.ndarray]
    """Model name → T×H×⌈W/8⌉ bit-packed masks (an eighth of bool arrays: 100 frames of 1280×720 take 11 MiB)."""

    def unpacked(self, model: str) -> np.ndarray:
        return np.unpackbits(self.masks[model], axis=-1, count=self.width).astype(bool)


class TrackStore:
    """The newest ``RECENT_TRACKS`` tracks, by ids the server made."""

    def __init__(self) -> None:
        self._tracks: OrderedDict[str, KeptTrack] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def add(self, video_name: str, frame_names: tuple[str, ...], tracks: list[Track]) -> str:
        kept = KeptTrack(_safe_name(PurePath(video_name).name, "video"), frame_names, tracks[0].masks.shape[2],
                         {t.model: np.packbits(t.masks, axis=-1) for t in tracks})
        with self._lock:
            id = str(self._next)
            self._next += 1
            self._tracks[id] = kept
            while len(self._tracks) > RECENT_TRACKS:
                self._tracks.popitem(last=False)
        return id

    def get(self, id: str) -> KeptTrack:
        """``KeyError`` for an id it never gave or no longer keeps."""
        with self._lock:
            return self._tracks[id]


def masks_zip(kept: KeptTrack, model: str) -> bytes:
    """``<video>/<frame>.png`` palette PNGs (index 1: the object) and ``<video>_coco.json`` of ``model``'s masks."""
    masks = kept.unpacked(model)
    stems = [_safe_name(PurePath(name).stem, f"{t:05d}") for t, name in enumerate(kept.frame_names)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for stem, mask in zip(stems, masks):
            with archive.open(f"{kept.video}/{stem}.png", "w") as entry:
                palette_image(mask * np.uint8(OBJECT_ID)).save(entry, format="PNG")
        coco = video_coco_json(kept.frame_names, masks, model)
        archive.writestr(f"{kept.video}_coco.json", json.dumps(coco))
    return buffer.getvalue()


def _safe_name(name: str, default: str) -> str:
    """A name made of letters, digits, ``_``, ``-`` and inner dots, to name zip entries with (names come from
    uploads: never ``..``, never a separator)."""
    return re.sub(r"[^\w.-]+", "_", name).strip(".") or default
