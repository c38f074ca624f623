"""Mask2Former samples: record → label-map targets → resize / crop / flip (torchvision v2) → normalised tensors.

Training (TAO / detectron2 recipe): shortest edge drawn from ``train_min_size`` (longest ≤ ``train_max_size``),
random ``train_crop_size`` crop (padded when the image is smaller; padding belongs to no mask), horizontal flip.
Evaluation and inference: shortest edge ``test_min_size`` (longest ≤ ``test_max_size``); outputs are mapped back
to the original size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from segfit.data.formats.segments import SegmentReader
from segfit.data.records import DataError, SegmentRecord
from segfit.models.mask2former.labels import LabelMap, Targets
from segfit.models.mask2former.spec import AugmentationSpec, Mode

SIZE_DIVISOR = 32
"""Batches are padded to a multiple of the backbone's largest stride."""


class Mask2FormerDataset(Dataset):
    """Items are ``(index, seed)``: every random choice of a sample comes from its seed (exact resume).

    A sample that fails to load or check is skipped (the next one is used) when ``on_error`` is ``skip``.
    """

    def __init__(self, reader: SegmentReader, labels: LabelMap, mode: Mode, augmentation: AugmentationSpec,
                 mean: list[float], std: list[float], on_error: str):
        self.reader, self.labels, self.mode, self.augmentation = reader, labels, mode, augmentation
        self.mean, self.std, self.on_error = mean, std, on_error

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        for offset in range(len(self.reader)):
            try:
                record = self.reader.load((index + offset) % len(self.reader))
                targets = self.labels.targets(record, self.mode)
            except DataError:
                if self.on_error == "raise":
                    raise
                continue
            image, masks = train_transform(record.image, targets.masks, self.augmentation, seed)
            keep = masks.flatten(1).any(1)  # objects cropped away
            return {"pixel_values": normalize(image, self.mean, self.std), "mask_labels": masks[keep].float(),
                    "class_labels": torch.from_numpy(targets.labels)[keep], "source": record.source, "seed": seed}
        raise RuntimeError(f"no usable training sample: all {len(self.reader)} images failed to load")


def train_transform(image: np.ndarray, masks: np.ndarray, aug: AugmentationSpec, seed: int) -> tuple[Tensor, Tensor]:
    """(3×H×W uint8, N×H×W bool) after the random resize, crop and flip drawn from ``seed``."""
    steps = v2.Compose([
        v2.RandomShortestSize(min_size=aug.train_min_size, max_size=aug.train_max_size, antialias=True),
        v2.RandomCrop(aug.train_crop_size, pad_if_needed=True, fill=0),
        v2.RandomHorizontalFlip(aug.hflip),
    ])
    inputs = (tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)), tv_tensors.Mask(torch.from_numpy(masks)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out_image, out_masks = steps(*inputs)
    return out_image.as_subclass(Tensor), out_masks.as_subclass(Tensor)


def test_size(height: int, width: int, aug: AugmentationSpec) -> tuple[int, int]:
    """(H, W) with the shortest edge ``test_min_size``, scaled down further if the longest passes ``test_max_size``."""
    scale = min(aug.test_min_size / min(height, width), aug.test_max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def eval_input(image: np.ndarray, aug: AugmentationSpec, mean: list[float], std: list[float]) -> Tensor:
    """1×3×H×W model input of an H×W×3 uint8 image, resized for testing and padded to ``SIZE_DIVISOR``."""
    resized = F.resize(torch.from_numpy(image).permute(2, 0, 1), list(test_size(*image.shape[:2], aug)), antialias=True)
    return pad_batch([normalize(resized, mean, std)])


def normalize(image: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """uint8 3×H×W → float, ``(x / 255 - mean) / std``."""
    return F.normalize(image.float() / 255.0, mean, std)


def pad_batch(images: list[Tensor]) -> Tensor:
    """B×3×H×W: images zero-padded at the bottom and right to a common size, a multiple of ``SIZE_DIVISOR``."""
    height = -(-max(i.shape[1] for i in images) // SIZE_DIVISOR) * SIZE_DIVISOR
    width = -(-max(i.shape[2] for i in images) // SIZE_DIVISOR) * SIZE_DIVISOR
    return torch.stack([torch.nn.functional.pad(i, (0, width - i.shape[2], 0, height - i.shape[1])) for i in images])


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Images padded into one tensor; the masks of each image stay a list (their count differs), padded like it;
    ``source``: the images' files, which a non-finite loss names; ``seeds``: the samples' seeds, which the loss
    draws each image's points from."""
    pixel_values = pad_batch([s["pixel_values"] for s in samples])
    height, width = pixel_values.shape[-2:]
    masks = [torch.nn.functional.pad(s["mask_labels"], (0, width - s["mask_labels"].shape[2],
                                                        0, height - s["mask_labels"].shape[1])) for s in samples]
    return {"pixel_values": pixel_values, "mask_labels": masks, "class_labels": [s["class_labels"] for s in samples],
            "source": [s["source"] for s in samples], "seeds": [s["seed"] for s in samples]}


def load_checked(reader: SegmentReader, labels: LabelMap, mode: Mode, i: int) -> tuple[SegmentRecord, Targets]:
    """Sample ``i`` and its targets (for evaluation and ``data check``)."""
    record = reader.load(i)
    return record, labels.targets(record, mode)
