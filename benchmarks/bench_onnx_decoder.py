"""ONNX Runtime vs PyTorch latency of SAM 2's exported graphs: the prompt decoder, and the image encoder.

    python benchmarks/bench_onnx_decoder.py [--size tiny] [--image-size 1024] [--objects 8] [--runs 7]

Random weights (latency does not depend on them). The model is exported with segfit's ``export_onnx`` (legacy
exporter, parity-checked) to a temporary folder. Decoder: ``prompt_decoder.onnx`` (3 masks per object, as the
automatic map calls it) against ``predict_low_res`` (what ``Sam2Predictor`` runs), both on the same image
embeddings and N objects × 1 positive click. Encoder: ``image_encoder.onnx`` against the PyTorch image embeddings.
Runs alternate between the two back ends (so load from other processes hits both alike); each reports the
median of ``--runs`` after one warm-up run. The process keeps freed CPU memory, as ``segfit inference`` does
(``engine/host_memory.py``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from segfit.engine.host_memory import keep_freed_memory
from segfit.export.onnx import open_session
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.onnx import DECODER_FILES, ENCODER_FILE, EMBEDDING_NAMES, export_onnx
from segfit.models.sam2.predict import predict_low_res


def median_latencies(first: Callable[[], object], second: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds of each callable over ``runs`` alternating calls, after one warm-up call each."""
    times: tuple[list[float], list[float]] = ([], [])
    for run in range(runs + 1):
        for fn, out in zip((first, second), times):
            started = time.perf_counter()
            fn()
            if run:
                out.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    keep_freed_memory()  # as the segfit command does (onnxruntime has its own memory arena)

    torch.manual_seed(0)
    model = build_sam2(args.size, image_size=args.image_size).eval()
    pixels = torch.randn(1, 3, args.image_size, args.image_size)
    points = torch.rand(args.objects, 1, 2) * args.image_size
    labels = torch.ones(args.objects, 1, dtype=torch.long)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the parity lines; the JSON line is the only output
            export_onnx(model, args.image_size, Path(tmp))
        export_s = time.perf_counter() - started
        encoder, decoder = open_session(Path(tmp) / ENCODER_FILE), open_session(Path(tmp) / DECODER_FILES[True])
        embeddings = image_embeddings(model, pixels, encoder_grad=False)
        feeds = {**{name: e.numpy() for name, e in zip(EMBEDDING_NAMES, embeddings)}, "input_points": points.numpy(),
                 "input_labels": labels.numpy(), "has_mask_input": torch.zeros(args.objects).numpy(),
                 "mask_input": torch.zeros(args.objects, 1, args.image_size // 4, args.image_size // 4).numpy()}
        decoder_ort, decoder_torch = median_latencies(
            lambda: decoder.run(None, feeds),
            lambda: predict_low_res(model, embeddings, points, labels, multimask_output=True),
            args.runs,
        )
        encoder_ort, encoder_torch = median_latencies(
            lambda: encoder.run(None, {"pixel_values": pixels.numpy()}),
            lambda: image_embeddings(model, pixels, encoder_grad=False),
            args.runs,
        )
    print(json.dumps({
        "benchmark": "sam2_onnx_vs_torch", "size": args.size, "image_size": args.image_size,
        "objects": args.objects, "points_per_object": 1, "multimask_output": True, "runs": args.runs,
        "threads": torch.get_num_threads(), "export_s": round(export_s, 2),
        "decoder_ort_s": round(decoder_ort, 4), "decoder_torch_s": round(decoder_torch, 4),
        "decoder_speedup": round(decoder_torch / decoder_ort, 3),
        "encoder_ort_s": round(encoder_ort, 4), "encoder_torch_s": round(encoder_torch, 4),
        "encoder_speedup": round(encoder_torch / encoder_ort, 3),
    }))


if __name__ == "__main__":
    main()
