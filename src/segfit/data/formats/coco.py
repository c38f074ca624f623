"""COCO instance JSON: ``images`` + ``annotations`` (polygons, uncompressed or compressed RLE); crowds are ignored.

The JSON is parsed once when the split is opened (structure, ids and image references are checked then);
segmentations are decoded and checked when their image is loaded, so one bad annotation costs one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from segfit.data.files import read_json, within
from segfit.data.image_io import read_image
from segfit.data.records import DataError, ImageRecord, SegmentRecord
from segfit.spec.schema import SplitSpec


@dataclass(frozen=True)
class CocoSample:
    image: Path
    json: Path
    image_id: Any
    height: int
    width: int
    annotations: tuple[dict[str, Any], ...]


def index(split: SplitSpec) -> dict[str, CocoSample]:
    """Stem = ``file_name`` without its extension (subfolders kept), in the JSON's image order."""
    path = Path(split.annotations)
    if not path.is_file():
        raise DataError(str(path), "COCO annotation JSON not found")
    if not Path(split.images).is_dir():
        raise DataError(split.images, "images folder not found")
    data = _parse(path)
    images: dict[Any, dict[str, Any]] = {}
    for j, entry in enumerate(data["images"]):
        _require(entry, ("id", "file_name", "height", "width"), path, f"images[{j}]")
        if not (isinstance(entry["file_name"], str) and all(isinstance(entry[k], int) and entry[k] > 0
                                                            for k in ("height", "width"))):
            raise DataError(str(path), f"images[{j}]: file_name must be a string, height and width positive integers")
        if not isinstance(entry["id"], (int, str)):
            raise DataError(str(path), f"images[{j}]: id must be an integer or a string, got {entry['id']!r}")
        if entry["id"] in images:
            raise DataError(str(path), f"images[{j}]: duplicate image id {entry['id']}")
        images[entry["id"]] = entry
    per_image: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    for j, ann in enumerate(data["annotations"]):
        _require(ann, ("id", "image_id"), path, f"annotations[{j}]")
        if not isinstance(ann.get("category_id", 0), int) or not isinstance(ann["image_id"], (int, str)):
            raise DataError(str(path), f"annotations[{j}]: image_id must be an integer or a string, category_id an "
                                       f"integer; got {ann['image_id']!r}, {ann.get('category_id')!r}")
        if ann["image_id"] not in per_image:
            raise DataError(str(path), f"annotation {ann['id']}: image_id {ann['image_id']} is not in images")
        per_image[ann["image_id"]].append(ann)
    samples: dict[str, CocoSample] = {}
    for image_id, entry in images.items():
        image = within(split.images, entry["file_name"], path)
        stem = str(PurePosixPath(entry["file_name"]).with_suffix(""))
        if stem in samples:
            raise DataError(str(path), f"image {image_id}: file_name {entry['file_name']} repeats stem {stem}")
        samples[stem] = CocoSample(image, path, image_id, entry["height"],
                                   entry["width"], tuple(per_image[image_id]))
    return samples


def _parse(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(str(path), "top level must be an object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(str(path), f"missing list '{key}' (COCO instance format)")
    return data


def _require(entry: Any, keys: tuple[str, ...], path: Path, where: str) -> None:
    if not isinstance(entry, dict):
        raise DataError(str(path), f"{where}: must be an object, got {type(entry).__name__}")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise DataError(str(path), f"{where}: missing key(s) {', '.join(missing)}")


def orphan_annotations(split: SplitSpec) -> list[Path]:
    """None: one JSON holds every annotation, and one naming an image not in ``images`` already fails ``index``."""
    return []


def load(sample: CocoSample, split: SplitSpec) -> ImageRecord:
    """The objects as masks; crowd regions become the ignore mask."""
    record = load_segments(sample)
    objects = record.masks[~record.crowd]
    ignore = np.logical_or.reduce(record.masks[record.crowd]) if record.crowd.any() else None
    return ImageRecord(image=record.image, masks=objects, source=record.source, ignore=ignore)


def load_segments(sample: CocoSample) -> SegmentRecord:
    """Every annotation as a segment with its ``category_id`` and ``iscrowd`` flag."""
    image = read_image(sample.image)
    h, w = sample.height, sample.width
    if image.shape[:2] != (h, w):
        raise DataError(str(sample.image), f"image is {image.shape[0]}×{image.shape[1]} but image {sample.image_id} "
                                           f"in {sample.json} says height {h}, width {w}")
    masks = []
    for ann in sample.annotations:
        try:
            masks.append(decode_segmentation(ann.get("segmentation"), h, w))
        except ValueError as err:
            raise DataError(str(sample.json), f"annotation {ann['id']} (image {sample.image_id}): {err}") from err
    return SegmentRecord(image=image, masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                         category_ids=[int(ann.get("category_id", 0)) for ann in sample.annotations],
                         source=str(sample.image), annotation=str(sample.json),
                         crowd=[bool(ann.get("iscrowd", 0)) for ann in sample.annotations])


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """H×W bool from COCO polygons or RLE; ``ValueError`` says what is wrong (the caller names the file)."""
    if isinstance(segmentation, list):
        return _decode_polygons(segmentation, height, width)
    if isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys():
        return _decode_rle(segmentation, height, width)
    raise ValueError("segmentation must be a list of polygons or an RLE object with 'size' and 'counts'")


def _decode_polygons(polygons: list[Any], height: int, width: int) -> np.ndarray:
    for k, polygon in enumerate(polygons):
        if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                or not all(isinstance(v, (int, float)) for v in polygon)):
            raise ValueError(f"polygon {k} must be a flat list of an even number (≥ 6) of x, y coordinates")
        # pycocotools rasterises in C ints: NaN draws garbage and far-off points (1e300) crash the process
        xy = np.asarray(polygon, np.float64).reshape(-1, 2)
        if not (np.isfinite(xy).all() and (np.abs(xy) <= 2 * np.array([width, height]) + 1).all()):
            raise ValueError(f"polygon {k} has a coordinate that is not finite or lies more than the image's size "
                             f"outside it ({width}×{height})")
    if not polygons:
        return np.zeros((height, width), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def _decode_rle(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    rle_runs(rle, height, width)
    encoded = mask_utils.frPyObjects(rle, height, width) if isinstance(rle["counts"], list) else rle
    return mask_utils.decode(encoded).astype(bool)


def rle_runs(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The checked run lengths (background first) of an RLE object of a ``height``×``width`` mask."""
    size, counts = rle["size"], rle["counts"]
    if not isinstance(size, (list, tuple)) or list(size) != [height, width]:
        raise ValueError(f"RLE size {size} differs from the image's [height, width] [{height}, {width}]")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and 0 <= c <= height * width for c in counts):
            raise ValueError(f"uncompressed RLE counts must be integers from 0 to {height * width}")
        runs = np.asarray(counts, np.int64)
    elif isinstance(counts, (str, bytes)):
        runs = _compressed_runs(counts.encode("ascii") if isinstance(counts, str) else counts)
    else:
        raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    # pycocotools does not check this and decodes short run lists into uninitialised memory
    if runs.sum() != height * width or (runs.size and runs.min() < 0):
        raise ValueError(f"RLE runs cover {runs.sum()} pixels, the image has {height * width}")
    return runs


def _compressed_runs(counts: bytes) -> np.ndarray:
    """Run lengths of COCO's compressed RLE string: each number is 5-bit groups (low first) in characters offset
    by 48, 0x20 = another group follows, 0x10 in the last group = negative; every run after the second is stored
    as the difference from the run two before it."""
    chars = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if not chars.size:
        return chars
    if chars.min() < 0 or chars.max() >= 64:
        raise ValueError("compressed RLE counts hold characters outside the RLE alphabet")
    last = (chars & 0x20) == 0
    if not last[-1]:
        raise ValueError("compressed RLE counts end in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 35 bits: more than any mask has pixels, and more would overflow int64 below
        raise ValueError("compressed RLE counts hold a number of more than 7 characters")
    position = np.arange(chars.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    values -= np.where(chars[ends] & 0x10, np.left_shift(1, 5 * lengths), 0)
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs
