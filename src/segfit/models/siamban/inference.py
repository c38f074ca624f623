"""``segfit inference`` for SiamBAN: track the target given by ``inference.init_box`` through a frame folder or a
video file; writes ``<name>.txt`` (one ``x,y,w,h`` line per frame, as GOT-10k results) and ``<name>.mp4``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from segfit.data.formats.tracking import frame_files
from segfit.models.siamban.evaluation import frames_of, write_overlay_video
from segfit.models.siamban.export import onnx_functions
from segfit.models.siamban.model import SiamBAN
from segfit.models.siamban.spec import SiambanSpec
from segfit.models.siamban.tracker import Tracker, torch_functions, track_sequence


def read_video(path: Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file, decoded one at a time."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"inference.input {path}: OpenCV cannot open this video")
    try:
        decoded = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                if not decoded:
                    raise ValueError(f"inference.input {path}: no frame of this video could be decoded")
                return
            decoded += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def input_frames(path: Path) -> Callable[[], Iterator[np.ndarray]]:
    """A function giving the input's frames afresh (tracking and the overlay video each read them once)."""
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise ValueError(f"inference.input {path}: no image files in this folder")
        return lambda: frames_of(files)
    if path.is_file():
        return lambda: read_video(path)
    raise FileNotFoundError(f"inference.input {path}: no such frame folder or video file")


def run_inference(load_model: Callable[[], SiamBAN], spec: SiambanSpec, out_dir: Path) -> list[Path]:
    cfg = spec.inference
    if not cfg.input or not cfg.init_box:
        raise ValueError("inference.input and inference.init_box ([x, y, w, h] in the first frame) are needed")
    frames = input_frames(Path(cfg.input))
    if cfg.backend == "onnx":
        functions = onnx_functions(Path(cfg.onnx_dir or spec.export.output_dir or Path(spec.results_dir) / "export"))
    else:
        functions = torch_functions(load_model())
    tracker = Tracker(*functions, spec.model.tracker, spec.data.template_size, spec.data.search_size)
    boxes = track_sequence(tracker, frames(), cfg.init_box)
    name = Path(cfg.input).stem if Path(cfg.input).is_file() else Path(cfg.input).name
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.txt"]
    written[0].write_text("".join(",".join(f"{v:.2f}" for v in box) + "\n" for box in boxes))
    if cfg.video:
        written.append(write_overlay_video(out_dir / f"{name}.mp4", frames(), boxes))
    return written
