"""Running one measurement in a fresh process, so its peak memory (``ru_maxrss``) and warm-up are its own."""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from queue import Empty
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(label: str, target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """``target(*args, queue)`` in a fresh (spawned) process; the dict it puts on the queue, echoed to stderr.

    Fails instead of waiting forever when the process dies without a result (a crash, the OOM killer).
    """
    context = mp.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=target, args=(*args, queue))
    proc.start()
    while proc.is_alive() or not queue.empty():
        try:
            result = queue.get(timeout=5)
        except Empty:
            continue
        proc.join()
        print(f"{label}: {result}", file=sys.stderr, flush=True)
        return result
    raise RuntimeError(f"{label}: the process exited with code {proc.exitcode} before giving a result")
