"""Uploaded videos (a video file, a zip of frames) become videos like the spec's: listed, served frame by frame and
tracked as ``segfit inference`` tracks them; past a limit, or broken, they are refused with a message naming why,
and nothing they name becomes a path."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from assertions import assert_same_masks
from serve_helpers import (LOGIT_MARGIN, call, fetch, inference_track, png_bytes, png_mask, read_mp4, write_mp4,
                           zip_bytes)


def upload(url: str, body: bytes, name: str = "") -> tuple[int, dict]:
    return call(f"{url}/api/video/upload", body, {"X-File-Name": name})


def dataset_frames(app, count: int) -> np.ndarray:
    """Frames with objects in them, to upload: the generated val video's, played forward then back."""
    frames = app.state.videos.get("val/0").frames
    return np.concatenate([frames, frames[::-1]])[:count]


def served_frames(url: str, id: str, count: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(fetch(f"{url}/api/video/frame?id={id}&t={t}"))))
                     for t in range(count)])


def kept_folders(app) -> set[str]:
    """The upload folders in the server's temp folder."""
    temp = app.state.videos._temp
    return set(os.listdir(temp.name)) if temp else set()


def test_a_video_file_is_decoded_listed_served_and_tracked_as_segfit_inference_tracks_it(video_server, tmp_path):
    url, app, spec = video_server
    mp4 = write_mp4(tmp_path / "clip.mp4", dataset_frames(app, 5))
    status, entry = upload(url, mp4.read_bytes(), "..%2F..%2Fmy%20clip.mp4")
    assert status == 200, entry
    assert entry["name"] == "upload: my clip.mp4" and entry["frames"] == 5
    assert entry["id"].startswith("upload/") and entry["id"][7:].isdigit()  # a number the server made
    assert call(f"{url}/api/info")[1]["videos"][0] == entry  # the newest upload first
    frames = read_mp4(mp4)
    assert np.array_equal(served_frames(url, entry["id"], 5), frames)

    point = [80, 60]
    status, answer = call(f"{url}/api/video/track", {"video": entry["id"], "frame": 0, "points": [point], "labels": [1]})
    assert status == 200, answer
    for result, served in zip(answer["results"], app.state.segmenter.models, strict=True):
        masks = torch.stack([png_mask(png) for png in result["masks_png"]])
        assert_same_masks(masks, inference_track(spec, served.video, frames, [point], [1]), LOGIT_MARGIN)
        assert result["ious"] == [None] * 5  # an upload has no ground truth


def test_a_zip_of_frames_plays_in_natural_order_and_skips_what_is_not_a_frame(video_server):
    url, app, _ = video_server
    frames = dataset_frames(app, 3)
    body = zip_bytes({"clip/f10.png": frames[2], "clip/f2.png": frames[1], "clip/f1.png": frames[0],
                      "__MACOSX/clip/._f1.png": b"resource fork", "clip/.hidden.png": b"x", "clip/notes.txt": b"x"})
    status, entry = upload(url, body, "frames.zip")
    assert status == 200 and entry["frames"] == 3, entry
    assert np.array_equal(served_frames(url, entry["id"], 3), frames)  # PNG frames arrive as they were
    assert app.state.videos.get(entry["id"]).frame_names == ("f1.png", "f2.png", "f10.png")


def mp4_bytes(folder: Path, frames: np.ndarray) -> bytes:
    return write_mp4(folder / "v.mp4", frames).read_bytes()


def video_of(frames: int, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(frames).integers(0, 256, (frames, *hw, 3), dtype=np.uint8)


@pytest.mark.parametrize("case, status, words", [
    ("bytes", 413, "the request is larger than the 0.286 MiB allowed here"),
    ("frames", 413, "the video has more than 6 frames; at most 6 are accepted"),
    ("side", 413, "the video is 240×48 pixels; at most 200 on a side is accepted"),
    ("zip frames", 413, "the zip holds 7 frames; at most 6 are accepted"),
    ("zip side", 413, "big.png: the image is 240×48 pixels; at most 200 on a side"),
    ("zip sizes", 400, "frame b.png is 32×48, the first frame 64×48; all frames of a video must have one size"),
    ("random", 400, "not a video (MP4, MOV, M4V, WebM, MKV, AVI) nor a zip of frames"),
    ("playlist", 400, "not a video (MP4, MOV, M4V, WebM, MKV, AVI) nor a zip of frames"),
    ("truncated", 400, "not a readable video"),
    ("corrupt zip", 400, "not a readable zip"),
    ("corrupt frame", 400, "a.png: not a readable image"),
    ("traversal", 400, "zip entry '../../etc/evil.png': names that leave the archive's folder are refused"),
    ("absolute", 400, "zip entry '/tmp/evil.png': names that leave the archive's folder are refused"),
    ("two videos", 400, "frames in 2 folders (a, b); zip the frames of one video"),
    ("empty zip", 400, "no frame in the upload"),
])
def test_uploads_past_a_limit_or_broken_are_refused_naming_why_and_leave_nothing_behind(video_server, tmp_path, case,
                                                                                       status, words):
    url, app, _ = video_server  # conftest.VIDEO_LIMITS: 300 000 bytes, 6 frames, 200 pixels a side
    png = png_bytes(video_of(1)[0])
    body = {
        "bytes": lambda: b"\0" * 300_001,
        "frames": lambda: mp4_bytes(tmp_path, video_of(7)),
        "side": lambda: mp4_bytes(tmp_path, video_of(2, (48, 240))),
        "zip frames": lambda: zip_bytes({f"{i}.png": png for i in range(7)}),
        "zip side": lambda: zip_bytes({"a.png": png, "big.png": video_of(1, (48, 240))[0]}),
        "zip sizes": lambda: zip_bytes({"a.png": png, "b.png": video_of(1, (48, 32))[0]}),
        "random": lambda: np.random.default_rng(0).bytes(5000),
        "playlist": lambda: b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
        "truncated": lambda: mp4_bytes(tmp_path, video_of(3))[:200],
        "corrupt zip": lambda: zip_bytes({"a.png": png})[:-30],
        "corrupt frame": lambda: zip_bytes({"a.png": png[: len(png) // 2]}),
        "traversal": lambda: zip_bytes({"ok.png": png, "../../etc/evil.png": png}),
        "absolute": lambda: zip_bytes({"/tmp/evil.png": png}),
        "two videos": lambda: zip_bytes({"a/0.png": png, "b/0.png": png}),
        "empty zip": lambda: zip_bytes({"readme.txt": b"no frames"}),
    }[case]()
    before = kept_folders(app)
    got, answer = upload(url, body, "v.mp4")
    assert got == status and words in answer["error"], answer
    assert kept_folders(app) == before
    assert not Path("/etc/evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_only_the_newest_uploads_are_kept_and_the_others_deleted(video_server):
    url, app, _ = video_server  # conftest.VIDEO_LIMITS keeps 2
    ids = [upload(url, zip_bytes({"0.png": video_of(1)[0]}))[1]["id"] for _ in range(3)]
    assert kept_folders(app) >= {id[7:] for id in ids[1:]} and ids[0][7:] not in kept_folders(app)
    status, answer = call(f"{url}/api/video/track", {"video": ids[0], "points": [[5, 5]], "labels": [1]})
    assert status == 404 and f"no video with id '{ids[0]}'" in answer["error"]
    assert call(f"{url}/api/video/track", {"video": ids[2], "points": [[5, 5]], "labels": [1]})[0] == 200


def test_an_image_model_page_refuses_videos(server):
    url, _ = server
    status, answer = upload(url, zip_bytes({"0.png": video_of(1)[0]}))
    assert status == 400 and "the served models are image models" in answer["error"]
    assert call(f"{url}/api/info")[1]["limits"]["video"] is None
