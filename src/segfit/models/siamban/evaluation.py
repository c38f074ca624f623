"""One-pass evaluation of a tracker on sequences: metrics (``metrics/tracking.py``), a per-sequence CSV,
success and precision plots, and overlay videos of the first sequences."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure

from segfit.data.image_io import read_image
from segfit.data.records import TrackSequence
from segfit.metrics.tracking import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, TrackingMetrics
from segfit.models.siamban.tracker import Tracker, track_sequence

GT_COLOR, PRED_COLOR = (0, 200, 0), (230, 30, 30)


def frames_of(paths: Sequence[str]) -> Iterator[np.ndarray]:
    return (read_image(path) for path in paths)


def track_sequences(tracker: Tracker, sequences: Sequence[TrackSequence], out_dir: Path | None = None,
                    num_videos: int = 0) -> TrackingMetrics:
    """Track each sequence from its first usable box (frames before it are left out) and score it: the scores of
    one process's share of a split, for ``finish_evaluation``; overlay videos of the first ``num_videos``."""
    metrics = TrackingMetrics()
    for n, sequence in enumerate(sequences):
        start = int(sequence.usable[0])
        gt, visible = sequence.boxes[start:], sequence.visible[start:]
        pred = track_sequence(tracker, frames_of(sequence.frames[start:]), gt[0])
        metrics.update(pred, gt, visible, sequence.name)
        if out_dir is not None and n < num_videos:
            write_overlay_video(out_dir / f"{sequence.name.replace('/', '_')}.mp4", frames_of(sequence.frames[start:]),
                                pred, gt)
    return metrics


def finish_evaluation(shares: list[TrackingMetrics], out_dir: Path | None = None) -> dict[str, float]:
    """The metrics of every share's sequences (in share order), the per-sequence CSV and the plots."""
    metrics = TrackingMetrics()
    for share in shares:
        metrics.merge(share)
    results = metrics.compute()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "per_sequence.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(metrics.sequences[0]))
            writer.writeheader()
            writer.writerows(metrics.sequences)
        write_plots(out_dir, metrics, results)
    return {**results, "num_sequences": len(metrics.sequences)}


def write_plots(out_dir: Path, metrics: TrackingMetrics, results: dict[str, float]) -> None:
    """``success.png`` (share of frames over each IoU threshold) and ``precision.png`` (centre error thresholds)."""
    curves = metrics.curves()
    plots = {"success": (SUCCESS_THRESHOLDS, curves["success"], "overlap threshold",
                         f"success plot (AUC {results['success_auc']:.3f})"),
             "precision": (PRECISION_THRESHOLDS, curves["precision"], "location error threshold (px)",
                           f"precision plot (at 20 px {results['precision']:.3f})")}
    for name, (x, y, label, title) in plots.items():
        figure = Figure(figsize=(5, 4))
        axes = figure.add_subplot()
        axes.plot(x, y)
        axes.set(xlabel=label, ylabel="share of frames", title=title, ylim=(0, 1.02))
        axes.grid(alpha=0.3)
        figure.savefig(out_dir / f"{name}.png", dpi=100)


def write_overlay_video(path: Path, frames: Iterator[np.ndarray], pred: np.ndarray, gt: np.ndarray | None = None,
                        fps: float = 25.0) -> Path:
    """An mp4 of the frames with the predicted box (red) and, when given, the ground truth (green)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for t, frame in enumerate(frames):
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
            image = frame.copy()
            for boxes, color in ((gt, GT_COLOR), (pred, PRED_COLOR)):
                if boxes is not None and np.isfinite(boxes[t]).all():
                    x, y, w, h = boxes[t]
                    cv2.rectangle(image, (round(x), round(y)), (round(x + w), round(y + h)), color, 2)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path
