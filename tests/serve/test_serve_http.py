"""The page's HTTP interface against a real server: masks are the model's own, errors name what is wrong."""

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from assertions import assert_same_masks
from serve_helpers import LOGIT_MARGIN, call, png_bytes, png_mask


SCORE_ATOL = 1e-5
"""Scores in [0, 1] of the same code in two threads of one process (conftest.LOGIT_MARGIN): ≤ 1e-7 seen."""


def inside_point(mask: np.ndarray) -> list[float]:
    """A pixel centre of the object, away from its edge where possible (the median pixel of its rows and columns)."""
    ys, xs = np.nonzero(mask)
    i = np.argsort(xs + ys * mask.shape[1])[len(xs) // 2]
    return [float(xs[i]) + 0.5, float(ys[i]) + 0.5]


def test_info_lists_both_models_and_the_dataset_images(server):
    url, _ = server
    status, info = call(f"{url}/api/info")
    assert status == 200
    assert [m["name"] for m in info["models"]] == ["base", "fine-tuned"]
    assert info["models"][1]["weights"].endswith("tuned.safetensors")
    ids = [e["id"] for e in info["images"] if e["has_gt"]]
    assert ids[:2] == ["val/0", "val/1"] and set(ids[2:]) == {"train/0", "train/1"}


@pytest.mark.parametrize("prompt", ["click", "clicks", "box"])
def test_masks_are_the_models_own_with_iou_against_the_clicked_object(server, expected_logits, prompt):
    url, app = server
    record = app.state.catalog.get("val/0")
    gt = record.masks[0]
    point = inside_point(gt)
    ys, xs = np.nonzero(gt)
    points, labels, box = {
        "click": ([point], [1], None),
        "clicks": ([point, [2.5, 2.5]], [1, 0], None),
        "box": ([], [], [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]),
    }[prompt]
    status, answer = call(f"{url}/api/predict", {"image": "val/0", "points": points, "labels": labels, "box": box})
    assert status == 200, answer
    for result, served in zip(answer["results"], app.state.segmenter.models, strict=True):
        assert result["model"] == served.name
        logits, score = expected_logits(served.predictor.model, record.image, points, labels, box)
        mask = png_mask(result["mask_png"])
        assert_same_masks(mask, logits, LOGIT_MARGIN)
        assert result["score"] == pytest.approx(score, abs=SCORE_ATOL)
        want_iou = (mask.numpy() & gt).sum() / (mask.numpy() | gt).sum()
        assert result["iou"] == pytest.approx(want_iou, abs=1e-6)
        assert result["area"] == int(mask.sum())


def test_a_second_prompt_on_an_image_reuses_its_embeddings(server):
    url, _ = server
    prompt = {"image": "val/1", "points": [[10.5, 20.5]], "labels": [1]}
    first = call(f"{url}/api/predict", prompt)[1]["results"]
    again = call(f"{url}/api/predict", {**prompt, "points": [[11.5, 20.5]]})[1]["results"]
    assert all(r["encode_ms"] > 0 for r in first) and all(r["encode_ms"] < 1 for r in again)


def test_a_click_on_the_background_has_no_iou(server):
    url, app = server
    record = app.state.catalog.get("val/0")
    ys, xs = np.nonzero(~record.masks.any(axis=0))
    status, answer = call(f"{url}/api/predict", {"image": "val/0", "points": [[float(xs[0]), float(ys[0])]], "labels": [1]})
    assert status == 200 and [r["iou"] for r in answer["results"]] == [None, None]


def test_coco_json_holds_the_same_masks(server):
    url, _ = server
    prompt = {"image": "val/0", "points": [[40.5, 50.5]], "labels": [1]}
    predicted = call(f"{url}/api/predict", prompt)[1]["results"]
    status, coco = call(f"{url}/api/coco", prompt)
    assert status == 200
    assert coco["images"][0]["file_name"] == "img_0000.jpg" and coco["images"][0]["height"] == 120
    assert [a["model"] for a in coco["annotations"]] == ["base", "fine-tuned"]
    for annotation, result in zip(coco["annotations"], predicted):
        rle = {**annotation["segmentation"], "counts": annotation["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), png_mask(result["mask_png"]).numpy())
        assert annotation["area"] == result["area"] and annotation["bbox"] == mask_utils.toBbox(rle).tolist()


@pytest.mark.parametrize("body, status, words", [
    ({"image": "val/0", "points": [[1, 2]], "labels": [2]}, 400, "labels:"),
    ({"image": "val/0", "points": [[1, 2, 3]], "labels": [1]}, 400, "points:"),
    ({"image": "val/0", "points": [[500, 2]], "labels": [1]}, 400, "points[0]: (500, 2) is outside the 160×120"),
    ({"image": "val/0", "box": [50, 10, 20, 30]}, 400, "box:"),
    ({"image": "val/0"}, 400, "no prompt"),
    ({"image": "val/0", "points": [[1, 2]] * 65, "labels": [1] * 65}, 400, "points: 65 clicks; at most 64"),
    ({"image": "../../etc/passwd", "points": [[1, 2]], "labels": [1]}, 404, "no image with id '../../etc/passwd'"),
    ({"image": "val/7", "points": [[1, 2]], "labels": [1]}, 404, "no image with id 'val/7'"),
])
def test_bad_prompts_get_a_message_naming_the_key(server, body, status, words):
    url, _ = server
    got, answer = call(f"{url}/api/predict", body)
    assert got == status and words in answer["error"]


def test_uploads_are_segmented_without_ground_truth_and_their_names_never_become_paths(server, tmp_path):
    url, app = server
    image = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    status, entry = call(f"{url}/api/upload", png_bytes(image), {"X-File-Name": "..%2F..%2Fevil%20name.png"})
    assert status == 200 and entry == {"id": entry["id"], "name": "upload: evil name.png"}
    assert entry["id"].startswith("upload/")
    assert np.array_equal(app.state.catalog.get(entry["id"]).image, image)
    with urllib.request.urlopen(f"{url}/api/image?id={entry['id']}") as response:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.read()))), image)
    status, answer = call(f"{url}/api/predict", {"image": entry["id"], "points": [[30, 40]], "labels": [1]})
    assert status == 200 and answer["results"][0]["iou"] is None
    assert png_mask(answer["results"][0]["mask_png"]).shape == (90, 70)


def test_a_prompt_must_be_small_json(server):
    url, _ = server
    status, answer = call(f"{url}/api/predict", b"{not json", {})
    assert status == 400 and answer["error"].startswith("body: not valid JSON")
    status, answer = call(f"{url}/api/predict", b" " * 70_000, {})
    assert status == 413 and "larger than the 0.0625 MiB allowed" in answer["error"]


def test_uploads_past_the_limits_are_refused_with_the_limit(server):
    url, _ = server  # conftest.LIMITS: 200 000 bytes, 512 pixels a side
    status, answer = call(f"{url}/api/upload", b"\0" * 300_000, {})
    assert status == 413 and "the request is larger than the 0.191 MiB allowed here" in answer["error"]
    wide = png_bytes(np.zeros((10, 600, 3), np.uint8))
    status, answer = call(f"{url}/api/upload", wide, {})
    assert status == 413 and "600×10 pixels; at most 512 on a side" in answer["error"]
    status, answer = call(f"{url}/api/upload", b"GIF89a not really", {})
    assert status == 400 and "not a readable image" in answer["error"]


def test_only_the_newest_uploads_are_kept(server):
    url, _ = server  # conftest.LIMITS keeps 2
    ids = [call(f"{url}/api/upload", png_bytes(np.full((20, 20, 3), i, np.uint8)), {})[1]["id"] for i in range(3)]
    status, answer = call(f"{url}/api/predict", {"image": ids[0], "points": [[5, 5]], "labels": [1]})
    assert status == 404 and "uploads are kept for a while only" in answer["error"]
    assert call(f"{url}/api/predict", {"image": ids[2], "points": [[5, 5]], "labels": [1]})[0] == 200


def test_the_page_and_its_files_are_served(server):
    url, _ = server
    with urllib.request.urlopen(f"{url}/") as response:
        assert b'src="/static/app.js"' in response.read()
    with urllib.request.urlopen(f"{url}/static/app.js") as response:
        assert b"/api/predict" in response.read()


def test_a_truncated_upload_is_refused(server):
    url, _ = server
    whole = png_bytes(np.random.default_rng(1).integers(0, 256, (50, 50, 3), dtype=np.uint8))
    status, answer = call(f"{url}/api/upload", whole[: len(whole) // 2], {})
    assert status == 400 and "not a readable image" in answer["error"]
