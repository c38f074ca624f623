"""Shared test set-up: keep torch to the machine's cores and every test's randomness fixed."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
