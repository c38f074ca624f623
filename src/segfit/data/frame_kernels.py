"""The pixel kernels of clip augmentation, in two interchangeable sets (``data.video.augment.backend``).

``reference``: torchvision's PIL kernels, the ones Meta's trainer runs on its frames. ``fast``: OpenCV on uint8
arrays with the same geometry (the same inverse affine matrix, sampling points, fill rule and output size) and
PIL's truncation where PIL truncates; only OpenCV's interpolation weights and rounding differ, so pixels stay within
a few grey levels (docs/video.md) for 40 % of the CPU time. Masks never go through these: they follow the
geometry with the same nearest-neighbour kernel in both sets.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import cv2
import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import _get_inverse_affine_matrix
from torchvision.transforms.v2 import functional as F

AFFINE_FILL = (123, 116, 103)
"""Colour of the image area an affine uncovers: the ImageNet mean in 0-255 (official ``RandomAffine``)."""


Geometry = dict[str, Any]
"""torchvision ``affine`` arguments: ``angle``, ``translate``, ``scale``, ``shear`` about the image centre."""


class FrameKernels(Protocol):
    """Colour adjustments take the factor of torchvision's ``adjust_brightness`` / ``_contrast`` / ``_saturation``."""

    def load(self, frames: np.ndarray) -> list[Any]: ...
    def array(self, frames: Sequence[Any]) -> np.ndarray: ...
    def hflip(self, frames: list[Any]) -> list[Any]: ...
    def affine(self, frames: list[Any], geometry: Geometry) -> list[Any]: ...
    def resize(self, frames: list[Any], size: Sequence[int]) -> list[Any]: ...
    def adjust(self, frames: list[Any], kind: int, factor: float) -> list[Any]: ...
    def grayscale(self, frames: list[Any]) -> list[Any]: ...


class ReferenceKernels:
    """PIL images through torchvision (bilinear affine, antialiased bilinear resize, ``ImageEnhance`` blends)."""

    _ADJUST = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)

    def load(self, frames: np.ndarray) -> list[Image.Image]:
        return [Image.fromarray(frame) for frame in frames]

    def array(self, frames: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([np.asarray(frame) for frame in frames])

    def hflip(self, frames: list[Image.Image]) -> list[Image.Image]:
        return [F.horizontal_flip(frame) for frame in frames]

    def affine(self, frames: list[Image.Image], geometry: Geometry) -> list[Image.Image]:
        return [F.affine(frame, **geometry, interpolation=InterpolationMode.BILINEAR, fill=list(AFFINE_FILL))
                for frame in frames]

    def resize(self, frames: list[Image.Image], size: Sequence[int]) -> list[Image.Image]:
        return [F.resize(frame, list(size), antialias=True) for frame in frames]

    def adjust(self, frames: list[Image.Image], kind: int, factor: float) -> list[Image.Image]:
        return [self._ADJUST[kind](frame, factor) for frame in frames]

    def grayscale(self, frames: list[Image.Image]) -> list[Image.Image]:
        return [F.rgb_to_grayscale(frame, num_output_channels=3) for frame in frames]


class FastKernels:
    """H×W×3 uint8 arrays through OpenCV; a colour blend is ``addWeighted`` (saturated, as PIL's)."""

    def load(self, frames: np.ndarray) -> list[np.ndarray]:
        return list(frames)

    def array(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(frames)

    def hflip(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return [cv2.flip(frame, 1) for frame in frames]

    def affine(self, frames: list[np.ndarray], geometry: Geometry) -> list[np.ndarray]:
        """PIL's affine rule: output pixel centre (x + ½, y + ½) maps through the inverse matrix to a source point;
        one outside the image takes the fill colour, one inside is interpolated with the edge pixels repeated.
        In OpenCV's pixel-index coordinates that source point is ½ pixel up and left."""
        height, width = frames[0].shape[:2]
        a, b, c, d, e, f = _get_inverse_affine_matrix([width * 0.5, height * 0.5], **geometry)
        matrix = np.array([[a, b, c + (a + b - 1) / 2], [d, e, f + (d + e - 1) / 2]])
        flags = cv2.WARP_INVERSE_MAP
        # nearest-neighbour rounds the index, so a source point inside [0, W) × [0, H) keeps its 0
        outside = cv2.warpAffine(np.zeros((height, width), np.uint8), matrix, (width, height),
                                 flags=flags | cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=1)
        fill = np.empty_like(frames[0])
        fill[:] = AFFINE_FILL
        moved = []
        for frame in frames:  # float32, truncated back to uint8 as PIL does (a uint8 warp rounds: +½ level)
            out = cv2.warpAffine(frame.astype(np.float32), matrix, (width, height), flags=flags | cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE).astype(np.uint8)
            moved.append(cv2.copyTo(fill, outside, out))
        return moved

    def resize(self, frames: list[np.ndarray], size: Sequence[int]) -> list[np.ndarray]:
        return [resize_uint8(frame, size) for frame in frames]

    def adjust(self, frames: list[np.ndarray], kind: int, factor: float) -> list[np.ndarray]:
        """``factor`` × frame + (1 - ``factor``) × a base: black (brightness), the frame's mean grey rounded to an
        integer (contrast) or its grey version (saturation), as ``ImageEnhance`` blends them."""
        if kind == 2:
            return [cv2.addWeighted(frame, factor, self._grey3(frame), 1 - factor, _TRUNCATE) for frame in frames]
        return [cv2.addWeighted(frame, factor, frame, 0.0, _TRUNCATE + (1 - factor) * _base(frame, kind))
                for frame in frames]

    def grayscale(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return [self._grey3(frame) for frame in frames]

    @staticmethod
    def _grey3(frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(_grey(frame), cv2.COLOR_GRAY2RGB)


_TRUNCATE = 1e-3 - 0.5
"""Offset that makes OpenCV's rounding PIL's truncation (``Image.blend`` drops the fraction): a blend rounded from
x - 0.499 is ⌊x⌋ unless x's fraction is within 1e-3 of 1. Rounding instead would add half a grey level per blend,
up to 3 over the six blends of a frame."""


def _base(frame: np.ndarray, kind: int) -> int:
    """The constant a brightness (0) or contrast (1) blend mixes in."""
    return 0 if kind == 0 else int(_grey(frame).mean() + 0.5)


def _grey(frame: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, the weights of PIL's ``convert("L")``."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def resize_uint8(frame: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """H×W×C uint8 → ``size`` = [height, width] uint8, bilinear with half-pixel centres. Enlarging (both sides ≥),
    OpenCV's bilinear, which is what an antialiased resize is when no side shrinks; shrinking, PIL's antialiased
    bilinear (the filter torchvision's antialiased resize reproduces), as OpenCV's would alias."""
    height, width = size
    if height >= frame.shape[0] and width >= frame.shape[1]:
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))


KERNELS: dict[str, FrameKernels] = {"reference": ReferenceKernels(), "fast": FastKernels()}
"""The kernel set of each ``data.video.augment.backend``."""
