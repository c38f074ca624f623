"""Training samples for SAM 2: record (or clip) → object subset → augmentation → model-resolution tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segfit.data.formats import VideoReader
from segfit.data.records import DataError, ImageRecord
from segfit.data.safe import SafeReader
from segfit.data.sampling import sample_clip
from segfit.data.transforms import augment, augment_clip, select_objects
from segfit.models.sam2.preprocess import preprocess_frames, preprocess_image, resize_masks
from segfit.spec.schema import DataSpec


class _ReaderSamples(Dataset):
    """A reader's samples made at the model's ``image_size`` under the ``data`` section's settings."""

    def __init__(self, reader: SafeReader | VideoReader, data: DataSpec, image_size: int):
        self.reader = reader
        self.data = data
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.reader)


class Sam2ImageDataset(_ReaderSamples):
    """Items are ``(index, seed)``: every random choice of a sample comes from its seed (exact resume)."""

    reader: SafeReader

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        record = self._usable_record(index)
        record = select_objects(record, self.data.max_num_objects, seed)
        record = augment(record, self.data.augment, seed + 1)
        return to_model_sample(record, self.image_size)

    def _usable_record(self, index: int) -> ImageRecord:
        """The record at ``index``, or the next one that loads and has objects (skipped samples are counted)."""
        for offset in range(len(self.reader)):
            record = self.reader.load((index + offset) % len(self.reader))
            if record is not None and len(record.masks):
                return record
        raise RuntimeError(f"no usable training sample: all {len(self.reader)} images failed to load or have no objects")


def to_model_sample(record: ImageRecord, image_size: int) -> dict[str, Any]:
    """Stretch image and masks to the square model input, as the reference transforms do."""
    valid = np.ones(record.size, bool) if record.ignore is None else ~record.ignore
    return {
        "image": preprocess_image(record.image, image_size),
        "masks": resize_masks(record.masks, image_size),
        "valid": resize_masks(valid[None], image_size)[0],
        "source": record.source,
    }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Images stack; the objects of all images are flattened into ``masks`` (N, S, S) with ``image_index`` (N,),
    each object's image, so a training step decodes them together. ``valid`` is None when no image has ignored
    pixels. Both are decided here, on the host (in the loader's workers), so the step never asks the device."""
    masks = [s["masks"] for s in samples]
    counts = torch.tensor([len(m) for m in masks])
    fully_valid = all(bool(s["valid"].all()) for s in samples)
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "masks": torch.cat(masks),
        "image_index": torch.repeat_interleave(torch.arange(len(samples)), counts),
        "valid": None if fully_valid else torch.stack([s["valid"] for s in samples]),
        "source": [s["source"] for s in samples],
    }


class Sam2ClipDataset(_ReaderSamples):
    """Clips of videos for memory training. Items are ``(index, seed)``: the clip's frames, objects and augmentation
    all come from the seed (exact resume). A video that cannot give a clip (``DataError``) is skipped for the next
    one with ``data.on_error: skip``, and stops training otherwise."""

    reader: VideoReader

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        video = self.data.video
        for offset in range(len(self.reader)):
            try:
                clip = sample_clip(self.reader, (index + offset) % len(self.reader), seed, video.num_frames,
                                   video.max_num_objects, video.reverse_time_prob)
                break
            except DataError:
                if self.data.on_error == "raise":
                    raise
        else:
            raise RuntimeError(f"no usable training clip: none of the {len(self.reader)} videos gives one")
        clip = augment_clip(clip, video.augment, seed + 1)
        valid = None if clip.ignore is None else ~clip.ignore
        masks = resize_masks(clip.masks.reshape(-1, *clip.size), self.image_size)  # all frames' objects in one call
        return {
            "frames": preprocess_frames(clip.frames, self.image_size, exact=video.augment.backend == "reference"),
            "masks": masks.unflatten(0, clip.masks.shape[:2]),
            "valid": None if valid is None else resize_masks(valid, self.image_size),
            "source": clip.source,
        }


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames ``(T, B, 3, S, S)``; the objects of all clips flattened into ``masks`` ``(T, N, S, S)`` with
    ``clip_index`` (N,), each object's clip; ``valid`` ``(T, B, S, S)`` or None when no clip ignores pixels."""
    counts = torch.tensor([s["masks"].shape[1] for s in samples])
    valid = None
    if any(s["valid"] is not None for s in samples):
        valid = torch.stack([torch.ones_like(s["masks"][:, 0]) if s["valid"] is None else s["valid"] for s in samples],
                            dim=1)
    return {
        "frames": torch.stack([s["frames"] for s in samples], dim=1),
        "masks": torch.cat([s["masks"] for s in samples], dim=1),
        "clip_index": torch.repeat_interleave(torch.arange(len(samples)), counts),
        "valid": valid,
        "source": [s["source"] for s in samples],
    }
