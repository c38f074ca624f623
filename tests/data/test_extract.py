"""``segfit data extract-frames``: frames named by number, every k-th frame, resumable, bad videos reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfit.cli import main
from segfit.data.extract import extract_frames

cv2 = pytest.importorskip("cv2")
H, W = 32, 48


def _video(path: Path, count: int) -> None:
    """Frame n: a red field with a green bar n × 4 pixels wide (mp4v, which every OpenCV wheel can write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    for n in range(count):
        frame = np.zeros((H, W, 3), np.uint8)
        frame[:, :, 2] = 200  # OpenCV writes BGR: red
        frame[:, : 4 * n, 1] = 255
        writer.write(frame)
    writer.release()


def test_every_kth_frame_named_by_number(tmp_path):
    _video(tmp_path / "videos/sav_000/sav_000001.mp4", 9)
    _video(tmp_path / "videos/sav_001/sav_000002.mp4", 5)
    report = extract_frames(tmp_path / "videos", tmp_path / "frames", every=4, workers=2)
    assert report.done == {str(tmp_path / "videos/sav_000/sav_000001.mp4"): 3,
                                str(tmp_path / "videos/sav_001/sav_000002.mp4"): 2} and not report.failed
    assert sorted(p.name for p in (tmp_path / "frames/sav_000001").iterdir()) == ["00000.jpg", "00004.jpg", "00008.jpg"]
    frame = np.asarray(Image.open(tmp_path / "frames/sav_000001/00004.jpg")).astype(int)
    assert frame.shape == (H, W, 3) and frame[:, 24:, 0].mean() > 150 and frame[:, 24:, 1].mean() < 60  # RGB red
    assert frame[:, :12, 1].mean() > 200  # the green bar of frame 4 (16 px; codec blur at its edge)


def test_resumes_and_reports_bad_videos(tmp_path, capsys):
    _video(tmp_path / "videos/a.mp4", 3)
    _video(tmp_path / "videos/b.mp4", 3)
    (tmp_path / "videos/broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "frames"
    assert main(["data", "extract-frames", str(tmp_path / "videos"), "--out", str(out)]) == 1
    assert "broken.mp4" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # nothing left of the broken one

    (tmp_path / "videos/broken.mp4").unlink()
    for path in (out / "b").iterdir():
        path.unlink()
    (out / "b").rename(out / "b.partial")  # as an interrupted run leaves it
    report = extract_frames(tmp_path / "videos", out)
    assert report.skipped == [str(tmp_path / "videos/a.mp4")] and list(report.done) == [str(tmp_path / "videos/b.mp4")]
    assert len(list((out / "b").iterdir())) == 3 and not (out / "b.partial").exists()
    assert main(["data", "extract-frames", str(tmp_path / "videos/a.mp4"), "--out", str(out)]) == 0
    assert "0 video(s) extracted (0 frames), 1 already done, 0 failed" in capsys.readouterr().out


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no video files"):
        extract_frames(tmp_path, tmp_path / "out")
    _video(tmp_path / "x/a.mp4", 1)
    _video(tmp_path / "y/a.mp4", 1)
    with pytest.raises(ValueError, match="same name as"):
        extract_frames(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="every"):
        extract_frames(tmp_path / "x", tmp_path / "out", every=0)
