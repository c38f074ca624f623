"""``segfit data extract-frames``: video files → one folder of JPEG frames per video (the layout ``davis`` and
``sav`` splits read), in parallel over videos and resumable.

Frame ``n`` of a video becomes ``<out>/<video>/<n:05d>.jpg``; with ``every=k`` only frames 0, k, 2k... are kept,
still named by their number (the official SA-V script, ``sav_frame_extraction_submitit.py``, keeps every 4th).
A video's frames are written into ``<video>.partial/`` and renamed to ``<video>/`` once all are written, so a
folder named after a video is always complete: an interrupted run, started again, skips those and redoes the rest.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})
"""Suffixes (lower case) taken as videos when a folder is searched."""


@dataclass
class ExtractReport:
    extracted: dict[str, int] = field(default_factory=dict)
    """Video file → frames written, for the videos extracted by this run."""
    skipped: list[str] = field(default_factory=list)
    """Video files whose frame folder was already complete."""
    failed: dict[str, str] = field(default_factory=dict)
    """Video file → why it could not be extracted."""

    def summary(self) -> str:
        return (f"{len(self.extracted)} video(s) extracted ({sum(self.extracted.values())} frames), "
                f"{len(self.skipped)} already done, {len(self.failed)} failed")


def extract_frames(videos: str | Path, out_dir: str | Path, every: int = 1, workers: int = 1,
                   quality: int = 95) -> ExtractReport:
    """Extract every video file under ``videos`` (a folder, searched recursively, or one file) into ``out_dir``.

    Video names are file stems, so two videos with one stem are an error. OpenCV decodes (the frames as stored,
    no rotation metadata applied); ``quality`` is the JPEG quality.
    """
    if every < 1 or workers < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need every ≥ 1, workers ≥ 1 and quality in 1..100, got {every}, {workers}, {quality}")
    files = _video_files(Path(videos))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    todo = []
    for path in files:
        if (out / path.stem).is_dir():
            report.skipped.append(str(path))
        else:
            todo.append(path)
    jobs = [(path, out, every, quality) for path in todo]
    if workers == 1 or len(jobs) < 2:
        results = [_extract_one(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            results = list(pool.map(_extract_one, *zip(*jobs)))
    for path, result in zip(todo, results):
        if isinstance(result, int):
            report.extracted[str(path)] = result
        else:
            report.failed[str(path)] = result
    return report


def _video_files(videos: Path) -> list[Path]:
    if videos.is_file():
        return [videos]
    if not videos.is_dir():
        raise FileNotFoundError(f"{videos}: no such video file or folder")
    files = sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{videos}: no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ValueError(f"{path}: same name as {seen[path.stem]}; frame folders are named by video name")
        seen[path.stem] = path
    return files


def _extract_one(path: Path, out: Path, every: int, quality: int) -> int | str:
    """Frames written, or why none could be (a message; worker processes return it rather than raise)."""
    import cv2  # only this command needs OpenCV

    cv2.setNumThreads(1)  # parallel over videos, not inside one
    partial = out / f"{path.stem}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    partial.mkdir(parents=True)
    capture = cv2.VideoCapture(str(path))
    written, number = 0, 0
    try:
        if not capture.isOpened():
            return "OpenCV cannot open this video"
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if number % every == 0:
                if not cv2.imwrite(str(partial / f"{number:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                    return f"cannot write {partial / f'{number:05d}.jpg'}"
                written += 1
            number += 1
    finally:
        capture.release()
        if not written:
            shutil.rmtree(partial, ignore_errors=True)
    if not written:
        return "no frame could be decoded"
    partial.rename(out / path.stem)
    return written
