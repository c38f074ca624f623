"""``segfit data prepare-tracking``: sequence folders → pysot's crop511 layout (``crop511/`` + ``train.json``), in
parallel over sequences, resumable, with a progress bar.

Training does not need this (crops are cut straight from the frames); it pays off when frames are much larger than
the target's region, since a 511 crop decodes faster than a full-HD frame. Frame t of sequence s becomes
``crop511/<s>/<t:06d>.00.x.jpg``: the 511 × 511 region of side s_z · 511 / 127 around the target (s_z the template
region, ``data/crops.py``), padded with the frame's mean colour, as pysot's ``par_crop.py``; frames without a
usable box are left out. ``train.json`` lists each sequence's frames with their original ``[x1, y1, x2, y2]``.
A sequence is written into ``<s>.partial/`` and renamed once complete, so a restarted run skips finished ones.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm.auto import tqdm

from segfit.data.crops import PREP_SIZE, box_center, context_size, crop
from segfit.data.formats.tracking import open_tracking_split
from segfit.data.image_io import read_image
from segfit.data.pairs import REFERENCE_TEMPLATE
from segfit.data.records import DataError, TrackSequence
from segfit.spec.tracking import TrackingSplitSpec


@dataclass
class PrepareReport:
    written: dict[str, int] = field(default_factory=dict)
    """Sequence → crops written by this run."""
    skipped: list[str] = field(default_factory=list)
    """Sequences already complete."""
    failed: dict[str, str] = field(default_factory=dict)
    """Sequence → why it could not be prepared."""

    def summary(self) -> str:
        return (f"{len(self.written)} sequence(s) cropped ({sum(self.written.values())} crops), "
                f"{len(self.skipped)} already done, {len(self.failed)} failed")


def prepare_tracking(split: TrackingSplitSpec, out_dir: str | Path, workers: int = 1, quality: int = 95) -> PrepareReport:
    """Crop every sequence of ``split`` (got10k or lasot) into ``out_dir/crop511`` and write ``out_dir/train.json``."""
    if split.format == "pysot":
        raise ValueError("prepare-tracking reads sequence folders (got10k, lasot); pysot data is already cropped")
    if workers < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need workers ≥ 1 and quality in 1..100, got {workers}, {quality}")
    out = Path(out_dir)
    crops = out / "crop511"
    crops.mkdir(parents=True, exist_ok=True)
    sequences = open_tracking_split(split)
    report = PrepareReport()
    todo = [s for s in sequences if not (crops / s.name).is_dir()]
    report.skipped = [s.name for s in sequences if (crops / s.name).is_dir()]
    parallel = workers > 1 and len(todo) > 1
    # spawned, not forked: a fork inherits OpenCV's and OpenMP's thread pools in whatever state they are, and can hang
    spawn = multiprocessing.get_context("spawn")
    with (ProcessPoolExecutor(min(workers, len(todo)), spawn) if parallel else nullcontext()) as pool, \
            tqdm(total=len(todo), desc="prepare-tracking", unit="seq", dynamic_ncols=True) as bar:
        results = (pool.map if parallel else map)(_prepare_one, todo, [crops] * len(todo), [quality] * len(todo))
        for sequence, result in zip(todo, results):
            bar.update()
            (report.written if isinstance(result, int) else report.failed)[sequence.name] = result
    done = [s for s in sequences if s.name not in report.failed]
    (out / "train.json").write_text(json.dumps({s.name: {"00": _boxes(s)} for s in done}))
    return report


def _boxes(sequence: TrackSequence) -> dict[str, list[float]]:
    return {f"{t:06d}": [round(float(v), 2) for v in (x, y, x + w, y + h)]
            for t in sequence.usable for x, y, w, h in [sequence.boxes[t]]}


def _prepare_one(sequence: TrackSequence, crops: Path, quality: int) -> int | str:
    """Crops written, or why none could be (worker processes return the message rather than raise)."""
    cv2.setNumThreads(1)  # parallel over sequences, not inside one
    partial = crops / f"{sequence.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    partial.mkdir(parents=True)
    try:
        for t in sequence.usable:
            frame = read_image(sequence.frames[t])
            box = sequence.boxes[t]
            side = context_size(*box[2:]) * PREP_SIZE / REFERENCE_TEMPLATE
            patch = crop(frame, box_center(box), side, PREP_SIZE)
            if not cv2.imwrite(str(partial / f"{t:06d}.00.x.jpg"), cv2.cvtColor(patch, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality]):
                return f"cannot write {partial / f'{t:06d}.00.x.jpg'}"
    except DataError as err:
        shutil.rmtree(partial, ignore_errors=True)
        return f"{err.path}: {err.problem}"
    partial.rename(crops / sequence.name)
    return len(sequence.usable)
