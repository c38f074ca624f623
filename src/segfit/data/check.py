"""``segfit data check``: load every sample of a split and name every file that is wrong, before a run starts.

Problems are samples that cannot be used (unreadable or missing files, size mismatches, bad JSON): with
``on_error: raise`` they stop a run. Warnings are samples that load but lose something: empty masks, objects
below ``min_object_area`` (dropped), images left with no object (skipped by training and evaluation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from segfit.data.formats import open_split
from segfit.data.records import DataError
from segfit.spec.schema import SplitSpec


@dataclass
class CheckReport:
    name: str
    """Split name (``train``, ``val``, ``test``)."""
    data_format: str
    """``labpics``, ``coco`` or ``sa1b``."""
    num_images: int = 0
    """Images the split lists."""
    num_loaded: int = 0
    """Images that loaded without a problem."""
    num_objects: int = 0
    """Objects kept (at least ``min_object_area`` pixels) over the loaded images."""
    objects_per_image: tuple[int, float, int] = (0, 0.0, 0)
    """(min, mean, max) kept objects per loaded image."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(file, problem) for every sample that cannot be used."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(file, what is lost) for samples that load with empty, dropped or no objects."""

    @property
    def ok(self) -> bool:
        """Every sample loads (warnings do not count)."""
        return not self.problems

    def summary(self) -> str:
        low, mean, high = self.objects_per_image
        return (f"{self.name} ({self.data_format}): {self.num_images} images, {self.num_loaded} loaded, "
                f"{self.num_objects} objects, objects per image min {low} / mean {mean:.2f} / max {high}: "
                f"{'OK' if self.ok else f'{len(self.problems)} problem(s)'}, {len(self.warnings)} warning(s)")

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
        low, mean, high = self.objects_per_image
        return {**asdict(self), "objects_per_image": {"min": low, "mean": mean, "max": high},
                "problems": [{"file": f, "problem": p} for f, p in self.problems],
                "warnings": [{"file": f, "problem": p} for f, p in self.warnings], "ok": self.ok}


def check_split(name: str, split: SplitSpec, min_object_area: int = 1) -> CheckReport:
    """Load every sample (never stopping at a bad one) and report counts, problems and warnings."""
    report = CheckReport(name=name, data_format=split.format)
    try:
        reader = open_split(split, min_object_area=0)  # keep every object so empty and tiny ones can be reported
    except DataError as err:
        report.problems.append((err.path, err.problem))
        return report
    report.num_images = len(reader)
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
