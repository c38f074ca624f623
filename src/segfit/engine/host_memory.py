"""Host memory: keep the memory PyTorch frees on the CPU inside the process, so the next step reuses it.

glibc's malloc serves large blocks (above a threshold of at most 32 MiB by default) with fresh ``mmap`` pages and
gives them back to the kernel on ``free``. A training step on the CPU allocates and frees the same large
activations every time (SAM 2's decoder holds 8 MiB per object per upscaled feature map at 1024²), so each step
page-faults and zeroes them again: on a 2-core CPU the decoder's forward + backward for 8 objects took 3.4 s with
the default and 1.8 s with the memory kept (``docs/speed.md``). The usual remedy is ``LD_PRELOAD`` of jemalloc or
tcmalloc; ``mallopt`` does the same for glibc from inside the process, with nothing to install.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""``mallopt`` parameter numbers (glibc ``malloc.h``)."""

OPT_OUT = "SEGFIT_KEEP_FREED_MEMORY"
"""Set to 0 to leave the C library's allocator as it is."""


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every block from its heap (no ``mmap``) and trim the heap's top only when more
    than 2 GiB is free there.

    Process-wide, so called by the ``segfit`` command (which owns its process), not by library functions. The
    process's resident memory then stays near its high-water mark instead of shrinking between steps, and the peak
    grows somewhat (heap fragmentation: 6–20 % in ``docs/speed.md``'s benchmarks). Returns whether it applied: not
    on other C libraries (musl, macOS, Windows) or with ``SEGFIT_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get(OPT_OUT, "1") == "0" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
