"""An uploaded video decoded into frames the page tracks: a video file (decoded by OpenCV, as
``segfit data extract-frames`` decodes) or a zip of frame images (each checked as an image upload is).

Each limit is checked as early as the file allows: the byte size while the upload arrives (app.py), a video's
frame size from its header before any frame is decoded, a zip's frame count and entry sizes from its directory
before any entry is read, and a video's frame count while decoding (it stops at the first frame past the limit).
The frames go to one raw uint8 file, memory-mapped when used: a kept video costs disk space, not memory.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from segfit.data.image_io import IMAGE_EXTENSIONS, natural_key
from segfit.serve.images import Limits, UploadError, check_bytes, check_side, decode_upload

VIDEO_CONTAINERS = "MP4, MOV, M4V, WebM, MKV, AVI"

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
"""A zip with entries, an empty zip."""

MOV_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"})
"""The box types an MP4 / MOV file starts with (bytes 4–8)."""


@dataclass(frozen=True)
class VideoLimits:
    """What a video upload may be; a larger one gets a message naming the limit it passed."""

    max_bytes: int = 64 * 2**20
    max_frames: int = 300
    """Ten seconds at 30 fps; tracking takes at most ``MAX_PROPAGATED_FRAMES`` of them per request."""
    max_side: int = 1280
    max_uploads: int = 3
    """Uploaded videos kept on disk (up to 300 × 1280 × 1280 × 3 bytes, 1.4 GiB, each); the oldest goes first."""

    @property
    def frame(self) -> Limits:
        """The limits of one frame of a zip: those of an image upload, at the video's size."""
        return Limits(max_bytes=self.max_bytes, max_side=self.max_side)


@dataclass(frozen=True)
class StoredFrames:
    """Frames written by ``decode_video_upload``: a raw T×H×W×3 uint8 file."""

    path: Path
    shape: tuple[int, int, int, int]
    names: tuple[str, ...]
    """Per frame: the zip entry's file name, or ``00000``, ``00001``, … for a video file."""

    def load(self) -> np.ndarray:
        return np.memmap(self.path, np.uint8, "c", shape=self.shape)  # copy-on-write: torch wants writable arrays


class _FrameSink:
    """Frames appended to one raw file: all of one size, at most ``limits.max_frames``."""

    def __init__(self, file: BinaryIO, limits: VideoLimits):
        self.file, self.limits = file, limits
        self.names: list[str] = []
        self.shape: tuple[int, ...] | None = None

    def add(self, frame: np.ndarray, name: str) -> None:
        if len(self.names) == self.limits.max_frames:
            raise UploadError(f"the video has more than {self.limits.max_frames} frames; at most "
                              f"{self.limits.max_frames} are accepted (cut it shorter first)", status=413)
        check_side(frame.shape[1], frame.shape[0], self.limits.max_side, "video")
        if self.shape is None:
            self.shape = frame.shape
        elif frame.shape != self.shape:
            raise UploadError(f"frame {name} is {frame.shape[1]}×{frame.shape[0]}, the first frame "
                              f"{self.shape[1]}×{self.shape[0]}; all frames of a video must have one size")
        self.file.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        self.names.append(name)


def decode_video_upload(upload: Path, frames_file: Path, limits: VideoLimits) -> StoredFrames:
    """The frames of ``upload`` (a video file or a zip of frames, told apart by content) written to
    ``frames_file``, or ``UploadError`` saying what is wrong with the upload."""
    with open(upload, "rb") as file:
        head = file.read(12)
    with open(frames_file, "wb") as out:
        sink = _FrameSink(out, limits)
        if head.startswith(ZIP_SIGNATURES):
            _decode_zip(upload, sink, limits)
        elif _is_video_container(head):
            _decode_video(upload, sink, limits)
        else:
            raise UploadError(f"not a video ({VIDEO_CONTAINERS}) nor a zip of frames")
    if sink.shape is None:
        raise UploadError("no frame in the upload" if head.startswith(ZIP_SIGNATURES) else
                          "not a readable video (OpenCV decoded no frame)")
    return StoredFrames(frames_file, (len(sink.names), *sink.shape), tuple(sink.names))


def _is_video_container(head: bytes) -> bool:
    """MP4 / MOV (an ``ftyp`` box first, or in old QuickTime files another top-level box), Matroska / WebM (EBML),
    AVI (RIFF). Only these reach the decoder: FFmpeg also reads playlists and concat lists, which name other files,
    local or remote, to decode."""
    return (head[4:8] in MOV_FIRST_BOXES or head.startswith(b"\x1aE\xdf\xa3")
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI "))


def _decode_video(path: Path, sink: _FrameSink, limits: VideoLimits) -> None:
    import cv2  # only video uploads need OpenCV

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise UploadError("not a readable video (OpenCV cannot open it)")
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_side(width, height, limits.max_side, "video")
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            sink.add(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), f"{len(sink.names):05d}")
    finally:
        capture.release()


def _decode_zip(path: Path, sink: _FrameSink, limits: VideoLimits) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _frame_entries(archive.infolist())
            if len(entries) > limits.max_frames:
                raise UploadError(f"the zip holds {len(entries)} frames; at most {limits.max_frames} are accepted",
                                  status=413)
            for name, entry in entries:
                try:
                    check_bytes(entry.file_size, limits.max_bytes)  # as declared: zipfile reads no more than that
                    frame = decode_upload(archive.read(entry), limits.frame)
                except UploadError as err:
                    raise UploadError(f"{name}: {err}", err.status) from err
                sink.add(frame, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as err:
        raise UploadError(f"not a readable zip ({type(err).__name__}: {err})") from err


def _frame_entries(entries: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """The image entries of a zip (file name, entry) in natural order of the file names; entries are read, never
    extracted, but a name that leaves the archive's folder is refused all the same (made to attack extractors)."""
    frames, folders = [], set()
    for entry in entries:
        parts = entry.filename.replace("\\", "/").split("/")
        if entry.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise UploadError(f"zip entry {entry.filename!r:.100}: names that leave the archive's folder are refused")
        name = parts[-1]
        if entry.is_dir() or parts[0] == "__MACOSX" or name.startswith(".") or \
                PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # folders, macOS resource forks, hidden files, notes: not frames
        frames.append((name, entry))
        folders.add("/".join(parts[:-1]))
    if len(folders) > 1:
        raise UploadError(f"frames in {len(folders)} folders ({', '.join(sorted(folders))[:100]}); zip the frames of "
                          "one video")
    return sorted(frames, key=lambda frame: natural_key(frame[0]))
