"""Tracked masks download as one zip per model: DAVIS palette PNGs (object 1) equal to the masks the page was
shown, readable back as ``format: davis`` annotations, and a COCO JSON of the same masks."""

import io
import json
import zipfile

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from segfit.data.image_io import davis_palette, read_index_map

from serve_helpers import FRAMES, call, fetch, png_mask, zip_bytes


def tracked(url: str, video: str, start: int) -> dict:
    status, answer = call(f"{url}/api/video/track", {"video": video, "frame": start, "points": [[80, 60]], "labels": [1]})
    assert status == 200, answer
    return answer


def unzipped(url: str, track: str, model: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(fetch(f"{url}/api/video/masks?track={track}&model={model}"))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_each_models_zip_holds_its_tracked_masks_as_palette_pngs_and_coco(video_server, tmp_path):
    url, _, _ = video_server
    answer = tracked(url, "val/0", 1)
    for result in answer["results"]:
        files = unzipped(url, answer["track"], result["model"])
        stems = [f"{t:05d}" for t in range(1, FRAMES)]
        assert sorted(files) == [f"video_000/{stem}.png" for stem in stems] + ["video_000_coco.json"]
        shown = [png_mask(png).numpy() for png in result["masks_png"]]
        assert 0 < np.mean(shown) < 1  # something tracked, something not: the comparisons below mean something
        for stem, mask in zip(stems, shown, strict=True):
            png = Image.open(io.BytesIO(files[f"video_000/{stem}.png"]))
            assert png.mode == "P" and png.getpalette() == davis_palette()
            assert np.array_equal(np.asarray(png), mask.astype(np.uint8))  # palette index 1: the object
            (tmp_path / f"{stem}.png").write_bytes(files[f"video_000/{stem}.png"])
            assert np.array_equal(read_index_map(tmp_path / f"{stem}.png", None), mask)  # as format: davis reads it
        coco = json.loads(files["video_000_coco.json"])
        assert [image["file_name"] for image in coco["images"]] == [f"{stem}.jpg" for stem in stems]
        for annotation, mask in zip(coco["annotations"], shown, strict=True):
            rle = {**annotation["segmentation"], "counts": annotation["segmentation"]["counts"].encode()}
            assert np.array_equal(mask_utils.decode(rle).astype(bool), mask)
            assert annotation["model"] == result["model"] and annotation["area"] == int(mask.sum())


def test_an_uploaded_video_downloads_under_its_own_name(video_server):
    url, app, _ = video_server
    frames = app.state.videos.get("val/0").frames
    entry = call(f"{url}/api/video/upload", zip_bytes({"a.png": frames[0], "b.png": frames[1]}),
                 {"X-File-Name": "my%20clip.zip"})[1]
    answer = tracked(url, entry["id"], 0)
    assert sorted(unzipped(url, answer["track"], "base")) == ["my_clip/a.png", "my_clip/b.png", "my_clip_coco.json"]


def test_unknown_tracks_and_models_are_404s(video_server):
    url, _, _ = video_server
    track = tracked(url, "val/0", 2)["track"]
    for query, words in [(f"track={track}&model=other", "model: no model 'other' in this track (base, fine-tuned)"),
                         ("track=99&model=base", "track: no track with id '99'"),
                         ("track=../0&model=base", "track: no track with id '../0'")]:
        status, answer = call(f"{url}/api/video/masks?{query}")
        assert status == 404 and words in answer["error"]
