"""The images the page offers: the spec's dataset images (with their ground truth) and uploads.

Every image has an id the server made (``val/3``, ``upload/2``); the client only ever names ids, so nothing it
sends becomes part of a path. Uploads are checked before they are decoded: their size in bytes, then the
dimensions their header declares, so a small file claiming a huge image is refused without decoding it.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from PIL import Image, UnidentifiedImageError

from segfit.data.formats import ImageReader, open_split
from segfit.data.image_io import rgb_array, strict_pillow
from segfit.data.records import DataError, ImageRecord
from segfit.spec.schema import DataSpec

UPLOAD_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP"})

RECENT_RECORDS = 4
"""Dataset images kept decoded: every click on an image needs its ground truth again."""


@dataclass(frozen=True)
class Limits:
    """What an upload may be; larger ones get a message saying which limit they passed."""

    max_bytes: int = 20 * 2**20
    max_side: int = 4096
    max_uploads: int = 16
    """Uploads kept in memory; the oldest goes first."""


class UploadError(ValueError):
    """An upload the server refuses; the message is shown on the page as it is."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    """For display only (a file name from the dataset, or the client's, never used as a path)."""
    has_gt: bool


def mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.3g} MiB"


def check_bytes(num_bytes: int, max_bytes: int) -> None:
    """Refuses a file over ``max_bytes`` (uploads, and the frames of a zip from its directory before reading)."""
    if num_bytes > max_bytes:
        raise UploadError(f"the file is {mib(num_bytes)}; uploads are limited to {mib(max_bytes)}", status=413)


def check_side(width: int, height: int, max_side: int, what: str = "image") -> None:
    """Refuses an image or video larger than ``max_side`` on a side, from the size its header declares."""
    if max(width, height) > max_side:
        raise UploadError(f"the {what} is {width}×{height} pixels; at most {max_side} on a side is accepted "
                          "(scale it down first)", status=413)


def display_name(client_name: str, default: str) -> str:
    """The client's file name as the page shows it: its last component, cut to 80 characters (never a path)."""
    return PurePath(client_name.replace("\\", "/")).name[:80] or default


def decode_upload(data: bytes, limits: Limits) -> np.ndarray:
    """H×W×3 uint8 RGB of an uploaded file, or ``UploadError`` saying what is wrong with it."""
    check_bytes(len(data), limits.max_bytes)
    try:
        with strict_pillow(), Image.open(io.BytesIO(data)) as image:  # strict: a truncated file is an error
            if image.format not in UPLOAD_FORMATS:
                raise UploadError(f"{image.format} images are not accepted; send {', '.join(sorted(UPLOAD_FORMATS))}")
            check_side(*image.size, limits.max_side)
            image.load()
            return rgb_array(image, "the upload")
    except UploadError:
        raise
    except DataError as err:  # a mode with no RGB conversion
        raise UploadError(err.problem) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UploadError(f"not a readable image ({type(err).__name__}: {err})") from err


class ImageCatalog:
    """Dataset images by id (read when asked) and uploads (kept decoded, the newest ``max_uploads``)."""

    def __init__(self, splits: dict[str, ImageReader], limits: Limits = Limits()):
        self.splits = splits
        self.limits = limits
        self._uploads: OrderedDict[str, tuple[str, ImageRecord]] = OrderedDict()
        self._next_upload = 0
        self._recent: OrderedDict[str, ImageRecord] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, data: DataSpec, min_object_area: int, limits: Limits = Limits()) -> ImageCatalog:
        """``data.val``, ``data.test`` and ``data.train`` (image formats; the others are left out)."""
        splits = {}
        for name in ("val", "test", "train"):
            split = getattr(data, name)
            if split is not None and split.images and split.format in ("labpics", "coco", "sa1b"):
                splits[name] = open_split(split, min_object_area)
        return cls(splits, limits)

    def entries(self) -> list[Entry]:
        with self._lock:
            uploads = [Entry(id, name, False) for id, (name, _) in reversed(self._uploads.items())]
        data = [Entry(f"{split}/{i}", f"{split}: {PurePath(reader.source(i)).name}", True)
                for split, reader in self.splits.items() for i in range(len(reader))]
        return uploads + data

    def add_upload(self, data: bytes, client_name: str) -> Entry:
        image = decode_upload(data, self.limits)
        file_name = display_name(client_name, "image")
        record = ImageRecord(image, np.zeros((0, *image.shape[:2]), bool), file_name)
        name = f"upload: {file_name}"
        with self._lock:
            id = f"upload/{self._next_upload}"
            self._next_upload += 1
            self._uploads[id] = (name, record)
            while len(self._uploads) > self.limits.max_uploads:
                self._uploads.popitem(last=False)
        return Entry(id, name, False)

    def get(self, id: str) -> ImageRecord:
        """The record of an id from ``entries`` / ``add_upload``; ``KeyError`` for any other string."""
        kind, _, index = id.partition("/")
        if kind == "upload":
            with self._lock:
                return self._uploads[id][1]
        reader = self.splits.get(kind)
        if reader is None or not index.isdigit() or int(index) >= len(reader):
            raise KeyError(id)
        with self._lock:
            if id in self._recent:
                self._recent.move_to_end(id)
                return self._recent[id]
        record = reader.load(int(index))
        with self._lock:
            self._recent[id] = record
            while len(self._recent) > RECENT_RECORDS:
                self._recent.popitem(last=False)
        return record
