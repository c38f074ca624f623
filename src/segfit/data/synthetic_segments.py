"""Synthetic semantic / instance / panoptic datasets for demos and tests (``segfit data synth --kind ...``).

Every scene has two stuff classes (an upper and a lower background band, dull and textured) and up to
``max_objects`` things of three classes, each class with its own hue (red, green, blue) and any shape, so a small
model can learn the classes from colour and the instances from shape and occlusion. The label map
(``label_map.json``, TAO's format) lists them all; everything is drawn from ``default_rng([seed, split, item])``.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from segfit.data.formats.coco_panoptic import id_to_rgb
from segfit.data.synthetic import _rle_annotations, _save_jpeg, _shape, _smooth_noise, _visible_enough, _with_noise

Kind = Literal["semantic", "instance", "panoptic"]

LABEL_MAP = [
    {"id": 1, "name": "sky", "isthing": False, "color": [110, 150, 200]},
    {"id": 2, "name": "ground", "isthing": False, "color": [150, 120, 80]},
    {"id": 3, "name": "red_thing", "isthing": True, "color": [230, 40, 40]},
    {"id": 4, "name": "green_thing", "isthing": True, "color": [40, 200, 60]},
    {"id": 5, "name": "blue_thing", "isthing": True, "color": [50, 70, 230]},
]
THING_HUES = {3: 0.0, 4: 0.33, 5: 0.62}
STUFF_COLOURS = {1: (0.55, 0.25, 0.75), 2: (0.1, 0.35, 0.5)}
"""Stuff id → (hue, saturation, value) of its band."""


def render_labelled_scene(rng: np.random.Generator, size: tuple[int, int],
                          max_objects: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, H×W class ids, H×W segment ids): stuff bands are segments 1 and 2, things 3, 4, ..."""
    h, w = size
    horizon = int(rng.uniform(0.3, 0.7) * h)
    classes = np.where(np.arange(h)[:, None] < horizon, 1, 2).repeat(w, axis=1)
    segments = classes.copy()
    texture = _smooth_noise(rng, h, w, int(rng.integers(8, 24)))[..., None]
    image = np.zeros((h, w, 3))
    for stuff, (hue, sat, val) in STUFF_COLOURS.items():
        colour = np.array(colorsys.hsv_to_rgb(hue + rng.uniform(-0.03, 0.03), sat, val))
        image[classes == stuff] = (colour * (0.8 + 0.3 * texture))[classes == stuff]
    shapes = [_shape(rng, h, w) for _ in range(int(rng.integers(1, max_objects + 1)))]
    for number, shape in enumerate(_visible_enough(shapes), start=3):
        thing = int(rng.choice(list(THING_HUES)))
        colour = np.array(colorsys.hsv_to_rgb(THING_HUES[thing] + rng.uniform(-0.04, 0.04), rng.uniform(0.7, 1.0),
                                              rng.uniform(0.7, 1.0)))
        shade = 1 - 0.35 * _smooth_noise(rng, h, w, int(rng.integers(3, 8)))[..., None]
        image[shape] = (colour * shade)[shape]
        classes[shape], segments[shape] = thing, number
    return _with_noise(rng, np.clip(image, 0, 1)), classes.astype(np.int32), segments.astype(np.int32)


def write_synthetic_segments(out_dir: str | Path, kind: Kind = "semantic", num_train: int = 16, num_val: int = 4,
                             size: tuple[int, int] = (128, 160), max_objects: int = 4, seed: int = 0) -> dict[str, Path]:
    """Write ``out_dir/{train,val}`` in the kind's format plus ``out_dir/label_map.json``.

    semantic: ``images/``, ``masks/`` (class-id PNGs) and ``annotations.jsonl`` (TAO ``ade``, paths relative to
    the split folder); instance: ``images/`` + ``annotations.json`` (COCO, things only); panoptic: ``images/``,
    ``panoptic/`` PNGs + ``panoptic.json``. Returns the paths by ``<split>_<what>``, and ``label_map``.
    """
    if kind not in ("semantic", "instance", "panoptic"):
        raise ValueError(f"kind must be semantic, instance or panoptic, got {kind!r}")
    if num_train < 1 or num_val < 0 or max_objects < 1 or min(size) < 16:
        raise ValueError(f"need num_train ≥ 1, num_val ≥ 0, max_objects ≥ 1 and a size of at least 16×16, got "
                         f"num_train={num_train}, num_val={num_val}, max_objects={max_objects}, size={size}")
    out = Path(out_dir)
    paths = {"label_map": out / "label_map.json"}
    out.mkdir(parents=True, exist_ok=True)
    paths["label_map"].write_text(json.dumps(LABEL_MAP, indent=1))
    for split_number, (name, count) in enumerate((("train", num_train), ("val", num_val))):
        if count == 0:
            continue
        split = out / name
        (split / "images").mkdir(parents=True, exist_ok=True)
        scenes = [render_labelled_scene(np.random.default_rng([seed, split_number, i]), size, max_objects)
                  for i in range(count)]
        for i, (image, _, _) in enumerate(scenes):
            _save_jpeg(split / "images" / f"img_{i:04d}.jpg", image)
        paths[f"{name}_images"] = split / "images"
        paths.update({f"{name}_{key}": path for key, path in WRITERS[kind](split, scenes).items()})
    return paths


def _semantic(split: Path, scenes: list) -> dict[str, Path]:
    (split / "masks").mkdir(exist_ok=True)
    lines = []
    for i, (_, classes, _) in enumerate(scenes):
        Image.fromarray(classes.astype(np.uint8)).save(split / "masks" / f"img_{i:04d}.png")
        lines.append(json.dumps({"img": f"images/img_{i:04d}.jpg", "segm": f"masks/img_{i:04d}.png"}))
    (split / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return {"masks": split / "masks", "jsonl": split / "annotations.jsonl", "root": split}


def _instance(split: Path, scenes: list) -> dict[str, Path]:
    images, annotations = [], []
    for i, (_, classes, segments) in enumerate(scenes):
        h, w = classes.shape
        images.append({"id": i + 1, "file_name": f"img_{i:04d}.jpg", "height": h, "width": w})
        things = np.where(classes >= 3, segments - 2, 0)  # thing segments renumbered 1..N
        for number, ann in enumerate(_rle_annotations(things, len(annotations) + 1), start=1):
            category = int(classes[things == number][0])
            annotations.append({**ann, "image_id": i + 1, "category_id": category, "iscrowd": 0})
    path = split / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{k: c[k] for k in ("id", "name")} for c in LABEL_MAP if c["isthing"]]}))
    return {"json": path}


def _panoptic(split: Path, scenes: list) -> dict[str, Path]:
    (split / "panoptic").mkdir(exist_ok=True)
    images, annotations = [], []
    for i, (_, classes, segments) in enumerate(scenes):
        h, w = classes.shape
        images.append({"id": i + 1, "file_name": f"img_{i:04d}.jpg", "height": h, "width": w})
        Image.fromarray(id_to_rgb(segments)).save(split / "panoptic" / f"img_{i:04d}.png")
        info = [{"id": int(s), "category_id": int(classes[segments == s][0]), "iscrowd": 0,
                 "area": int((segments == s).sum())} for s in np.unique(segments)]
        annotations.append({"image_id": i + 1, "file_name": f"img_{i:04d}.png", "segments_info": info})
    path = split / "panoptic.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": LABEL_MAP}))
    return {"json": path, "panoptic": split / "panoptic"}


WRITERS = {"semantic": _semantic, "instance": _instance, "panoptic": _panoptic}
