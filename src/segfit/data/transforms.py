"""Training-time sample changes, each driven only by a per-sample seed so a resumed run redraws the same samples.

Images: ``augment`` and ``select_objects``. Video clips: ``augment_clip``, the official trainer's video transforms
with one draw per clip.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from segfit.data.records import ImageRecord, VideoRecord
from segfit.spec.schema import AugmentSpec, VideoAugmentSpec


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


# ---- video clips -------------------------------------------------------------------------------------------
AFFINE_FILL = (123, 116, 103)
"""Colour of the image area an affine uncovers: the ImageNet mean in 0-255 (official ``RandomAffine``)."""
NEAREST, NEAREST_EXACT, BILINEAR = InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT, InterpolationMode.BILINEAR
_ADJUST = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)


def augment_clip(clip: VideoRecord, spec: VideoAugmentSpec, seed: int) -> VideoRecord:
    """The official video transforms, in their order: flip, affine, resize, colour jitter, grayscale (each one
    random draw for the whole clip, so every frame gets the same geometry), then a colour jitter drawn per frame.

    Masks and ignore regions follow the geometry with nearest-neighbour sampling (pixel-centre aligned, so they
    stay on their pixels when resized), frames with bilinear. All randomness comes from ``seed`` (no global RNG is
    touched).
    """
    rng = np.random.default_rng(seed)
    frames = tv_tensors.Image(torch.from_numpy(clip.frames).permute(0, 3, 1, 2))
    masks = tv_tensors.Mask(torch.from_numpy(clip.masks))
    ignore = None if clip.ignore is None else tv_tensors.Mask(torch.from_numpy(clip.ignore))
    if rng.random() < spec.hflip:
        frames, masks, ignore = (None if x is None else F.horizontal_flip(x) for x in (frames, masks, ignore))
    frames, masks, ignore = _random_affine(frames, masks, ignore, spec, rng)
    if spec.resize:
        size = _resized(clip.size, int(rng.choice(spec.resize)), spec.resize_square)
        frames = F.resize(frames, size, antialias=True)
        masks, ignore = (None if x is None else F.resize(x, size, interpolation=NEAREST_EXACT) for x in (masks, ignore))
    frames = frames.float() / 255  # one conversion for every colour step (each would convert uint8 again)
    frames = _color_jitter(frames, spec.color_jitter, rng)
    if rng.random() < spec.grayscale:
        frames = F.rgb_to_grayscale(frames, num_output_channels=3)
    frames = torch.stack([_color_jitter(frame, spec.frame_color_jitter, rng) for frame in frames])
    frames = (frames * 255).round_().to(torch.uint8)
    return replace(
        clip,
        frames=np.ascontiguousarray(frames.permute(0, 2, 3, 1).numpy()),
        masks=masks.numpy(),
        ignore=None if ignore is None else ignore.numpy(),
    )


def _random_affine(frames: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None, spec: VideoAugmentSpec,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rotation, horizontal shear and zoom about the centre (torchvision ``RandomAffine`` draws); skipped, as in the
    official trainer, when an object visible in the first frame would leave it."""
    angle = float(rng.uniform(-spec.degrees, spec.degrees))
    shear = float(rng.uniform(-spec.shear, spec.shear))
    scale = float(rng.uniform(*spec.scale))
    if angle == 0 and shear == 0 and scale == 1:
        return frames, masks, ignore
    geometry = {"angle": angle, "translate": [0.0, 0.0], "scale": scale, "shear": [shear, 0.0]}
    planes = masks if ignore is None else torch.cat((masks, ignore[:, None]), dim=1)
    moved = _affine_planes(planes, geometry)
    moved_masks = moved[:, : masks.shape[1]]
    if (masks[0].flatten(1).any(1) & ~moved_masks[0].flatten(1).any(1)).any():
        return frames, masks, ignore
    frames = F.affine(frames, **geometry, interpolation=BILINEAR, fill=list(AFFINE_FILL))
    return frames, tv_tensors.Mask(moved_masks), None if ignore is None else tv_tensors.Mask(moved[:, -1])


PLANES_PER_MAP = 24
"""Bool planes packed into one integer map for nearest-neighbour geometry: torchvision resamples masks in float32,
which holds integers below 2^24 exactly."""


def _affine_planes(planes: torch.Tensor, geometry: dict) -> torch.Tensor:
    """(T, P, H, W) bool planes moved by one affine, nearest neighbour: packed as the bits of one integer map per
    24 planes, so the resampling runs once for them all instead of once per object."""
    moved = []
    for start in range(0, planes.shape[1], PLANES_PER_MAP):
        chunk = planes[:, start : start + PLANES_PER_MAP]
        bits = 2 ** torch.arange(chunk.shape[1], dtype=torch.int32)[:, None, None]
        packed = tv_tensors.Mask((chunk.to(torch.int32) * bits).sum(dim=1, keepdim=True))
        moved.append((F.affine(packed, **geometry, interpolation=NEAREST, fill=0) & bits) != 0)
    return torch.cat(moved, dim=1)


def _resized(size: tuple[int, int], side: int, square: bool) -> list[int]:
    """[height, width]: side × side, or the short side to ``side`` keeping the aspect ratio."""
    h, w = size
    if square:
        return [side, side]
    return [side, round(side * w / h)] if h <= w else [round(side * h / w), side]


def _color_jitter(frames: torch.Tensor, strengths: list[float], rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation in a random order, each factor from [1 - s, 1 + s] (official ColorJitter)."""
    order = rng.permutation(3)
    factors = [float(rng.uniform(max(0.0, 1 - s), 1 + s)) for s in strengths]
    for k in order:
        if strengths[k] > 0:
            frames = _ADJUST[k](frames, factors[k])
    return frames
