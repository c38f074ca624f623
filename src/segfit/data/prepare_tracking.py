"""``segfit data prepare-tracking``: sequence folders → pysot's crop511 layout (``crop511/`` + ``train.json``), in
parallel over sequences, resumable, with a progress bar (``data/jobs.py``).

Training does not need this (crops are cut straight from the frames); it pays off when frames are much larger than
the target's region, since a 511 crop decodes faster than a full-HD frame. Frame t of sequence s becomes
``crop511/<s>/<t:06d>.00.x.jpg``: the 511 × 511 region of side s_z · 511 / 127 around the target (s_z the template
region, ``data/crops.py``), padded with the frame's mean colour, as pysot's ``par_crop.py``; frames without a
usable box are left out. ``train.json`` lists each sequence's frames with their original ``[x1, y1, x2, y2]``.
A sequence is written into ``<s>.partial/`` and renamed once complete, so a restarted run skips finished ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from segfit.data.crops import PREP_SIZE, box_center, context_size, crop
from segfit.data.formats.tracking import open_tracking_split
from segfit.data.image_io import read_image
from segfit.data.jobs import JobFailed, JobReport, complete_folder, run_jobs
from segfit.data.pairs import REFERENCE_TEMPLATE
from segfit.data.records import TrackSequence
from segfit.spec.tracking import TrackingSplitSpec


def prepare_tracking(split: TrackingSplitSpec, out_dir: str | Path, workers: int = 1, quality: int = 95) -> JobReport:
    """Crop every sequence of ``split`` (got10k or lasot) into ``out_dir/crop511`` and write ``out_dir/train.json``;
    the report's items are the sequence names."""
    if split.format == "pysot":
        raise ValueError("prepare-tracking reads sequence folders (got10k, lasot); pysot data is already cropped")
    if workers < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need workers ≥ 1 and quality in 1..100, got {workers}, {quality}")
    out = Path(out_dir)
    crops = out / "crop511"
    crops.mkdir(parents=True, exist_ok=True)
    sequences = open_tracking_split(split)
    report = JobReport("sequence", "cropped", "crops")
    report.skipped = [s.name for s in sequences if (crops / s.name).is_dir()]
    run_jobs(_prepare_one, {s.name: (s, crops, quality) for s in sequences if not (crops / s.name).is_dir()}, workers,
             report)
    done = [s for s in sequences if s.name not in report.failed]
    (out / "train.json").write_text(json.dumps({s.name: {"00": _boxes(s)} for s in done}))
    return report


def _boxes(sequence: TrackSequence) -> dict[str, list[float]]:
    return {f"{t:06d}": [round(float(v), 2) for v in (x, y, x + w, y + h)]
            for t in sequence.usable for x, y, w, h in [sequence.boxes[t]]}


def _prepare_one(sequence: TrackSequence, crops: Path, quality: int) -> int:
    """Crops written."""
    with complete_folder(crops / sequence.name) as partial:
        for t in sequence.usable:
            frame = read_image(sequence.frames[t])
            box = sequence.boxes[t]
            side = context_size(*box[2:]) * PREP_SIZE / REFERENCE_TEMPLATE
            patch = crop(frame, box_center(box), side, PREP_SIZE)
            file = partial / f"{t:06d}.00.x.jpg"
            if not cv2.imwrite(str(file), cv2.cvtColor(patch, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise JobFailed(f"cannot write {file}")
    return len(sequence.usable)
