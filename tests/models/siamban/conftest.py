"""Shared SiamBAN test set-up: small synthetic sequences (the tiny spec is in ``siamban_specs.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segfit.data.synthetic_tracking import write_synthetic_tracking


@pytest.fixture(scope="session")
def tracking_data(tmp_path_factory) -> dict[str, Path]:
    return write_synthetic_tracking(tmp_path_factory.mktemp("tracking"), num_train=6, num_val=2, size=(72, 96),
                                    num_frames=8, seed=1)

