"""``segfit data synth``, ``segfit data check``, ``segfit data extract-frames`` and ``segfit data prepare-tracking``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segfit.data.extract import extract_frames as extract_video_frames
from segfit.data.jobs import JobReport
from segfit.data.prepare_tracking import prepare_tracking as crop_sequences
from segfit.data.synthetic import write_synthetic_images, write_synthetic_videos
from segfit.data.synthetic_segments import write_synthetic_segments
from segfit.data.synthetic_tracking import write_synthetic_tracking
from segfit.registry import recipe_for

SYNTH_DEFAULTS = {
    "image": {"format": "labpics", "num_train": 16, "num_val": 4, "size": (240, 320)},
    "video": {"format": "davis", "num_train": 4, "num_val": 2, "size": (120, 160)},
    "semantic": {"format": "ade", "num_train": 16, "num_val": 4, "size": (128, 160)},
    "instance": {"format": "coco", "num_train": 16, "num_val": 4, "size": (128, 160)},
    "panoptic": {"format": "coco_panoptic", "num_train": 16, "num_val": 4, "size": (128, 160)},
    "tracking": {"format": "got10k", "num_train": 8, "num_val": 2, "size": (120, 160)},
}
"""What ``segfit data synth`` writes for each ``--kind`` when an option is not given."""
KIND_FORMATS = {"image": ("labpics", "coco", "sa1b"), "video": ("davis",), "semantic": ("ade",), "instance": ("coco",),
                "panoptic": ("coco_panoptic",), "tracking": ("got10k",)}
"""Formats each kind can be written in (``ade`` writes the ``folders`` layout too)."""


def synth(out_dir: str, kind: str = "image", format: str | None = None, num_train: int | None = None,
          num_val: int | None = None, size: tuple[int, int] | None = None, seed: int = 0,
          num_frames: int = 8) -> dict[str, Path]:
    """Write a synthetic dataset; options left None take the kind's ``SYNTH_DEFAULTS``."""
    given = {"format": format, "num_train": num_train, "num_val": num_val, "size": size}
    options = {**SYNTH_DEFAULTS[kind], **{key: value for key, value in given.items() if value is not None}}
    if options["format"] not in KIND_FORMATS[kind]:
        raise ValueError(f"--format {options['format']} does not fit --kind {kind}: it is written in "
                         f"{' or '.join(KIND_FORMATS[kind])}")
    if kind in ("semantic", "instance", "panoptic"):
        paths = write_synthetic_segments(out_dir, kind, num_train=options["num_train"], num_val=options["num_val"],
                                         size=options["size"], seed=seed)
    elif kind == "tracking":
        paths = write_synthetic_tracking(out_dir, num_train=options["num_train"], num_val=options["num_val"],
                                         size=options["size"], num_frames=num_frames, seed=seed)
    elif kind == "video":
        paths = write_synthetic_videos(out_dir, num_train=options["num_train"], num_val=options["num_val"],
                                       size=options["size"], num_frames=num_frames, seed=seed)
    else:
        paths = write_synthetic_images(out_dir, format=options["format"], num_train=options["num_train"],
                                       num_val=options["num_val"], size=options["size"], seed=seed)
    print(f"synthetic {options['format']} dataset in {out_dir}:")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    return paths


def check(spec: Any) -> list[Any]:
    """Check every split the spec names, as its family reads them; returns the reports (printing them)."""
    reports = recipe_for(spec).check_data()
    if not reports:
        raise ValueError("data: no split to check; set the paths of data.train or data.train_mix (and val/test)")
    for report in reports:
        print(report.format())
    return reports


def extract_frames(videos: str, out_dir: str, every: int, workers: int, quality: int) -> bool:
    """Extract, print what happened; True when no video failed."""
    report = extract_video_frames(videos, out_dir, every=every, workers=workers, quality=quality)
    return _reported(report, f"frames in {out_dir}: {report.summary()}")


def prepare_tracking(sequences: str, data_format: str, out_dir: str, workers: int, quality: int) -> bool:
    """Crop, print what happened; True when no sequence failed."""
    from segfit.spec.tracking import TrackingSplitSpec

    report = crop_sequences(TrackingSplitSpec(format=data_format, images=sequences), out_dir, workers, quality)
    return _reported(report, f"crop511 in {out_dir}: {report.summary()}; train.json: {Path(out_dir) / 'train.json'}")


def _reported(report: JobReport, summary: str) -> bool:
    """Print each failed item and the summary; True when none failed."""
    for item, problem in report.failed.items():
        print(f"  failed   {item}: {problem}")
    print(summary)
    return not report.failed
