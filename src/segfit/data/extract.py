"""``segfit data extract-frames``: video files → one folder of JPEG frames per video (the layout ``davis`` and
``sav`` splits read), in parallel over videos and resumable (``data/jobs.py``).

Frame ``n`` of a video becomes ``<out>/<video>/<n:05d>.jpg``; with ``every=k`` only frames 0, k, 2k... are kept,
still named by their number (the official SA-V script, ``sav_frame_extraction_submitit.py``, keeps every 4th).
A video's frames are written into ``<video>.partial/`` and renamed to ``<video>/`` once all are written, so a
folder named after a video is always complete: an interrupted run, started again, skips those and redoes the rest.
"""

from __future__ import annotations

from pathlib import Path

from segfit.data.jobs import JobFailed, JobReport, complete_folder, run_jobs

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})
"""Suffixes (lower case) taken as videos when a folder is searched."""


def extract_frames(videos: str | Path, out_dir: str | Path, every: int = 1, workers: int = 1,
                   quality: int = 95) -> JobReport:
    """Extract every video file under ``videos`` (a folder, searched recursively, or one file) into ``out_dir``;
    the report's items are the video files.

    Video names are file stems, so two videos with one stem are an error. OpenCV decodes (the frames as stored,
    no rotation metadata applied); ``quality`` is the JPEG quality.
    """
    if every < 1 or workers < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need every ≥ 1, workers ≥ 1 and quality in 1..100, got {every}, {workers}, {quality}")
    files = _video_files(Path(videos))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = JobReport("video", "extracted", "frames")
    report.skipped = [str(path) for path in files if (out / path.stem).is_dir()]
    todo = {str(path): (path, out, every, quality) for path in files if not (out / path.stem).is_dir()}
    run_jobs(_extract_one, todo, workers, report)
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


def _extract_one(path: Path, out: Path, every: int, quality: int) -> int:
    """Frames written."""
    import cv2  # only this command needs OpenCV

    capture = cv2.VideoCapture(str(path))
    written, number = 0, 0
    try:
        with complete_folder(out / path.stem) as partial:
            if not capture.isOpened():
                raise JobFailed("OpenCV cannot open this video")
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if number % every == 0:
                    file = partial / f"{number:05d}.jpg"
                    if not cv2.imwrite(str(file), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                        raise JobFailed(f"cannot write {file}")
                    written += 1
                number += 1
            if not written:
                raise JobFailed("no frame could be decoded")
    finally:
        capture.release()
    return written
