"""``segfit inference`` for SAM 2: prompted masks or the automatic stitched map, for an image or a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from transformers import Sam2Model

from segfit.data.image_io import list_images, read_image
from segfit.data.records import DataError
from segfit.models.sam2.automatic import automatic_map
from segfit.models.sam2.onnx import OnnxSam2Predictor
from segfit.models.sam2.predict import Sam2Predictor, predict_object
from segfit.models.sam2.spec import Sam2Spec
from segfit.visualize import colorize, overlay, save_png


def input_images(path: str | Path) -> list[Path]:
    """``inference.input``: one image file, or every image of a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(str(path), "inference.input: no such file or folder")
    return list(list_images(path).values())


def run_inference(load_model: Callable[[], Sam2Model], spec: Sam2Spec, out_dir: Path) -> list[Path]:
    """Writes per image: prompted → one mask PNG per object + overlay; automatic → index, colour and overlay PNGs."""
    inf = spec.inference
    if not inf.input:
        raise ValueError("inference.input: give an image file or a folder, e.g. inference.input=photos/")
    predictor = _predictor(load_model, spec)
    prompts = _load_prompts(inf.prompts_json) if inf.prompts_json else None
    written = []
    for path in input_images(inf.input):
        image = read_image(path)
        if inf.mode == "automatic":  # automatic_map sets the image itself
            written += _automatic(predictor, image, path, spec, out_dir)
        else:
            predictor.set_image(image)
            objects = prompts.get(path.name, prompts.get(path.stem, [])) if prompts is not None else _cli_objects(spec)
            written += _prompted(predictor, image, path, objects, inf.multimask_output, out_dir)
    return written


def _predictor(load_model: Callable[[], Sam2Model], spec: Sam2Spec) -> Sam2Predictor | OnnxSam2Predictor:
    """``inference.backend``: the PyTorch model, or the ONNX graphs ``segfit export`` wrote (same outputs)."""
    if spec.inference.backend == "onnx":
        export_dir = Path(spec.export.output_dir or Path(spec.results_dir) / "export")
        return OnnxSam2Predictor(spec.inference.onnx_dir or export_dir / "onnx", spec.model.image_size)
    model = load_model()
    return Sam2Predictor(model, spec.model.image_size, next(model.parameters()).device)


def _automatic(predictor: Sam2Predictor, image: np.ndarray, path: Path, spec: Sam2Spec, out_dir: Path) -> list[Path]:
    auto = spec.inference.automatic
    region = _region_for(auto.region, path, image.shape[:2]) if auto.region else None
    result = automatic_map(predictor, image, region, auto, spec.inference.multimask_output)
    index_path = out_dir / f"{path.stem}_index.png"
    index_path.parent.mkdir(parents=True, exist_ok=True)
    _save_index(index_path, result.index_map)
    return [
        index_path,
        save_png(out_dir / f"{path.stem}_color.png", colorize(result.index_map)),
        save_png(out_dir / f"{path.stem}_overlay.png", overlay(image, result.index_map)),
    ]


def _prompted(predictor: Sam2Predictor, image: np.ndarray, path: Path, objects: list[dict[str, Any]],
              multimask: bool, out_dir: Path) -> list[Path]:
    if not objects:
        raise ValueError(f"{path}: no prompts; give inference.points / inference.boxes or an entry in inference.prompts_json")
    masks, written, all_points, all_labels = [], [], [], []
    for i, obj in enumerate(objects):
        mask = predict_object(predictor, obj.get("points"), obj.get("labels"), obj.get("box"), multimask)[0].cpu().numpy()
        masks.append(mask)
        written.append(save_png(out_dir / f"{path.stem}_mask{i + 1}.png", mask.astype(np.uint8) * 255))
        if obj.get("points"):
            all_points += obj["points"]
            all_labels += obj.get("labels") or [1] * len(obj["points"])
    boxes = [o["box"] for o in objects if o.get("box")]
    drawn = overlay(image, np.stack(masks), points=np.array(all_points) if all_points else None,
                    labels=np.array(all_labels) if all_labels else None, boxes=np.array(boxes) if boxes else None)
    return written + [save_png(out_dir / f"{path.stem}_overlay.png", drawn)]


def _cli_objects(spec: Sam2Spec) -> list[dict[str, Any]]:
    """inference.points (all for one object) and inference.boxes (one object each) from the spec / command line."""
    inf = spec.inference
    objects = [{"points": inf.points, "labels": inf.labels}] if inf.points else []
    return objects + [{"box": box} for box in inf.boxes or []]


def _load_prompts(path: str) -> dict[str, list[dict[str, Any]]]:
    """``{"image.jpg": [{"points": [[x, y], ...], "labels": [1, 0]}, {"box": [x0, y0, x1, y1]}], ...}``."""
    try:
        prompts = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise DataError(path, "inference.prompts_json: file not found") from err
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON: {err}") from err
    if not isinstance(prompts, dict):
        raise DataError(path, "expected an object mapping image names to lists of prompts")
    for name, objects in prompts.items():
        for obj in objects if isinstance(objects, list) else [None]:
            if not isinstance(obj, dict) or not (obj.get("points") or obj.get("box")):
                raise DataError(path, f"{name}: each prompt needs 'points' and/or 'box', got {obj!r}")
            if obj.get("points") and any(len(p) != 2 for p in obj["points"]):
                raise DataError(path, f"{name}: points are [x, y] pairs, got {obj['points']}")
            if obj.get("box") and len(obj["box"]) != 4:
                raise DataError(path, f"{name}: a box is [x0, y0, x1, y1], got {obj['box']}")
    return prompts


def _region_for(region: str, image_path: Path, size: tuple[int, int]) -> np.ndarray:
    """The region mask of an image: one file for all images, or a folder with a mask per image stem."""
    region_path = Path(region)
    if region_path.is_dir():
        matches = [p for p in region_path.iterdir() if p.stem == image_path.stem]
        if not matches:
            raise DataError(str(region_path), f"no region mask named {image_path.stem}.* for {image_path}")
        region_path = matches[0]
    mask = read_image(region_path).max(axis=2) > 0
    if mask.shape != size:
        raise DataError(str(region_path), f"region mask size {mask.shape} differs from the image size {size} of {image_path}")
    return mask


def _save_index(path: Path, index_map: np.ndarray) -> None:
    """16-bit PNG, so more than 255 objects survive."""
    Image.fromarray(index_map.astype(np.uint16)).save(path)
