"""``segfit data synth`` and ``segfit data check``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segfit.data.check import CheckReport, check_split
from segfit.data.synthetic import write_synthetic_images


def synth(out_dir: str, format: str, num_train: int, num_val: int, size: tuple[int, int], seed: int) -> dict[str, Path]:
    paths = write_synthetic_images(out_dir, format=format, num_train=num_train, num_val=num_val, size=size, seed=seed)
    print(f"synthetic {format} dataset in {out_dir}:")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    return paths


def check(spec: Any) -> list[CheckReport]:
    """Check every split the spec names; returns the reports (printing them)."""
    splits = {name: getattr(spec.data, name) for name in ("train", "val", "test")}
    reports = [check_split(name, split, spec.data.min_object_area) for name, split in splits.items() if split and split.images]
    if not reports:
        raise ValueError("data: no split to check; set data.train.images (and val/test)")
    for report in reports:
        print(report.format())
    return reports
