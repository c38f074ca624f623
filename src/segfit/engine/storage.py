"""Whether ``results_dir`` can take what a run writes, asked before the run starts rather than at its first save."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class StorageError(OSError):
    """``results_dir`` cannot be written, is too full for a checkpoint, or a checkpoint write failed."""


def check_writable(results_dir: Path) -> None:
    """Create ``results_dir`` and write, then delete, a small file in it."""
    probe = Path(results_dir) / f".segfit-write-test-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"segfit")
        probe.unlink()
    except OSError as err:
        raise StorageError(f"results_dir {results_dir} is not writable ({err}); set results_dir to a folder this "
                           f"user can write") from err


def check_room(results_dir: Path, needed: int) -> None:
    """``check_writable``, then: the file system of ``results_dir`` has ``needed`` bytes (one checkpoint) free."""
    check_writable(results_dir)
    free = shutil.disk_usage(results_dir).free
    if free < needed:
        raise StorageError(f"results_dir {results_dir}: {_mib(free)} free, but one checkpoint of this model takes "
                           f"about {_mib(needed)}; free some space or set results_dir to another disk")


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"
