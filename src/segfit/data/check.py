"""``segfit data check``: load every sample of a split and name every file that is wrong, before a run starts.

Problems are samples that cannot be used (unreadable or missing files, size mismatches, bad JSON): with
``on_error: raise`` they stop a run. Warnings are samples that load but lose something: empty masks, objects
below ``min_object_area`` (dropped), images left with no object (skipped by training and evaluation), videos too
short for a clip; and annotation files no image uses (a map or JSON whose image is gone or misnamed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from segfit.data.formats import FORMATS, VIDEO_FORMATS, open_split, open_video_split
from segfit.data.formats.segments import SegmentReader
from segfit.data.formats.tracking import list_sequences
from segfit.data.records import DataError, TrackSequence
from segfit.data.sampling import choose_clip
from segfit.spec.schema import SplitSpec
from segfit.spec.tracking import TrackingSplitSpec


@dataclass
class _Findings(ABC):
    """What every split report holds: its name and format, and the files that are wrong."""

    name: str
    """Split name (``train``, ``val``, ``test``)."""
    data_format: str
    """The split's ``format``."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(file, problem) for every sample that cannot be used."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(file, what is lost) for samples that load but lose something."""

    @property
    def ok(self) -> bool:
        """Every sample loads (warnings do not count)."""
        return not self.problems

    @abstractmethod
    def summary(self) -> str:
        """The report's first line: its counts and status (each kind of split counts other things)."""

    def warn_orphans(self, paths: list[Path]) -> None:
        """Annotation files no sample uses (an image renamed or deleted, a stem mistyped): silently lost labels."""
        self.warnings += [(str(path), "no image of this name (orphan annotation file): never used") for path in paths]

    def _status(self) -> str:
        return f"{'OK' if self.ok else f'{len(self.problems)} problem(s)'}, {len(self.warnings)} warning(s)"

    def format(self) -> str:
        """A summary line, then one row per problem and warning: kind, file, what is wrong."""
        rows = [("problem", f, p) for f, p in self.problems] + [("warning", f, p) for f, p in self.warnings]
        lines = [self.summary()]
        if rows:
            width = min(max(len(f) for _, f, _ in rows), 80)
            lines.append(f"  {'kind':<8} {'file':<{width}}  what")
            lines += [f"  {kind:<8} {file:<{width}}  {what}" for kind, file, what in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": [{"file": f, "problem": p} for f, p in self.problems],
                "warnings": [{"file": f, "problem": p} for f, p in self.warnings], "ok": self.ok}


@dataclass
class CheckReport(_Findings):
    """An image split (``labpics``, ``coco``, ``sa1b``); warnings: empty masks, objects below
    ``min_object_area`` (dropped), images left with no object, annotation files with no image."""

    num_images: int = 0
    """Images the split lists."""
    num_loaded: int = 0
    """Images that loaded without a problem."""
    num_objects: int = 0
    """Objects kept (at least ``min_object_area`` pixels) over the loaded images."""
    objects_per_image: tuple[int, float, int] = (0, 0.0, 0)
    """(min, mean, max) kept objects per loaded image."""

    def summary(self) -> str:
        low, mean, high = self.objects_per_image
        return (f"{self.name} ({self.data_format}): {self.num_images} images, {self.num_loaded} loaded, "
                f"{self.num_objects} objects, objects per image min {low} / mean {mean:.2f} / max {high}: "
                f"{self._status()}")

    def to_dict(self) -> dict[str, Any]:
        low, mean, high = self.objects_per_image
        return {**super().to_dict(), "objects_per_image": {"min": low, "mean": mean, "max": high}}


@dataclass
class VideoCheckReport(_Findings):
    """A video split (``davis``, ``sav``); warnings: videos that load but cannot give a clip."""

    num_videos: int = 0
    """Videos the split lists."""
    num_loaded: int = 0
    """Videos whose every frame and mask loaded without a problem."""
    num_frames: int = 0
    """Frames of the loaded videos."""
    num_annotated: int = 0
    """Annotated frames of the loaded videos."""
    num_objects: int = 0
    """Objects of the loaded videos (each counted once per video)."""

    def summary(self) -> str:
        return (f"{self.name} ({self.data_format}): {self.num_videos} videos, {self.num_loaded} loaded, "
                f"{self.num_frames} frames ({self.num_annotated} annotated), {self.num_objects} objects: "
                f"{self._status()}")


@dataclass
class SegmentCheckReport(_Findings):
    """A labelled-segment split (semantic, instance, panoptic); problems include ids outside the label map;
    warnings: images with nothing to train on, classes never seen."""

    num_images: int = 0
    num_loaded: int = 0
    num_segments: int = 0
    """Training targets (masks with a class) over the loaded images."""
    images_per_class: dict[str, int] = field(default_factory=dict)
    """Class name → images that hold it."""

    def summary(self) -> str:
        seen = sum(1 for count in self.images_per_class.values() if count)
        return (f"{self.name} ({self.data_format}): {self.num_images} images, {self.num_loaded} loaded, "
                f"{self.num_segments} segments, {seen}/{len(self.images_per_class)} classes seen: {self._status()}")


def check_segment_split(name: str, data_format: str, open_reader: Callable[[], SegmentReader],
                        targets: Callable[[Any], tuple[Any, list[int]]], class_names: list[str]) -> SegmentCheckReport:
    """Load every sample and turn it into targets (never stopping at a bad one). ``open_reader()`` indexes the
    split; ``targets(record)`` → (the record's source, class indices of its targets), raising ``DataError``."""
    report = SegmentCheckReport(name=name, data_format=data_format, images_per_class=dict.fromkeys(class_names, 0))
    try:
        reader = open_reader()
    except DataError as err:
        report.problems.append((err.path, err.problem))
        return report
    report.num_images = len(reader)
    report.warn_orphans(reader.orphan_annotations())
    for i in range(len(reader)):
        try:
            source, labels = targets(reader.load(i))
        except DataError as err:
            report.problems.append((err.path, err.problem))
            continue
        report.num_loaded += 1
        report.num_segments += len(labels)
        if not labels:
            report.warnings.append((source, "no segment of a class (nothing to train on)"))
        for k in set(labels):
            report.images_per_class[class_names[k]] += 1
    unseen = [c for c, count in report.images_per_class.items() if not count]
    if unseen and report.num_loaded:
        report.warnings.append((name, f"{len(unseen)} class(es) never seen: {', '.join(unseen[:10])}"
                                      f"{' ...' if len(unseen) > 10 else ''}"))
    return report


@dataclass
class TrackingCheckReport(_Findings):
    """A box-tracking split (``got10k``, ``lasot``, ``pysot``); problems: missing frames, NaN boxes, negative sizes,
    boxes outside the image; warnings: sequences no training pair can use."""

    num_sequences: int = 0
    """Sequences the split lists."""
    num_loaded: int = 0
    """Sequences whose boxes and frame list loaded."""
    num_frames: int = 0
    """Frames of the loaded sequences."""
    num_usable: int = 0
    """Frames with a visible target and a usable box."""

    def summary(self) -> str:
        return (f"{self.name} ({self.data_format}): {self.num_sequences} sequences, {self.num_loaded} loaded, "
                f"{self.num_frames} frames ({self.num_usable} with a usable box): {self._status()}")


def check_split(name: str, split: SplitSpec, min_object_area: int = 1) -> CheckReport:
    """Load every sample (never stopping at a bad one) and report counts, problems and warnings."""
    report = CheckReport(name=name, data_format=split.format)
    try:
        reader = open_split(split, min_object_area=0)  # keep every object so empty and tiny ones can be reported
    except DataError as err:
        report.problems.append((err.path, err.problem))
        return report
    report.num_images = len(reader)
    report.warn_orphans(FORMATS[split.format].orphan_annotations(split))
    counts = []
    for i in range(len(reader)):
        try:
            record = reader.load(i)
        except DataError as err:
            report.problems.append((err.path, err.problem))
            continue
        areas = record.masks.sum(axis=(1, 2))
        empty, tiny = areas == 0, (areas > 0) & (areas < min_object_area)
        if empty.any():
            report.warnings.append((record.source, f"{int(empty.sum())} empty mask(s) (0 pixels)"))
        if tiny.any():
            what = f"{int(tiny.sum())} object(s) below min_object_area={min_object_area} px"
            report.warnings.append((record.source, f"{what} (smallest {int(areas[tiny].min())} px), dropped"))
        kept = int(((areas > 0) & (areas >= min_object_area)).sum())
        if not kept:
            report.warnings.append((record.source, "no objects (skipped by training and evaluation)"))
        counts.append(kept)
    report.num_loaded, report.num_objects = len(counts), sum(counts)
    if counts:
        report.objects_per_image = (min(counts), sum(counts) / len(counts), max(counts))
    return report


def check_video_split(name: str, split: SplitSpec, num_frames: int = 8, reverse_time_prob: float = 0.0) -> VideoCheckReport:
    """Load every video whole (never stopping at a bad one): counts, the first problem of each bad video (missing
    folders, unreadable frames or masks, sizes that differ, masks without a frame, objects that never appear), and
    a warning for each video the clip sampler cannot use (too few annotated frames, no window starting with an
    object)."""
    report = VideoCheckReport(name=name, data_format=split.format)
    try:
        reader = open_video_split(split)
    except DataError as err:
        report.problems.append((err.path, err.problem))
        return report
    report.num_videos = len(reader)
    for i in range(len(reader)):
        try:
            video = reader.load(i)
        except DataError as err:
            report.problems.append((err.path, err.problem))
            continue
        report.num_loaded += 1
        report.num_frames += len(video.frames)
        report.num_annotated += int(video.annotated.sum())
        report.num_objects += len(video.object_ids)
        try:
            choose_clip(reader, i, 0, num_frames, reverse_time_prob=reverse_time_prob)
        except DataError as err:
            report.warnings.append((err.path, f"{err.problem}: never sampled for training"))
    return report


def check_tracking_split(name: str, split: TrackingSplitSpec) -> TrackingCheckReport:
    """Every sequence's boxes and frame files (the first frame's size read from its header), never stopping at a
    bad sequence."""
    report = TrackingCheckReport(name=name, data_format=split.format)
    try:
        sequences = list_sequences(split)
    except DataError as err:
        report.problems.append((err.path, err.problem))
        return report
    report.num_sequences = len(sequences)
    for load in sequences.values():
        try:
            sequence = load()
        except DataError as err:
            report.problems.append((err.path, err.problem))
            continue
        report.num_loaded += 1
        report.num_frames += len(sequence.frames)
        report.num_usable += len(sequence.usable)
        report.problems += [(sequence.source, problem) for problem in _box_problems(sequence)]
        if not len(sequence.usable):
            report.warnings.append((sequence.source, "no frame with a visible target: never used for training"))
    return report


def _box_problems(sequence: TrackSequence) -> list[str]:
    missing = [Path(f).name for f in sequence.frames if not Path(f).is_file()]
    problems = [f"{len(missing)} missing frame(s), first {missing[0]}"] if missing else []
    shown = sequence.visible
    checks = {"NaN box(es)": ~np.isfinite(sequence.boxes).all(axis=1) & shown,
              "negative size(s)": (sequence.boxes[:, 2:] < 0).any(axis=1)}
    if not sequence.cropped and len(missing) < len(sequence.frames):
        with Image.open(next(f for f in sequence.frames if Path(f).is_file())) as first:  # the header only
            width, height = first.size
        x, y, w, h = sequence.boxes.T
        with np.errstate(invalid="ignore"):  # NaN boxes are reported above
            checks["box(es) outside the image"] = shown & ((x < -1) | (y < -1) | (x + w > width + 1) |
                                                          (y + h > height + 1))
    for what, bad in checks.items():
        if bad.any():
            problems.append(f"{int(bad.sum())} {what}, first at frame {int(np.flatnonzero(bad)[0]) + 1}")
    return problems


def check_tracking_splits(data: Any) -> list[TrackingCheckReport]:
    """Reports for every split a ``TrackingDataSpec`` names (each training dataset under ``train[i]``)."""
    splits = [(f"train[{i}]", split) for i, split in enumerate(data.train.datasets)]
    splits += [(name, getattr(data, name)) for name in ("val", "test") if getattr(data, name)]
    return [check_tracking_split(name, split) for name, split in splits]


def check_splits(data: Any) -> list[CheckReport | VideoCheckReport]:
    """Reports for every split ``data`` (a ``DataSpec``) names: video formats as videos, the others as images."""
    reports: list[CheckReport | VideoCheckReport] = []
    named = [(split.name, split) for split in data.training_splits()] + [("val", data.val), ("test", data.test)]
    for name, split in named:
        if not split or not split.images:
            continue
        if split.format in VIDEO_FORMATS:
            num_frames = getattr(split, "num_frames", None) or data.video.num_frames  # a training mix's own length
            reports.append(check_video_split(name, split, num_frames, data.video.reverse_time_prob))
        else:
            reports.append(check_split(name, split, data.min_object_area))
    return reports
