"""Training-time sample changes, each driven only by a per-sample seed so a resumed run redraws the same samples.

Images: ``augment`` and ``select_objects``. Video clips: ``augment_clip``, the official trainer's video transforms
with one draw per clip.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from segfit.data.frame_kernels import KERNELS, FrameKernels, Geometry
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
NEAREST, NEAREST_EXACT = InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT


def augment_clip(clip: VideoRecord, spec: VideoAugmentSpec, seed: int) -> VideoRecord:
    """The official video transforms, in their order: flip, affine, resize, colour jitter, grayscale (each one
    random draw for the whole clip, so every frame gets the same geometry), then a colour jitter drawn per frame.

    Frames go through the kernels of ``spec.backend`` (``frame_kernels``: PIL's, as the official pipeline, or
    OpenCV's on uint8; the draws and the geometry are the same); masks and ignore regions follow the same geometry
    with PIL's nearest-neighbour sampling whatever the backend, packed as the bits of one integer map per frame.
    All randomness comes from ``seed`` (no global RNG is touched).
    """
    kernels = KERNELS[spec.backend]
    rng = np.random.default_rng(seed)
    frames = kernels.load(clip.frames)
    planes = clip.masks if clip.ignore is None else np.concatenate((clip.masks, clip.ignore[:, None]), axis=1)
    maps = _pack(planes)
    if rng.random() < spec.hflip:
        frames, maps = kernels.hflip(frames), [F.horizontal_flip(m) for m in maps]
    geometry, moved = _random_affine(maps, clip.masks.shape[1], spec, rng)
    if geometry is not None:
        frames, maps = kernels.affine(frames, geometry), moved
    if spec.resize:
        size = _resized(clip.size, int(rng.choice(spec.resize)), spec.resize_square)
        frames = kernels.resize(frames, size)
        maps = [F.resize(m, size, interpolation=NEAREST_EXACT) for m in maps]
    frames = _color_jitter(kernels, frames, spec.color_jitter, rng)
    if rng.random() < spec.grayscale:
        frames = kernels.grayscale(frames)
    frames = [_color_jitter(kernels, [frame], spec.frame_color_jitter, rng)[0] for frame in frames]
    planes = _unpack(maps, planes.shape[1])
    num_objects = clip.masks.shape[1]
    return replace(
        clip,
        frames=kernels.array(frames),
        masks=planes[:, :num_objects],
        ignore=None if clip.ignore is None else planes[:, num_objects],
    )


def _random_affine(maps: list[Image.Image], num_objects: int, spec: VideoAugmentSpec,
                   rng: np.random.Generator) -> tuple[Geometry | None, list[Image.Image]]:
    """Rotation, horizontal shear and zoom about the centre (torchvision ``RandomAffine`` draws) and the maps moved
    by it; None, as in the official trainer, when it is the identity or an object visible in the first frame
    would leave it."""
    angle = float(rng.uniform(-spec.degrees, spec.degrees))
    shear = float(rng.uniform(-spec.shear, spec.shear))
    scale = float(rng.uniform(*spec.scale))
    if angle == 0 and shear == 0 and scale == 1:
        return None, maps
    geometry = {"angle": angle, "translate": [0.0, 0.0], "scale": scale, "shear": [shear, 0.0]}
    moved = [F.affine(m, **geometry, interpolation=NEAREST, fill=0) for m in maps]
    objects = np.arange(num_objects)
    before, after = (_objects_in(first, objects) for first in (maps[0], moved[0]))
    if (before & ~after).any():
        return None, maps
    return geometry, moved


PLANES_PER_MAP = 31
"""Bool planes packed into one PIL integer map (mode ``I``, 32-bit signed): nearest-neighbour geometry moves them
all at once, exactly."""


def _pack(planes: np.ndarray) -> list[Image.Image]:
    """(T, P, H, W) bool planes → one ``I`` image per frame whose bit k is plane k."""
    if planes.shape[1] > PLANES_PER_MAP:
        raise ValueError(f"clip transforms: at most {PLANES_PER_MAP} objects (and ignore region) per clip, "
                         f"got {planes.shape[1]}")
    bits = (1 << np.arange(planes.shape[1], dtype=np.int32))[:, None, None]
    return [Image.fromarray((frame.astype(np.int32) * bits).sum(axis=0, dtype=np.int32), mode="I") for frame in planes]


def _unpack(maps: list[Image.Image], num_planes: int) -> np.ndarray:
    """``_pack``'s images → (T, P, H, W) bool."""
    bits = (1 << np.arange(num_planes, dtype=np.int32))[:, None, None]
    return np.stack([(np.asarray(m, dtype=np.int32)[None] & bits) != 0 for m in maps])


def _objects_in(packed: Image.Image, objects: np.ndarray) -> np.ndarray:
    """Which of the planes ``objects`` have a pixel in a packed map."""
    present = np.bitwise_or.reduce(np.asarray(packed, dtype=np.int32), axis=None)
    return (present >> objects) & 1 == 1


def _resized(size: tuple[int, int], side: int, square: bool) -> list[int]:
    """[height, width]: side × side, or the short side to ``side`` keeping the aspect ratio."""
    h, w = size
    if square:
        return [side, side]
    return [side, round(side * w / h)] if h <= w else [round(side * h / w), side]


def _color_jitter(kernels: FrameKernels, frames: list[Any], strengths: list[float],
                  rng: np.random.Generator) -> list[Any]:
    """Brightness, contrast, saturation in a random order, each factor from [1 - s, 1 + s] (official ColorJitter);
    one draw for all ``frames``."""
    order = rng.permutation(3)
    factors = [float(rng.uniform(max(0.0, 1 - s), 1 + s)) for s in strengths]
    for k in order:
        if strengths[k] > 0:
            frames = kernels.adjust(frames, int(k), factors[k])
    return frames
