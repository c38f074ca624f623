"""Box-tracking sequence layouts → ``TrackSequence`` lists (boxes read at once, frames decoded on use).

- ``got10k``: ``<root>/<sequence>/00000001.jpg ...`` + ``groundtruth.txt`` (one ``x,y,w,h`` line per frame),
  optional ``absence.label`` (1 = target absent) and ``cover.label`` (0 = fully covered); ``list.txt`` (if present)
  gives the order. Custom data in this layout needs only the frames and ``groundtruth.txt``.
- ``lasot``: ``<root>/<class>/<sequence>/img/00000001.jpg ...`` + ``groundtruth.txt``, optional
  ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated line of 0/1 flags).
- ``pysot``: the crop511 folder + ``train.json`` ``{video: {track "00": {frame "000123": [x1, y1, x2, y2]}}}`` (a
  ``[w, h]`` entry is accepted too); frame files are ``<video>/<frame>.<track>.x.jpg``, 511×511 crops centred on the
  target. Boxes of zero size are dropped, as the reference does.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from segfit.data.formats import _listed
from segfit.data.image_io import IMAGE_EXTENSIONS, natural_key
from segfit.data.records import DataError, TrackSequence
from segfit.spec.tracking import TrackingSplitSpec

Loader = Callable[[], TrackSequence]


def read_boxes(path: Path) -> np.ndarray:
    """T×4 boxes of a ``groundtruth.txt`` (comma, tab or space separated; ``NaN`` allowed)."""
    if not path.is_file():
        raise DataError(str(path), "groundtruth.txt not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        values = line.replace(",", " ").replace("\t", " ").split()
        try:
            row = [float(v) for v in values]
        except ValueError:
            raise DataError(str(path), f"line {number}: {line.strip()!r} is not four numbers") from None
        if len(row) != 4:
            raise DataError(str(path), f"line {number}: {len(row)} values, expected x, y, w, h")
        rows.append(row)
    return np.array(rows, np.float64).reshape(-1, 4)


def read_flags(path: Path, count: int) -> np.ndarray | None:
    """0/1 (or integer) flags, one per frame, from one value per line or one comma-separated line; None if absent."""
    if not path.is_file():
        return None
    values = path.read_text().replace(",", " ").split()
    try:
        flags = np.array([int(float(v)) for v in values])
    except ValueError:
        raise DataError(str(path), "flags must be integers") from None
    if len(flags) != count:
        raise DataError(str(path), f"{len(flags)} flags for {count} boxes")
    return flags


def frame_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(str(folder), "frame folder not found")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return [str(p) for p in sorted(files, key=lambda p: natural_key(p.stem))]


def _sequence(name: str, folder: Path, frames_dir: Path, hidden: list[np.ndarray | None]) -> TrackSequence:
    """A sequence whose frames and boxes must pair one to one; ``hidden`` flags mark frames without the target."""
    boxes, frames = read_boxes(folder / "groundtruth.txt"), frame_files(frames_dir)
    if len(frames) < len(boxes):
        raise DataError(str(frames_dir), f"{len(frames)} frames for {len(boxes)} boxes: frames are missing")
    visible = np.ones(len(boxes), bool)
    for flags in hidden:
        if flags is not None:
            visible &= ~flags.astype(bool)
    return TrackSequence(name=name, source=str(folder), frames=frames[:len(boxes)], boxes=boxes, visible=visible)


def _got10k_sequence(name: str, folder: Path) -> TrackSequence:
    count = len(read_boxes(folder / "groundtruth.txt"))
    cover = read_flags(folder / "cover.label", count)
    return _sequence(name, folder, folder, [read_flags(folder / "absence.label", count),
                                            None if cover is None else cover == 0])


def _got10k(split: TrackingSplitSpec) -> dict[str, Loader]:
    root = _root(split)
    listed = root / "list.txt"
    names = ([n.strip() for n in listed.read_text().splitlines() if n.strip()] if listed.is_file() else
             sorted((p.name for p in root.iterdir() if (p / "groundtruth.txt").is_file()), key=natural_key))
    return {name: partial(_got10k_sequence, name, root / name) for name in names}


def _lasot_sequence(folder: Path) -> TrackSequence:
    count = len(read_boxes(folder / "groundtruth.txt"))
    hidden = [read_flags(folder / f"{kind}.txt", count) for kind in ("full_occlusion", "out_of_view")]
    return _sequence(folder.name, folder, folder / "img", hidden)


def _lasot(split: TrackingSplitSpec) -> dict[str, Loader]:
    folders = sorted((p.parent for p in _root(split).glob("*/*/groundtruth.txt")), key=lambda p: natural_key(p.name))
    return {folder.name: partial(_lasot_sequence, folder) for folder in folders}


def _pysot(split: TrackingSplitSpec) -> dict[str, Loader]:
    root, anno = _root(split), Path(split.annotations)
    if not anno.is_file():
        raise DataError(str(anno), "train.json not found (set the split's annotations)")
    try:
        videos = json.loads(anno.read_text())
    except json.JSONDecodeError as err:
        raise DataError(str(anno), f"not valid JSON: {err}") from err
    if not isinstance(videos, dict) or not all(isinstance(tracks, dict) and all(isinstance(frames, dict)
                                                                               for frames in tracks.values())
                                                for tracks in videos.values()):
        raise DataError(str(anno), 'expected {video: {track: {frame: box}}} (e.g. {"a/vid1": {"00": {"000000": '
                                   '[x1, y1, x2, y2]}}})')
    sequences = {}
    for video, tracks in videos.items():
        for track, frames in tracks.items():
            keys = [k for k in frames if _box_wh(frames[k], anno, video, k) is not None]
            if not keys:
                continue
            keys.sort(key=int)
            boxes = np.array([_box_wh(frames[k], anno, video, k) for k in keys], np.float64)
            boxes = np.concatenate([np.zeros_like(boxes), boxes], axis=1)  # only w, h count in a crop511 frame
            files = [str(root / video / f"{int(k):06d}.{track}.x.jpg") for k in keys]
            name = f"{video}/{track}"
            sequences[name] = partial(TrackSequence, name=name, source=str(root / video), frames=files,
                                      boxes=boxes, visible=np.ones(len(keys), bool), cropped=True,
                                      video=video)
    return sequences


def _box_wh(box: list[float], anno: Path, video: str, key: str) -> tuple[float, float] | None:
    """(w, h) of a train.json entry; None for a zero-size box (dropped)."""
    if not key.isdigit():
        raise DataError(str(anno), f"video {video}: frame key {key!r} is not a digit string")
    if not isinstance(box, list) or not all(isinstance(v, (int, float)) for v in box):
        raise DataError(str(anno), f"video {video} frame {key}: box {box!r} is not a list of numbers")
    if len(box) == 4:
        w, h = box[2] - box[0], box[3] - box[1]
    elif len(box) == 2:
        w, h = box
    else:
        raise DataError(str(anno), f"video {video} frame {key}: box {box} is neither [x1, y1, x2, y2] nor [w, h]")
    return (w, h) if w > 0 and h > 0 else None


def _root(split: TrackingSplitSpec) -> Path:
    root = Path(split.images)
    if not split.images or not root.is_dir():
        raise DataError(split.images or "(empty)", f"{split.format} images folder not found")
    return root


TRACKING_FORMATS: dict[str, Callable[[TrackingSplitSpec], dict[str, Loader]]] = {
    "got10k": _got10k,
    "lasot": _lasot,
    "pysot": _pysot,
}


def list_sequences(split: TrackingSplitSpec) -> dict[str, Loader]:
    """Each sequence of the split by name, as a function reading its boxes (``file_list_txt`` selects by name), so
    ``segfit data check`` can report every bad sequence rather than stop at the first."""
    sequences = TRACKING_FORMATS[split.format](split)
    if split.file_list_txt:
        sequences = _listed(sequences, split.file_list_txt, split.images, "sequence")
    if not sequences:
        raise DataError(split.images, f"no {split.format} sequences found")
    return sequences


def open_tracking_split(split: TrackingSplitSpec) -> list[TrackSequence]:
    """The split's sequences; a bad sequence raises ``DataError`` naming the file."""
    return [load() for load in list_sequences(split).values()]
