"""Tracking on the page: a prompt on one frame of a DAVIS-layout video, tracked to the end by each video model,
gives the masks ``segfit inference`` tracks from the same prompt (HTTP level); the page prompts, tracks and scrubs,
and uploads a video, tracks it and downloads each model's masks (Chromium)."""

import io
import urllib.request
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from assertions import assert_same_masks
from serve_helpers import (FRAMES, LOGIT_MARGIN, call, chromium_page, inference_track, needs_chromium, png_mask,
                           read_mp4, write_mp4)


def test_info_lists_the_videos_with_their_frame_counts(video_server):
    url, _, _ = video_server
    info = call(f"{url}/api/info")[1]
    data = [v for v in info["videos"] if not v["id"].startswith("upload/")]  # uploads come first, if any
    assert data == [{"id": "val/0", "name": "val: video_000", "frames": FRAMES},
                    {"id": "train/0", "name": "train: video_000", "frames": FRAMES}]
    assert info["images"] == []  # video splits are not offered as images


def test_a_prompted_frame_is_tracked_to_the_end_as_segfit_inference_tracks_it(video_server):
    url, app, spec = video_server
    video = app.state.videos.get("val/0")
    start = 1
    ys, xs = np.nonzero(video.masks[start, 0])
    point = [int(np.median(xs)), int(np.median(ys))]
    status, answer = call(f"{url}/api/video/track", {"video": "val/0", "frame": start, "points": [point], "labels": [1]})
    assert status == 200, answer
    assert answer["start"] == start
    for result, served in zip(answer["results"], app.state.segmenter.models, strict=True):
        logits = inference_track(spec, served.video, video.frames[start:], [point], [1])
        masks = torch.stack([png_mask(png) for png in result["masks_png"]])
        assert result["model"] == served.name and masks.shape == (FRAMES - start, *video.size)
        assert_same_masks(masks, logits, LOGIT_MARGIN)
        gt = video.masks[start:, 0]
        want = [(m & g).sum() / (m | g).sum() for m, g in zip(masks.numpy(), gt)]
        np.testing.assert_allclose(result["ious"], want, atol=1e-6)


def test_frames_are_served_as_stored(video_server):
    url, app, _ = video_server
    with urllib.request.urlopen(f"{url}/api/video/frame?id=val/0&t=2") as response:
        frame = np.asarray(Image.open(io.BytesIO(response.read())))
    assert np.array_equal(frame, app.state.videos.get("val/0").frames[2])


@pytest.mark.parametrize("body, status, words", [
    ({"video": "val/0", "frame": FRAMES, "points": [[5, 5]], "labels": [1]}, 400, f"frame: {FRAMES} is not a frame"),
    ({"video": "val/0", "frame": "1", "points": [[5, 5]], "labels": [1]}, 400, "frame: expected a frame number"),
    ({"video": "val/9", "points": [[5, 5]], "labels": [1]}, 404, "no video with id 'val/9'"),
    ({"image": "val/0", "points": [[5, 5]], "labels": [1]}, 400, "video: expected"),
])
def test_bad_track_requests_name_the_key(video_server, body, status, words):
    url, _, _ = video_server
    got, answer = call(f"{url}/api/video/track", body)
    assert got == status and words in answer["error"]


@needs_chromium
def test_the_page_tracks_from_a_prompted_frame_and_scrubs(video_server, tmp_path):
    url, app, _ = video_server
    ys, xs = np.nonzero(app.state.videos.get("val/0").masks[1, 0])
    x, y = int(np.median(xs)), int(np.median(ys))
    with chromium_page(url, tmp_path / "profile") as page:
        page.select_option("#image-select", "video:val/0")  # the list starts with uploads, when other tests made some
        page.wait_for_function("window.segfit.video && window.segfit.video.id === 'val/0'")
        page.locator("#scrub").fill("1")
        page.wait_for_function("window.segfit.video.t === 1")
        page.locator('.panel[data-model="base"] canvas').click(position={"x": x + 0.5, "y": y + 0.5})
        assert page.evaluate("[window.segfit.points, window.segfit.video.promptFrame]") == [[[x, y]], 1]
        page.click("#track")
        page.wait_for_function("document.body.dataset.busy === '0' && Object.keys(window.segfit.video.tracks).length === 2")
        tracks = page.evaluate("Object.values(window.segfit.video.tracks).map(t => [t.start, t.layers.length, t.ious])")
        assert [t[:2] for t in tracks] == [[1, FRAMES - 1]] * 2 and all(None not in t[2] for t in tracks)
        page.locator("#scrub").fill(str(FRAMES - 1))
        page.wait_for_function(f"window.segfit.video.t === {FRAMES - 1}")
        assert page.inner_text('.panel[data-model="fine-tuned"] figcaption').startswith("fine-tuned J ")
        assert not page.evaluate("document.getElementById('status').classList.contains('error')")
        page.screenshot(path=str(tmp_path / "video_page.png"))


@needs_chromium
def test_the_page_uploads_a_video_tracks_it_and_downloads_each_models_masks(video_server, tmp_path):
    url, app, spec = video_server
    clip = write_mp4(tmp_path / "my clip.mp4", app.state.videos.get("val/0").frames)
    x, y = 80, 60
    with chromium_page(url, tmp_path / "profile") as page:
        page.set_input_files("#upload", str(clip))
        page.wait_for_function("window.segfit.video && window.segfit.video.id.startsWith('upload/') && "
                               "window.segfit.image !== null && window.segfit.imageId === `video:${window.segfit.video.id}`")
        assert page.eval_on_selector("#image-select", "s => s.selectedOptions[0].text") == "upload: my clip.mp4"
        page.locator('.panel[data-model="base"] canvas').click(position={"x": x + 0.5, "y": y + 0.5})
        page.click("#track")
        page.wait_for_function("document.body.dataset.busy === '0' && Object.keys(window.segfit.video.tracks).length === 2")
        frames = read_mp4(clip)
        for served in app.state.segmenter.models:
            with page.expect_download() as download:
                page.click(f'.panel[data-model="{served.name}"] .download')
            assert download.value.suggested_filename.endswith(f"_{served.name}_masks.zip")
            with zipfile.ZipFile(download.value.path()) as archive:
                pngs = sorted(name for name in archive.namelist() if name.endswith(".png"))
                assert pngs == [f"my_clip/{t:05d}.png" for t in range(FRAMES)]
                masks = torch.stack([torch.from_numpy(np.asarray(Image.open(archive.open(name))) == 1) for name in pngs])
            assert 0 < masks.float().mean() < 1
            assert_same_masks(masks, inference_track(spec, served.video, frames, [[x, y]], [1]), LOGIT_MARGIN)
        assert not page.evaluate("document.getElementById('status').classList.contains('error')")
        page.screenshot(path=str(tmp_path / "uploaded_video_page.png"))
