"""Tracking objects through a video with a (fine-tuned) SAM 2 video model: evaluation and ``segfit inference``.

The objects are given on the first frame (masks, clicks or boxes) and tracked through every other frame from memory
(``video.track_clip``); frames are encoded a few at a time, so long videos need no more encoder memory than a clip.
``segfit inference`` on a frame folder or a video file writes DAVIS-style palette PNGs per frame (readable back as
``format: davis`` annotations) and an overlay GIF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from transformers import Sam2VideoModel

from segfit.data.extract import extract_frames
from segfit.data.image_io import list_images, read_image, read_index_map, save_index_png
from segfit.data.records import DataError, stack_frames
from segfit.models.sam2.predict import merge_box_into_points
from segfit.models.sam2.preprocess import boxes_to_model, masks_to_original, points_to_model, preprocess_frames
from segfit.models.sam2.spec import Sam2Spec
from segfit.models.sam2.video import FramePrompts, clip_features, track_clip
from segfit.visualize import overlay

FRAMES_PER_CALL = 8
"""Frames encoded together: bounds the image encoder's memory on long videos."""

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})

GIF_FRAME_MS = 100


@torch.no_grad()
def track_video(model: Sam2VideoModel, frames: np.ndarray, prompts: FramePrompts, image_size: int) -> Tensor:
    """Logits (T, N, H, W) at the original size of the N objects ``prompts`` gives on frame 0 (model frame, on the
    model's device), for ``frames`` T×H×W×3 uint8."""
    device = next(model.parameters()).device
    pixels = preprocess_frames(frames, image_size).to(device)
    features = clip_features(model, pixels[:, None], encoder_grad=False, frames_per_call=FRAMES_PER_CALL)
    num_objects = len(prompts.masks if prompts.masks is not None else prompts.points)
    outputs = track_clip(model, features, torch.zeros(num_objects, dtype=torch.long, device=device), prompts)
    return torch.stack([masks_to_original(out.low_res, frames.shape[1:3])[:, 0] for out in outputs])


def mask_prompts(masks: np.ndarray | Tensor, image_size: int) -> Tensor:
    """Masks (N, H, W) at the original size → (N, S, S) float {0, 1} mask prompts, resized as Meta's predictor
    does (bilinear with antialiasing, then ≥ 0.5)."""
    masks = torch.as_tensor(masks)[:, None].float()
    return (F.interpolate(masks, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True) >= 0.5)[:, 0].float()


def run_video_inference(load_model: Callable[[], Sam2VideoModel], spec: Sam2Spec, out_dir: Path) -> list[Path]:
    """``inference.input``: a folder of frames or a video file; objects from ``inference.first_masks`` (an index
    map of the first frame), ``boxes`` (one object each) or ``points`` (one object). Writes
    ``<video>/masks/<frame>.png`` and ``<video>/overlay.gif`` under ``out_dir``."""
    inf = spec.inference
    if not inf.input:
        raise ValueError("inference.input: give a folder of frames or a video file, e.g. inference.input=clip.mp4")
    frame_dir = _frame_folder(Path(inf.input), out_dir)
    paths = list(list_images(frame_dir).values())
    frames = stack_frames([read_image(p) for p in paths], tuple(p.name for p in paths), str(frame_dir))
    model = load_model()
    device = next(model.parameters()).device
    logits = track_video(model, frames, first_frame_prompts(spec, frames.shape[1:3], device), spec.model.image_size)
    index = torch.where(logits.max(dim=1).values > 0, logits.argmax(dim=1) + 1, 0).cpu().numpy()
    video_dir = out_dir / frame_dir.name
    written = [save_index_png(video_dir / "masks" / f"{p.stem}.png", ids) for p, ids in zip(paths, index)]
    gif = [Image.fromarray(overlay(frame, ids)) for frame, ids in zip(frames, index)]
    gif[0].save(video_dir / "overlay.gif", save_all=True, append_images=gif[1:], duration=GIF_FRAME_MS, loop=0)
    return [*written, video_dir / "overlay.gif"]


def first_frame_prompts(spec: Sam2Spec, orig_hw: tuple[int, int], device: torch.device) -> FramePrompts:
    """The objects to track, in the model input frame: masks of an index map, boxes, or clicks (one object)."""
    inf, size = spec.inference, spec.model.image_size
    if inf.first_masks:
        ids = read_index_map(inf.first_masks, None)
        if ids.shape != orig_hw:
            raise DataError(inf.first_masks, f"index map of size {ids.shape} does not match the frames' {orig_hw}")
        objects = [k for k in np.unique(ids) if k != 0]
        if not objects:
            raise DataError(inf.first_masks, "no object in the first-frame index map (all 0)")
        return FramePrompts(masks=mask_prompts(np.stack([ids == k for k in objects]), size).to(device))
    if inf.boxes:
        boxes = boxes_to_model(torch.tensor(inf.boxes, dtype=torch.float32, device=device), orig_hw, size)
        points, labels = merge_box_into_points(None, None, boxes)
        return FramePrompts(points, labels)
    if inf.points:
        points = points_to_model(torch.tensor([inf.points], dtype=torch.float32, device=device), orig_hw, size)
        labels = torch.tensor([inf.labels or [1] * len(inf.points)], device=device)
        return FramePrompts(points, labels)
    raise ValueError("inference: a video needs its objects on the first frame: inference.first_masks=frame0.png, "
                     "inference.boxes=[[x0,y0,x1,y1],...] or inference.points=[[x,y],...]")


def _frame_folder(path: Path, out_dir: Path) -> Path:
    """A folder of frames as it is; a video file extracted to ``out_dir/frames/<stem>/`` first."""
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        extract_frames(path, out_dir / "frames")
        return out_dir / "frames" / path.stem
    if not path.is_dir():
        raise DataError(str(path), f"inference.input: not a folder of frames nor a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return path
