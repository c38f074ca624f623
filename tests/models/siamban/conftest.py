"""Shared SiamBAN test set-up: small synthetic sequences (the tiny spec is in ``siamban_specs.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segfit.data.synthetic_tracking import write_synthetic_tracking


@pytest.fixture(scope="session")
def tracking_data(tmp_path_factory) -> dict[str, Path]:
    return write_synthetic_tracking(tmp_path_factory.mktemp("tracking"), num_train=6, num_val=2, size=(72, 96),
                                    num_frames=8, seed=1)



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run many small kernels: on a shared 2-core machine two OpenMP threads wait on each other at every
    kernel (a 40 ms step took 4 s), and one thread is as fast on an idle one. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
