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

from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segfit.data.files import contained, links_contained, read_json, read_text, relative, subfolders, within
from segfit.data.formats import _listed
from segfit.data.image_io import IMAGE_EXTENSIONS, natural_key
from segfit.data.records import DataError, TrackSequence
from segfit.spec.tracking import TrackingSplitSpec

Loader = Callable[[], TrackSequence]


def read_boxes(path: Path, root: Path) -> np.ndarray:
    """T×4 boxes of a ``groundtruth.txt`` (comma, tab or space separated; ``NaN`` allowed) inside ``root``."""
    rows = []
    for number, line in enumerate(read_text(contained(path, root), "groundtruth.txt").splitlines(), start=1):
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


def read_flags(path: Path, count: int, root: Path) -> np.ndarray | None:
    """0/1 (or integer) flags, one per frame, from one value per line or one comma-separated line; None if absent."""
    if not path.is_file():
        return None
    values = read_text(contained(path, root)).replace(",", " ").split()
    try:
        flags = np.array([int(float(v)) for v in values])
    except (ValueError, OverflowError):
        raise DataError(str(path), "flags must be integers") from None
    if len(flags) != count:
        raise DataError(str(path), f"{len(flags)} flags for {count} boxes")
    return flags


def frame_files(folder: Path, root: Path | None = None) -> list[str]:
    """The image files of ``folder`` in natural order; with a ``root``, neither it nor a file is a link out of it."""
    if not folder.is_dir():
        raise DataError(str(folder), "frame folder not found")
    if root is not None:
        contained(folder, root)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    links_contained(files, root or folder)
    return [str(p) for p in sorted(files, key=lambda p: natural_key(p.stem))]


def _sequence(name: str, folder: Path, frames_dir: Path, hidden: list[np.ndarray | None], root: Path) -> TrackSequence:
    """A sequence whose frames and boxes must pair one to one; ``hidden`` flags mark frames without the target."""
    boxes, frames = read_boxes(folder / "groundtruth.txt", root), frame_files(frames_dir, root)
    if len(frames) < len(boxes):
        raise DataError(str(frames_dir), f"{len(frames)} frames for {len(boxes)} boxes: frames are missing")
    visible = np.ones(len(boxes), bool)
    for flags in hidden:
        if flags is not None:
            visible &= ~flags.astype(bool)
    return TrackSequence(name=name, source=str(folder), frames=frames[:len(boxes)], boxes=boxes, visible=visible)


def _got10k_sequence(name: str, folder: Path, root: Path) -> TrackSequence:
    count = len(read_boxes(folder / "groundtruth.txt", root))
    cover = read_flags(folder / "cover.label", count, root)
    return _sequence(name, folder, folder, [read_flags(folder / "absence.label", count, root),
                                            None if cover is None else cover == 0], root)


def _got10k(split: TrackingSplitSpec) -> dict[str, Loader]:
    root = _root(split)
    listed = root / "list.txt"
    if listed.is_file():
        names = [n.strip() for n in read_text(contained(listed, root)).splitlines() if n.strip()]
    else:
        names = sorted((p.name for p in subfolders(root) if (p / "groundtruth.txt").is_file()), key=natural_key)
    return {name: partial(_got10k_sequence, name, relative(root, name, listed), root) for name in names}


def _lasot_sequence(folder: Path, root: Path) -> TrackSequence:
    count = len(read_boxes(folder / "groundtruth.txt", root))
    hidden = [read_flags(folder / f"{kind}.txt", count, root) for kind in ("full_occlusion", "out_of_view")]
    return _sequence(folder.name, folder, folder / "img", hidden, root)


def _lasot(split: TrackingSplitSpec) -> dict[str, Loader]:
    root = _root(split)
    folders = sorted((sequence for group in subfolders(root) for sequence in subfolders(group, root)
                      if (sequence / "groundtruth.txt").is_file()), key=lambda p: natural_key(p.name))
    return {folder.name: partial(_lasot_sequence, folder, root) for folder in folders}


def _pysot(split: TrackingSplitSpec) -> dict[str, Loader]:
    root, anno = _root(split), Path(split.annotations)
    videos = read_json(anno, "train.json (set the split's annotations)")
    if not isinstance(videos, dict) or not all(isinstance(tracks, dict) and all(isinstance(frames, dict)
                                               for frames in tracks.values()) for tracks in videos.values()):
        raise DataError(str(anno), 'expected {video: {track: {frame: box}}} (e.g. {"a/vid1": {"00": {"000000": '
                                   '[x1, y1, x2, y2]}}})')
    sequences = {}
    for video, tracks in videos.items():
        folder = within(root, video, anno)
        for track, frames in tracks.items():
            keys = [k for k in frames if _box_wh(frames[k], anno, video, k) is not None]
            if not keys:
                continue
            keys.sort(key=int)
            boxes = np.array([_box_wh(frames[k], anno, video, k) for k in keys], np.float64)
            boxes = np.concatenate([np.zeros_like(boxes), boxes], axis=1)  # only w, h count in a crop511 frame
            relative(folder, f"0.{track}.x.jpg", anno)  # the track key is the only name of a frame file not made here
            files = [folder / f"{int(k):06d}.{track}.x.jpg" for k in keys]
            links_contained(files, root)
            name = f"{video}/{track}"
            sequences[name] = partial(TrackSequence, name=name, source=str(folder), frames=[str(f) for f in files],
                                      boxes=boxes, visible=np.ones(len(keys), bool), cropped=True, video=video)
    return sequences


def _box_wh(box: Any, anno: Path, video: str, key: str) -> tuple[float, float] | None:
    """(w, h) of a train.json entry; None for a zero-size box (dropped)."""
    if not key.isdecimal():
        raise DataError(str(anno), f"video {video}: frame key {key!r} is not a digit string")
    if not isinstance(box, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
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
