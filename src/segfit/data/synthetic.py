"""Synthetic instance-segmentation datasets for demos and tests: images in any supported format, videos in the
DAVIS layout.

Scenes are textured shapes (ellipses, polygons, blobs) in saturated colours over dull textured backgrounds, so
a small model has something learnable; later shapes occlude earlier ones and the written masks are the visible
parts. In videos the shapes glide across a still background, passing in front of and behind each other.
Everything is drawn from ``numpy.random.default_rng([seed, split, item])``: same seed, same files.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from segfit.data.image_io import save_index_png

Scene = tuple[np.ndarray, np.ndarray]
"""(H×W×3 uint8 RGB image, H×W int32 visible instance ids 1..N, 0 = background)."""

MIN_VISIBLE_FRACTION = 0.3
"""A shape hidden by later ones below this fraction of its area is left out (else it would be slivers)."""
MIN_VISIBLE_PIXELS = 30


def write_synthetic_images(out_dir: str | Path, format: str = "labpics", num_train: int = 16, num_val: int = 4,
                           size: tuple[int, int] = (240, 320), max_objects: int = 5, seed: int = 0) -> dict[str, Path]:
    """Write ``out_dir/train`` and ``out_dir/val`` (skipped when ``num_val`` is 0) plus ``README.txt``.

    Returns the paths a ``SplitSpec`` needs: ``train_images``, ``train_annotations``, ``val_images``,
    ``val_annotations``.
    """
    if format not in WRITERS:
        raise ValueError(f"synthetic format {format!r} is unknown; formats: {', '.join(sorted(WRITERS))}")
    if num_train < 1 or num_val < 0 or max_objects < 1 or min(size) < 16:
        raise ValueError(f"need num_train ≥ 1, num_val ≥ 0, max_objects ≥ 1 and a size of at least 16×16, got "
                         f"num_train={num_train}, num_val={num_val}, max_objects={max_objects}, size={size}")
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for split_number, (name, count) in enumerate((("train", num_train), ("val", num_val))):
        if count == 0:
            continue
        scenes = [render_scene(np.random.default_rng([seed, split_number, i]), size, max_objects) for i in range(count)]
        images, annotations = WRITERS[format](out / name, scenes)
        paths[f"{name}_images"], paths[f"{name}_annotations"] = images, annotations
    settings = (f"format: {format}; images: {num_train} train, {num_val} val, {size[0]}x{size[1]} (HxW), JPEG;\n"
                f"1 to {max_objects} objects per image; seed {seed} (same seed, same files).\n"
                "Objects are textured ellipses, polygons and blobs in saturated colours on dull textured backgrounds;\n"
                "later objects occlude earlier ones and every mask is the visible part of its object.")
    _write_readme(out, format, settings, paths)
    return paths


def write_synthetic_videos(out_dir: str | Path, num_train: int = 4, num_val: int = 2, size: tuple[int, int] = (120, 160),
                           num_frames: int = 8, max_objects: int = 3, ann_every: int = 1,
                           layout: Literal["palette", "per_object"] = "palette", seed: int = 0) -> dict[str, Path]:
    """Write DAVIS-layout ``out_dir/train`` and ``out_dir/val`` (skipped when ``num_val`` is 0) plus ``README.txt``.

    Each split holds ``JPEGImages/video_000/00000.jpg ...`` and ``Annotations/video_000/``: palette PNGs
    ``00000.png`` (``layout="palette"``) or one folder of binary PNGs per object, ``1/00000.png`` (``per_object``),
    for every ``ann_every``-th frame. Returns ``train_images``, ``train_annotations``, ``val_images``,
    ``val_annotations`` (the ``JPEGImages`` and ``Annotations`` folders).
    """
    if layout not in ("palette", "per_object"):
        raise ValueError(f"layout must be 'palette' or 'per_object', got {layout!r}")
    if num_train < 1 or num_val < 0 or num_frames < 1 or max_objects < 1 or ann_every < 1 or min(size) < 16:
        raise ValueError(f"need num_train ≥ 1, num_val ≥ 0, num_frames ≥ 1, max_objects ≥ 1, ann_every ≥ 1 and a "
                         f"size of at least 16×16, got num_train={num_train}, num_val={num_val}, "
                         f"num_frames={num_frames}, max_objects={max_objects}, ann_every={ann_every}, size={size}")
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for split_number, (name, count) in enumerate((("train", num_train), ("val", num_val))):
        if count == 0:
            continue
        images, annotations = out / name / "JPEGImages", out / name / "Annotations"
        for i in range(count):
            frames, ids = render_video(np.random.default_rng([seed, split_number, i]), size, num_frames, max_objects)
            _write_davis_video(images / f"video_{i:03d}", annotations / f"video_{i:03d}", frames, ids, ann_every,
                               layout)
        paths[f"{name}_images"], paths[f"{name}_annotations"] = images, annotations
    settings = (f"videos: {num_train} train, {num_val} val, {num_frames} frames of {size[0]}x{size[1]} (HxW), JPEG, "
                f"annotated every {ann_every} frame(s) ({layout} masks);\n1 to {max_objects} objects per video; "
                f"seed {seed} (same seed, same files).\nObjects are textured shapes gliding over a still background, "
                f"passing in front of and behind each other;\nevery mask is the visible part of its object.")
    _write_readme(out, "davis", settings, paths)
    return paths


# ---- scenes ------------------------------------------------------------------------------------------------
def render_scene(rng: np.random.Generator, size: tuple[int, int], max_objects: int) -> Scene:
    """1..max_objects visible shapes over a background; ids follow painting order (later = on top)."""
    h, w = size
    shapes = [_shape(rng, h, w) for _ in range(int(rng.integers(1, max_objects + 1)))]
    shapes = _visible_enough(shapes)
    image = _background(rng, h, w)
    ids = np.zeros((h, w), np.int32)
    for number, shape in enumerate(shapes, start=1):
        texture = _object_texture(rng, h, w)
        image[shape] = texture[shape]
        ids[shape] = number
    return _with_noise(rng, image), ids


def render_video(rng: np.random.Generator, size: tuple[int, int], num_frames: int,
                 max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(T×H×W×3 uint8 frames, T×H×W int32 visible ids): 1..max_objects shapes, all visible enough in frame 0, each
    moving with its texture at a constant velocity (up to 4% of the short side per frame) in painting order."""
    h, w = size
    shapes = _visible_enough([_shape(rng, h, w) for _ in range(int(rng.integers(1, max_objects + 1)))])
    textures = [_object_texture(rng, h, w) for _ in shapes]
    velocities = rng.uniform(-0.04, 0.04, (len(shapes), 2)) * min(h, w)
    background = _background(rng, h, w)
    frames, ids = np.zeros((num_frames, h, w, 3), np.uint8), np.zeros((num_frames, h, w), np.int32)
    for t in range(num_frames):
        image = background.copy()
        for number, (shape, texture, (vy, vx)) in enumerate(zip(shapes, textures, velocities), start=1):
            dy, dx = round(vy * t), round(vx * t)
            moved = _shifted(shape, dy, dx)
            image[moved] = _shifted(texture, dy, dx)[moved]
            ids[t][moved] = number
        frames[t] = _with_noise(rng, image)
    return frames, ids


def _with_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    noise = rng.normal(0.0, 0.02, image.shape)
    return (np.clip(image + noise, 0, 1) * 255).round().astype(np.uint8)


def _shifted(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``array`` moved down ``dy`` and right ``dx`` pixels (negative: up / left); uncovered pixels are 0."""
    h, w = array.shape[:2]
    out = np.zeros_like(array)
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = array[max(-dy, 0):h - max(dy, 0),
                                                                          max(-dx, 0):w - max(dx, 0)]
    return out


def _visible_enough(shapes: list[np.ndarray]) -> list[np.ndarray]:
    """Drop shapes mostly hidden by later ones, walking down from the top one (always kept: nothing hides it), so
    dropping a shape never changes what the shapes above it cover."""
    kept: list[np.ndarray] = []
    covered = np.zeros_like(shapes[0])
    for shape in reversed(shapes):
        visible = int((shape & ~covered).sum())
        if (not kept and visible) or (visible >= MIN_VISIBLE_PIXELS and visible >= MIN_VISIBLE_FRACTION * shape.sum()):
            kept.append(shape)
            covered |= shape
    return kept[::-1]


def _shape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    radius = rng.uniform(0.08, 0.3) * min(h, w)
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - cy, xx - cx
    kind = rng.choice(["ellipse", "polygon", "blob"])
    if kind == "ellipse":
        angle, ratio = rng.uniform(0, np.pi), rng.uniform(0.4, 1.0)
        u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        return (u / radius) ** 2 + (v / (radius * ratio)) ** 2 <= 1
    if kind == "polygon":
        corners = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        reach = radius * rng.uniform(0.6, 1.0, len(corners))
        canvas = Image.new("1", (w, h))
        points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(corners, reach)]
        ImageDraw.Draw(canvas).polygon(points, fill=1)
        return np.asarray(canvas).copy()
    theta = np.arctan2(dy, dx)
    wobble = sum(rng.uniform(0, 0.25) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 5))
    return np.hypot(dx, dy) <= radius * (1 + wobble)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)).clip(0, 1)


def _stripes(rng: np.random.Generator, h: int, w: int, period: float) -> np.ndarray:
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    return 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)


def _colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value)))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Dull (low-saturation) gradient, cloudy noise or soft stripes: H×W×3 float in [0, 1]."""
    first, second = _colour(rng, (0, 0.25), (0.25, 0.8)), _colour(rng, (0, 0.25), (0.25, 0.8))
    kind = rng.choice(["gradient", "noise", "stripes"])
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        mix = xx * np.cos(angle) + yy * np.sin(angle)
        mix = (mix - mix.min()) / max(np.ptp(mix), 1e-6)
    elif kind == "noise":
        mix = _smooth_noise(rng, h, w, int(rng.integers(12, 40)))
    else:
        mix = 0.3 * _stripes(rng, h, w, rng.uniform(20, 60))
    return first * (1 - mix[..., None]) + second * mix[..., None]


def _object_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A saturated colour, plain, striped, checked or mottled with a darker shade of itself."""
    base = _colour(rng, (0.6, 1.0), (0.55, 1.0))
    kind = rng.choice(["plain", "stripes", "checks", "mottled"])
    if kind == "plain":
        mix = np.zeros((h, w))
    elif kind == "stripes":
        mix = _stripes(rng, h, w, rng.uniform(6, 16))
    elif kind == "checks":
        cell = int(rng.integers(4, 12))
        yy, xx = np.mgrid[0:h, 0:w]
        mix = ((yy // cell + xx // cell) % 2).astype(float)
    else:
        mix = _smooth_noise(rng, h, w, int(rng.integers(3, 8)))
    return base * (1 - 0.45 * mix[..., None])


# ---- writers -----------------------------------------------------------------------------------------------
def _save_jpeg(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, quality=95)


def _write_labpics(split_dir: Path, scenes: list[Scene]) -> tuple[Path, Path]:
    images, masks = split_dir / "images", split_dir / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i, (image, ids) in enumerate(scenes):
        _save_jpeg(images / f"img_{i:04d}.jpg", image)
        Image.fromarray(ids.astype(np.uint8 if ids.max() < 256 else np.uint16)).save(masks / f"img_{i:04d}.png")
    return images, masks


def _rle_annotations(ids: np.ndarray, first_id: int) -> list[dict]:
    annotations = []
    for number in range(1, int(ids.max()) + 1):
        mask = ids == number
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({"id": first_id + number - 1, "segmentation": {"size": list(mask.shape),
                            "counts": rle["counts"].decode("ascii")}, "area": int(mask.sum()),
                            "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
    return annotations


def _write_coco(split_dir: Path, scenes: list[Scene]) -> tuple[Path, Path]:
    images = split_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for i, (image, ids) in enumerate(scenes):
        _save_jpeg(images / f"img_{i:04d}.jpg", image)
        entries.append({"id": i + 1, "file_name": f"img_{i:04d}.jpg", "height": ids.shape[0], "width": ids.shape[1]})
        for ann in _rle_annotations(ids, len(annotations) + 1):
            annotations.append({**ann, "image_id": i + 1, "category_id": 1, "iscrowd": 0})
    path = split_dir / "annotations.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "object"}]}))
    return images, path


def _write_sa1b(split_dir: Path, scenes: list[Scene]) -> tuple[Path, Path]:
    images = split_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, (image, ids) in enumerate(scenes):
        _save_jpeg(images / f"sa_{i}.jpg", image)
        info = {"image_id": i, "file_name": f"sa_{i}.jpg", "height": ids.shape[0], "width": ids.shape[1]}
        (images / f"sa_{i}.json").write_text(json.dumps({"image": info, "annotations": _rle_annotations(ids, 0)}))
    return images, images


def _write_davis_video(frame_dir: Path, mask_dir: Path, frames: np.ndarray, ids: np.ndarray, ann_every: int,
                       layout: str) -> None:
    frame_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        _save_jpeg(frame_dir / f"{t:05d}.jpg", frame)
        if t % ann_every:
            continue
        if layout == "palette":
            save_index_png(mask_dir / f"{t:05d}.png", ids[t])
            continue
        for number in range(1, int(ids.max()) + 1):
            (mask_dir / str(number)).mkdir(exist_ok=True)
            Image.fromarray((ids[t] == number).astype(np.uint8) * 255).save(mask_dir / str(number) / f"{t:05d}.png")


WRITERS: dict[str, Callable[[Path, list[Scene]], tuple[Path, Path]]] = {
    "labpics": _write_labpics,
    "coco": _write_coco,
    "sa1b": _write_sa1b,
}


def _write_readme(out: Path, format: str, settings: str, paths: dict[str, Path]) -> None:
    splits = [name for name in ("train", "val") if f"{name}_images" in paths]
    lines = [
        "Synthetic instance-segmentation dataset written by `segfit data synth` (segfit.data.synthetic).",
        "",
        settings,
        "Layouts: docs/data-formats.md. Spec lines for this dataset:",
        "",
        "data:",
    ]
    for name in splits:
        lines.append(f"  {name}: {{format: {format}, images: {paths[f'{name}_images']}, "
                     f"annotations: {paths[f'{name}_annotations']}}}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.txt").write_text("\n".join(lines) + "\n")
