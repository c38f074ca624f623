"""The page end to end in headless Chromium: load it, click, drag, and get the model's own masks back.

Needs Debian's ``chromium`` (installed by ``.ci/run``) and ``playwright`` (the ``test`` extra); see serve_helpers.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from assertions import assert_same_masks
from serve_helpers import LOGIT_MARGIN, chromium_page, needs_chromium, png_mask

pytestmark = needs_chromium

ANSWERED = "document.body.dataset.busy === '0' && Object.keys(window.segfit.answers).length === {n}"
ZOOM = 2
"""The 160×120 image drawn at twice its size: pointer positions must be scaled back to image pixels."""


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    with chromium_page(server[0], tmp_path_factory.mktemp("chromium-profile")) as page:
        page.select_option("#image-select", "image:val/0")  # the list starts with uploads, when other tests made some
        page.wait_for_function("window.segfit.imageId === 'val/0'")
        page.add_style_tag(content=f".panel canvas {{ width: {160 * ZOOM}px; }}")
        yield page


def shown_masks(page) -> dict[str, torch.Tensor]:
    """Each panel's mask PNG (the download link) as a bool tensor."""
    links = page.eval_on_selector_all(".panel", "ps => ps.map(p => [p.dataset.model, p.querySelector('.download').href])")
    return {model: png_mask(href.split(",", 1)[1]) for model, href in links}


def check_against_models(page, server, expected_logits) -> dict:
    """The masks shown equal each model's own prediction for the prompt the page sent; returns that prompt."""
    _, app = server
    prompt = page.evaluate("({points: window.segfit.points, labels: window.segfit.labels, box: window.segfit.box})")
    image = app.state.catalog.get("val/0").image
    masks = shown_masks(page)
    assert list(masks) == ["base", "fine-tuned"]
    for served in app.state.segmenter.models:
        logits, _ = expected_logits(served.predictor.model, image, prompt["points"], prompt["labels"], prompt["box"])
        assert_same_masks(masks[served.name], logits, LOGIT_MARGIN)
    return prompt


def test_click_shift_click_and_drag_show_the_models_masks(page, server, expected_logits, tmp_path):
    gt = server[1].state.catalog.get("val/0").masks[0]
    ys, xs = np.nonzero(gt)
    x, y = int(np.median(xs)), int(np.median(ys))
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())  # corner pixels of the object
    canvas = page.locator('.panel[data-model="fine-tuned"] canvas')

    canvas.click(position={"x": (x + 0.5) * ZOOM, "y": (y + 0.5) * ZOOM})
    page.wait_for_function(ANSWERED.format(n=2))
    prompt = check_against_models(page, server, expected_logits)
    assert prompt == {"points": [[x, y]], "labels": [1], "box": None}
    assert "IoU" in page.inner_text('.panel[data-model="base"] figcaption')

    page.locator('.panel[data-model="base"] canvas').click(position={"x": 3 * ZOOM, "y": 3 * ZOOM}, modifiers=["Shift"])
    page.wait_for_function("window.segfit.points.length === 2 && " + ANSWERED.format(n=2))
    assert check_against_models(page, server, expected_logits)["labels"] == [1, 0]

    page.click("#clear")
    box = canvas.bounding_box()
    box["x"], box["y"] = box["x"] + 1, box["y"] + 1  # the canvas's 1px border (style.css); click positions leave it out
    page.mouse.move(box["x"] + (x0 + 0.5) * ZOOM, box["y"] + (y0 + 0.5) * ZOOM)
    page.mouse.down()
    page.mouse.move(box["x"] + (x1 + 0.5) * ZOOM, box["y"] + (y1 + 0.5) * ZOOM, steps=4)
    page.mouse.up()
    page.wait_for_function("window.segfit.box !== null && " + ANSWERED.format(n=2))
    prompt = check_against_models(page, server, expected_logits)
    assert prompt["points"] == [] and prompt["box"] == [x0, y0, x1, y1]
    assert page.inner_text("#status").startswith("box: base")

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert Image.open(tmp_path / "page.png").size[0] == 1200


def test_an_upload_past_the_limit_shows_the_message(page, tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((10, 600, 3), np.uint8)).save(wide)
    page.set_input_files("#upload", str(wide))
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "wide.png: the image is 600×10 pixels; at most 512 on a side" in page.inner_text("#status")


def test_an_uploaded_image_is_shown_and_segmented_without_iou(page, tmp_path):
    upload = tmp_path / "my photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(upload)
    page.set_input_files("#upload", str(upload))
    page.wait_for_function("window.segfit.imageId.startsWith('upload/') && window.segfit.image.naturalWidth === 80")
    assert page.eval_on_selector("#image-select", "s => s.selectedOptions[0].text") == "upload: my photo.png"
    page.locator('.panel[data-model="base"] canvas').click(position={"x": 20, "y": 20})
    page.wait_for_function(ANSWERED.format(n=2))
    assert "IoU" not in page.inner_text("#panels") and page.inner_text('.panel[data-model="base"] figcaption').startswith("base score ")
