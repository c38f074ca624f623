"""What the ``segfit serve`` tests share besides fixtures: test-size weights, HTTP calls, mask PNGs."""

import base64
import dataclasses
import io
import json
import shutil
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from segfit.models.sam2.build import build_sam2, build_sam2_video
from segfit.models.sam2.video_inference import first_frame_prompts, track_video

SIZE = 256

FRAMES = 4
"""Frames of each generated dataset video."""

LOGIT_MARGIN = 1e-5
"""The server's predictor and the test's run the same code in other threads of one process (same kernels, same
thread pool): logits agree to ≤ 1e-7 here; pixels this close to 0 are left out of mask comparisons."""


def perturbed_weights(path: Path, seed: int, video: bool = False) -> Path:
    """A ``test``-size (video) model with every tensor perturbed (logits far from 0, so masks are not a toss-up)."""
    with torch.random.fork_rng():  # package fixtures run before conftest seeds the module: seed the build here
        torch.manual_seed(seed)
        model = (build_sam2_video if video else build_sam2)("test", image_size=SIZE)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    safetensors.torch.save_model(model, str(path))
    return path


def inference_track(spec: Any, video_model: torch.nn.Module, frames: np.ndarray, points: list, labels: list) -> torch.Tensor:
    """(T, H, W) logits that ``segfit inference`` tracks through ``frames`` from clicks on the first."""
    inference = dataclasses.replace(spec, inference=dataclasses.replace(spec.inference, points=points, labels=labels))
    prompts = first_frame_prompts(inference, frames.shape[1:3], torch.device("cpu"))
    return track_video(video_model, frames, prompts, SIZE)[:, 0]


def call(url: str, body: bytes | dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """Status and JSON answer of a GET (no body) or POST (a dict is sent as JSON)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def write_mp4(path: Path, frames: np.ndarray) -> Path:
    """T×H×W×3 RGB frames as an MPEG-4 video, by OpenCV (which the server decodes uploads with)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_mp4(path: Path) -> np.ndarray:
    """The frames of a video file as OpenCV decodes them (lossy: a video's frames are the decoder's, not the
    writer's), RGB."""
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def zip_bytes(entries: dict[str, np.ndarray | bytes]) -> bytes:
    """A zip of these entries: arrays as PNGs, bytes as they are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content if isinstance(content, bytes) else png_bytes(content))
    return buffer.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_mask(b64: str) -> torch.Tensor:
    """A mask PNG (0 / 255) as the page gets it, base64 encoded → (H, W) bool."""
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)))) > 0)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
"""Debian's Chromium, driven by playwright (``playwright install``, a browser download, is never needed)."""

needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium not installed (apt-get install chromium)")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""No sandbox (CI runs as root), and nothing that reaches out to the network."""


@contextmanager
def chromium_page(url: str, profile: Path) -> Iterator[Any]:
    """The page at ``url`` in headless Chromium (a fresh profile), once its first image is shown."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1200, "height": 700})
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.segfit.image !== null", timeout=30_000)
        yield page
        context.close()
