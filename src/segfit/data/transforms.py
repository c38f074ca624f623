"""Training-time sample changes, each driven only by a per-sample seed so a resumed run redraws the same samples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segfit.data.records import ImageRecord
from segfit.spec.schema import AugmentSpec


def augment(record: ImageRecord, spec: AugmentSpec, seed: int) -> ImageRecord:
    """Horizontal flip (image, masks and ignore region together) then colour jitter (image only).

    Brightness jitter is ``spec.color_jitter``, contrast and saturation half of it (the official trainer's
    0.1/0.03-0.05 ratio, rounded). Torch's global RNG is forked, so callers' random streams are untouched.
    """
    steps = []
    if spec.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=spec.hflip))
    if spec.color_jitter > 0:
        half = spec.color_jitter / 2
        steps.append(v2.ColorJitter(brightness=spec.color_jitter, contrast=half, saturation=half))
    if not steps:
        return record
    inputs = [tv_tensors.Image(torch.from_numpy(record.image).permute(2, 0, 1)),
              tv_tensors.Mask(torch.from_numpy(record.masks))]
    if record.ignore is not None:
        inputs.append(tv_tensors.Mask(torch.from_numpy(record.ignore)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        outputs = v2.Compose(steps)(*inputs)
    return replace(
        record,
        image=np.ascontiguousarray(outputs[0].permute(1, 2, 0).numpy()),
        masks=outputs[1].numpy(),
        ignore=outputs[2].numpy() if record.ignore is not None else None,
    )


def select_objects(record: ImageRecord, max_num_objects: int, seed: int) -> ImageRecord:
    """At most ``max_num_objects`` objects, a seeded random subset (in their original order) when there are more."""
    if max_num_objects < 1:
        raise ValueError(f"max_num_objects must be ≥ 1, got {max_num_objects}")
    if len(record.masks) <= max_num_objects:
        return record
    keep = np.sort(np.random.default_rng(seed).choice(len(record.masks), max_num_objects, replace=False))
    return replace(record, masks=record.masks[keep])
