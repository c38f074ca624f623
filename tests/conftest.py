"""Shared test set-up: keep torch to the machine's cores and every test's randomness fixed."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/assertions.py imports as `assertions` in any import mode


@pytest.fixture(autouse=True, scope="module")
def _seeded_module():
    """Module-scoped fixtures (models built with random weights) start from a fixed stream too: torch seeds its
    default generator at random in every process, and these run before the per-test seed below."""
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
