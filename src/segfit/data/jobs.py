"""Resumable one-folder-per-item jobs (``segfit data extract-frames``, ``segfit data prepare-tracking``): each item
is written into ``<folder>.partial/`` and renamed when complete, items run in parallel in spawned worker processes
with a progress bar, and one report says what was done, skipped and why an item failed.

Spawned, not forked: a forked child inherits OpenCV's and OpenMP's thread pools in whatever state they are, and can
hang. A worker returns why an item failed rather than raise, so one bad item never stops the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from segfit.data.records import DataError


class JobFailed(Exception):
    """Why one item cannot be done (raised inside a job, reported by ``run_jobs``)."""


@dataclass
class JobReport:
    """What a run did, by item: ``noun`` / ``verb`` / ``unit`` word its summary ("2 video(s) extracted (40 frames)")."""

    noun: str
    verb: str
    unit: str
    done: dict[str, int] = field(default_factory=dict)
    """Item → files written by this run."""
    skipped: list[str] = field(default_factory=list)
    """Items whose folder was already complete."""
    failed: dict[str, str] = field(default_factory=dict)
    """Item → why it could not be done."""

    def summary(self) -> str:
        return (f"{len(self.done)} {self.noun}(s) {self.verb} ({sum(self.done.values())} {self.unit}), "
                f"{len(self.skipped)} already done, {len(self.failed)} failed")


def run_jobs(job: Callable[..., int], items: dict[str, tuple[Any, ...]], workers: int, report: JobReport) -> None:
    """``job(*args)`` for each item (name → args), ``workers`` at a time; fills ``report.done`` / ``.failed``.

    ``job`` must be a module-level function (spawned workers import it) returning the files it wrote; it raises
    ``JobFailed`` or ``DataError`` for a bad item.
    """
    names, jobs = list(items), list(items.values())
    parallel = workers > 1 and len(jobs) > 1
    with (ProcessPoolExecutor(min(workers, len(jobs)), get_context("spawn"), initializer=_one_thread_each)
          if parallel else nullcontext()) as pool, \
            tqdm(total=len(jobs), desc=report.verb, unit=report.noun, dynamic_ncols=True, disable=len(jobs) < 2) as bar:
        results = (pool.map if parallel else map)(_attempt, [job] * len(jobs), jobs)
        for name, result in zip(names, results):
            bar.update()
            (report.done if isinstance(result, int) else report.failed)[name] = result


def _attempt(job: Callable[..., int], args: tuple[Any, ...]) -> int | str:
    try:
        return job(*args)
    except (JobFailed, DataError) as err:
        return str(err)


def _one_thread_each() -> None:
    """Workers run in parallel over items, not inside one."""
    import cv2

    cv2.setNumThreads(1)


@contextmanager
def complete_folder(folder: Path) -> Iterator[Path]:
    """A fresh ``<folder>.partial/`` to write into (one an interrupted run left is emptied), renamed to ``folder``
    when the block ends and removed when it raises: a folder with the item's name is always complete."""
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(folder)
