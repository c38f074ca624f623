"""Click latency of ``segfit serve``: the first click on an image (which encodes it) and later clicks (cached
embeddings), through the page's real HTTP interface.

    python benchmarks/bench_serve.py [--size tiny] [--image-size 1024] [--image-hw 1024x1024] [--clicks 15]

Random weights (latency does not depend on them), one model (a run without a checkpoint shows only the base
model; with one, each click costs twice the decoder time). A click is a POST /api/predict round trip on loopback:
prompt check, decoder, upsampling to the image size, mask PNG and JSON. Clicks alternate between 1, 2 and 3
points (the page sends every point so far). Prints one JSON line with the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request

import numpy as np
import torch

from bench_distributed import cpu_model
from segfit.data.records import ImageRecord
from segfit.engine.host_memory import keep_freed_memory
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.predict import Sam2Predictor
from segfit.serve.app import create_app
from segfit.serve.images import ImageCatalog
from segfit.serve.server import running
from segfit.serve.session import Segmenter, ServedModel


class OneImage(list):
    """A one-image 'split' for the catalogue (the ImageReader protocol: len, source, load)."""

    def source(self, i: int) -> str:
        return self[i].source

    def load(self, i: int) -> ImageRecord:
        return self[i]


def click(url: str, points: list[list[float]]) -> tuple[float, dict]:
    body = json.dumps({"image": "val/0", "points": points, "labels": [1] * len(points)}).encode()
    request = urllib.request.Request(f"{url}/api/predict", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - started, answer["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--image-hw", default="1024x1024", help="HxW of the (random) image clicked on")
    parser.add_argument("--clicks", type=int, default=15)
    args = parser.parse_args()
    keep_freed_memory()  # as the segfit command does

    torch.manual_seed(0)
    h, w = (int(v) for v in args.image_hw.lower().split("x"))
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    model = build_sam2(args.size, image_size=args.image_size).eval()
    segmenter = Segmenter([ServedModel("base", "random", Sam2Predictor(model, args.image_size))], multimask_output=True)
    catalog = ImageCatalog({"val": OneImage([ImageRecord(image, np.zeros((0, h, w), bool), "random.png")])})
    points = np.random.default_rng(1).uniform(0, [w, h], (args.clicks, 3, 2)).round(1).tolist()
    with running(create_app(segmenter, catalog)) as url:
        first_s, first = click(url, points[0][:1])
        clicks = [click(url, p[: 1 + i % 3]) for i, p in enumerate(points)]
    times = [t for t, _ in clicks]
    print(json.dumps({
        "size": args.size, "image_size": args.image_size, "image_hw": [h, w], "threads": torch.get_num_threads(),
        "first_click_s": round(first_s, 3), "first_click_encode_s": round(first["encode_ms"] / 1e3, 3),
        "click_s_median": round(statistics.median(times), 4), "click_s_max": round(max(times), 4),
        "click_decode_s_median": round(statistics.median(r["decode_ms"] for _, r in clicks) / 1e3, 4),
        "clicks": len(times), "cached_all": all(r["encode_ms"] < 1 for _, r in clicks), "cpu": cpu_model(),
        "load_avg_1min": round(os.getloadavg()[0], 1),  # other work on the machine slows every figure
    }))


if __name__ == "__main__":
    main()
