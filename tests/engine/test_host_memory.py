"""keep_freed_memory: applies on glibc, can be turned off, and leaves the process working normally."""

import platform

import pytest
import torch

from segfit.engine.host_memory import OPT_OUT, keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_applies_on_glibc_and_large_blocks_still_allocate_and_free():
    assert keep_freed_memory()
    for _ in range(3):  # 256 MiB blocks: served from the heap now, not mmap
        block = torch.ones(64 * 2**20)
        assert torch.count_nonzero(block).item() == 64 * 2**20  # a count: exact in any summation order
        del block


def test_opt_out(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    assert not keep_freed_memory()
