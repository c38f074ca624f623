"""Synthetic semantic / instance / panoptic datasets, written once per session."""

from pathlib import Path

import pytest

from segfit.data.synthetic_segments import write_synthetic_segments


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``synthetic(kind)`` → the paths of a small synthetic dataset of that kind (written once per session)."""
    written: dict[str, dict[str, Path]] = {}

    def make(kind: str) -> dict[str, Path]:
        if kind not in written:
            written[kind] = write_synthetic_segments(tmp_path_factory.mktemp(f"m2f_{kind}"), kind, num_train=4,
                                                     num_val=2, size=(64, 64), max_objects=2)
        return written[kind]

    return make
