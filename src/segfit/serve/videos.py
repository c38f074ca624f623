"""Videos on the page: the spec's video datasets (frame folders) and uploads, and a prompt on one frame tracked from
there to the end of the video by each served video model (``video_inference.track_video``, as ``segfit inference``)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterator

import numpy as np
import torch

from segfit.data.formats import VIDEO_FORMATS, VideoReader, open_video_split
from segfit.data.records import VideoRecord
from segfit.metrics.masks import mask_iou
from segfit.models.sam2.predict import merge_box_into_points
from segfit.models.sam2.preprocess import boxes_to_model, points_to_model
from segfit.models.sam2.video import FramePrompts
from segfit.models.sam2.video_inference import track_video
from segfit.serve.images import display_name
from segfit.serve.prompts import Prompt, PromptError, target_object
from segfit.serve.session import ServedModel
from segfit.serve.video_upload import StoredFrames, VideoLimits, decode_video_upload
from segfit.spec.schema import DataSpec

MAX_PROPAGATED_FRAMES = 100
"""Frames tracked per request (from the prompted one): on a CPU each costs an image encoding."""

UPLOAD_FILE, FRAMES_FILE = "upload", "frames.u8"
"""File names in an upload's folder: the file as sent (until decoded), its frames."""


@dataclass
class Track:
    """One model's masks for frames ``start``, ``start + 1``, … of a video."""

    model: str
    masks: np.ndarray
    """T×H×W bool."""
    ious: list[float | None]
    """Per frame: IoU (J) with the ground-truth object the prompt points at, where that frame is annotated."""
    ms: float


class VideoCatalog:
    """The videos of the spec's ``davis`` / ``sav`` splits and uploaded ones, by ids the server made (``val/0``,
    ``upload/2``). Uploads live in a temp folder of the server's, one subfolder each, named by the server."""

    def __init__(self, splits: dict[str, VideoReader], limits: VideoLimits = VideoLimits()):
        self.splits = splits
        self.limits = limits
        self._uploads: OrderedDict[str, tuple[str, StoredFrames]] = OrderedDict()
        self._next_upload = 0
        self._temp: tempfile.TemporaryDirectory | None = None  # made at the first upload, removed with the catalogue
        self._last: tuple[str, VideoRecord] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, data: DataSpec, limits: VideoLimits = VideoLimits()) -> VideoCatalog:
        splits = {}
        for name in ("val", "test", "train"):
            split = getattr(data, name)
            if split is not None and split.images and split.format in VIDEO_FORMATS:
                splits[name] = open_video_split(split)
        return cls(splits, limits)

    def entries(self) -> list[dict[str, object]]:
        with self._lock:
            uploads = [{"id": id, "name": f"upload: {file_name}", "frames": frames.shape[0]}
                       for id, (file_name, frames) in reversed(self._uploads.items())]
        return uploads + [{"id": f"{split}/{i}", "name": f"{split}: {PurePath(reader.info(i).source).name}",
                           "frames": len(reader.info(i).frame_names)}
                          for split, reader in self.splits.items() for i in range(len(reader))]

    @contextmanager
    def upload_folder(self) -> Iterator[Path]:
        """A new empty folder for one upload, removed if anything fails before ``add_upload`` keeps it."""
        with self._lock:
            if self._temp is None:
                self._temp = tempfile.TemporaryDirectory(prefix="segfit-serve-")
            folder = Path(self._temp.name) / str(self._next_upload)
            self._next_upload += 1
        folder.mkdir()
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def add_upload(self, folder: Path, client_name: str) -> dict[str, object]:
        """Decodes ``folder / UPLOAD_FILE`` (then deleted) into frames kept as ``upload/<folder name>``; the oldest
        upload past ``limits.max_uploads`` is deleted."""
        upload = folder / UPLOAD_FILE
        try:
            frames = decode_video_upload(upload, folder / FRAMES_FILE, self.limits)
        finally:
            upload.unlink()
        id, file_name = f"upload/{folder.name}", display_name(client_name, "video")
        with self._lock:
            self._uploads[id] = (file_name, frames)
            while len(self._uploads) > self.limits.max_uploads:
                _, (_, old) = self._uploads.popitem(last=False)
                shutil.rmtree(old.path.parent, ignore_errors=True)  # a memory map of it stays readable (POSIX)
        return {"id": id, "name": f"upload: {file_name}", "frames": frames.shape[0]}

    def get(self, id: str) -> VideoRecord:
        """All frames of a video (the last one asked for is kept); ``KeyError`` for an id not in ``entries``."""
        split, _, index = id.partition("/")
        if split == "upload":
            return self._upload(id)
        reader = self.splits.get(split)
        if reader is None or not index.isdigit() or int(index) >= len(reader):
            raise KeyError(id)
        with self._lock:
            if self._last is not None and self._last[0] == id:
                return self._last[1]
        record = reader.load(int(index))
        with self._lock:
            self._last = (id, record)
        return record

    def _upload(self, id: str) -> VideoRecord:
        """An uploaded video: its frames memory-mapped, no object annotated."""
        with self._lock:
            file_name, stored = self._uploads[id]
        t, h, w, _ = stored.shape
        return VideoRecord(stored.load(), np.zeros((t, 0, h, w), bool), (), stored.names,
                           PurePath(file_name).stem or "video", annotated=np.zeros(t, bool))


def track(models: list[ServedModel], video: VideoRecord, start: int, prompt: Prompt, lock: threading.Lock) -> list[Track]:
    """Each video model's masks from frame ``start`` (where ``prompt`` is) to the end, at most
    ``MAX_PROPAGATED_FRAMES`` frames."""
    if not 0 <= start < len(video.frames):
        raise PromptError(f"frame: {start} is not a frame of this {len(video.frames)}-frame video")
    prompt.check_inside(video.size)
    stop = min(len(video.frames), start + MAX_PROPAGATED_FRAMES)
    target = target_object(video.masks[start], prompt)
    tracks = []
    with lock:
        for served in models:
            if served.video is None:
                raise PromptError(f"video: the {served.name} model is an image model (the spec's data has no videos)")
            began = time.perf_counter()
            image_size = served.predictor.image_size
            prompts = frame_prompts(prompt, video.size, image_size, served.predictor.device)
            masks = (track_video(served.video, video.frames[start:stop], prompts, image_size)[:, 0] > 0).cpu().numpy()
            tracks.append(Track(served.name, masks, _ious(masks, video, start, target),
                                (time.perf_counter() - began) * 1e3))
    return tracks


def frame_prompts(prompt: Prompt, orig_hw: tuple[int, int], image_size: int, device: torch.device) -> FramePrompts:
    """The page's clicks and box as one object's prompt in the model input frame."""
    points = labels = boxes = None
    if prompt.points:
        points = points_to_model(torch.tensor([prompt.points], device=device), orig_hw, image_size)
        labels = torch.tensor([prompt.labels], device=device)
    if prompt.box is not None:
        boxes = boxes_to_model(torch.tensor([prompt.box], device=device), orig_hw, image_size)
    return FramePrompts(*merge_box_into_points(points, labels, boxes))


def _ious(masks: np.ndarray, video: VideoRecord, start: int, target: int | None) -> list[float | None]:
    if target is None:
        return [None] * len(masks)
    gt = torch.from_numpy(video.masks[start:start + len(masks), target])
    ious = mask_iou(torch.from_numpy(masks), gt).tolist()
    return [iou if annotated else None for iou, annotated in zip(ious, video.annotated[start:])]
