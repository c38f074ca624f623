"""The tracker's post-processing on network outputs chosen by hand, the ONNX graphs against PyTorch, and videos
without a frame to track."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segfit.models.siamban import inference
from segfit.models.siamban.export import export_onnx, onnx_functions
from segfit.models.siamban.model import SiamBAN
from segfit.models.siamban.spec import SiambanTrackerSpec
from segfit.models.siamban.tracker import Tracker, torch_functions

FRAME = np.zeros((200, 200, 3), np.uint8)
SCALE = 127 / 40  # a 20 × 20 target: template region sqrt(40 · 40) = 40 frame pixels


def _outputs(cells: dict[tuple[int, int], tuple[float, float]], n: int = 25):
    """A track function whose scores are high at ``cells`` and whose box there has the given side (frame px)."""
    cls = np.zeros((1, 2, n, n), np.float32)
    cls[0, 0] = 5.0  # background elsewhere
    loc = np.full((1, 4, n, n), 10 * SCALE, np.float32)
    for (row, col), (logit, side) in cells.items():
        cls[0, 1, row, col], cls[0, 0, row, col] = logit, 0.0
        loc[0, :, row, col] = side / 2 * SCALE
    return lambda kernels, x: (cls, loc)


def _tracker(track, **spec) -> Tracker:
    tracker = Tracker(lambda z: None, track, SiambanTrackerSpec(**spec))
    tracker.init(FRAME, [90, 70, 20, 20])  # centre (99.5, 79.5)
    return tracker


def test_best_cell_moves_the_centre_by_its_offset_in_frame_pixels():
    tracker = _tracker(_outputs({(12, 14): (20.0, 20.0)}), penalty_k=0.0, window_influence=0.0, lr=1.0)
    box, score = tracker.track(FRAME)
    # cell (12, 14) is 16 search pixels right of the centre = 16 / SCALE frame pixels
    np.testing.assert_allclose(box, [90 + 16 / SCALE, 70, 20, 20], atol=1e-4)
    assert score == pytest.approx(1.0)


def test_size_is_smoothed_by_penalty_score_and_lr():
    tracker = _tracker(_outputs({(12, 12): (20.0, 40.0)}), penalty_k=0.0, window_influence=0.0, lr=0.25)
    box, _ = tracker.track(FRAME)
    np.testing.assert_allclose(box[2:], [20 * 0.75 + 40 * 0.25] * 2, atol=1e-4)


def test_window_and_change_penalty_pick_among_equal_scores():
    cells = {(12, 12): (20.0, 20.0), (12, 20): (20.0, 20.0), (12, 4): (20.0, 60.0)}
    near = _tracker(_outputs(cells), penalty_k=0.0, window_influence=0.5, lr=1.0).track(FRAME)[0]
    assert near[0] == pytest.approx(90, abs=1e-4)  # the window prefers the centre cell
    cells = {(12, 20): (20.0, 20.0), (12, 4): (20.0, 60.0)}
    same_size = _tracker(_outputs(cells), penalty_k=1.0, window_influence=0.0, lr=1.0).track(FRAME)[0]
    assert same_size[0] > 90  # the right cell keeps the size; the left one triples it and is penalised


def test_box_stays_inside_the_frame_and_at_least_10_pixels():
    tracker = _tracker(_outputs({(12, 24): (20.0, 2.0)}), penalty_k=0.0, window_influence=0.0, lr=1.0)
    for _ in range(30):
        box, _ = tracker.track(FRAME)
    assert box[2] == 10 and box[3] == 10 and box[0] + (box[2] - 1) / 2 == 200  # the centre clipped to the width


def test_onnx_graphs_match_pytorch_on_real_crops(tmp_path):
    model = SiamBAN("tiny", 16).eval()
    paths = export_onnx(model, tmp_path, 63, 127)  # raises when a graph is more than 1e-3 off PyTorch
    assert [p.name for p in paths] == ["siamban_template.onnx", "siamban_track.onnx"]
    rng = np.random.default_rng(0)
    z = (rng.random((1, 3, 63, 63)) * 255).astype(np.float32)
    x = (rng.random((1, 3, 127, 127)) * 255).astype(np.float32)
    (torch_template, torch_track), (onnx_template, onnx_track) = torch_functions(model), onnx_functions(tmp_path)
    for ours, theirs in zip(torch_track(torch_template(z), x), onnx_track(onnx_template(z), x)):
        np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)  # ONNX Runtime vs PyTorch kernels
    assert torch.is_grad_enabled()


def test_a_video_without_a_decodable_frame_is_an_error_naming_it(tmp_path, monkeypatch):
    class Undecodable:  # opens, as a file with a valid header and broken frames does, but gives no frame
        def __init__(self, path: str):
            pass

        def isOpened(self) -> bool:
            return True

        def read(self) -> tuple[bool, None]:
            return False, None

        def release(self) -> None:
            pass

    monkeypatch.setattr(inference.cv2, "VideoCapture", Undecodable)
    with pytest.raises(ValueError, match="clip.mp4: no frame of this video could be decoded"):
        list(inference.read_video(tmp_path / "clip.mp4"))
