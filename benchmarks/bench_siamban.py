"""SiamBAN speed: tracking frames/s of the full model (ResNet-50, 127 / 255 crops), PyTorch vs ONNX Runtime, and
the training step time at batch 8 with the backbone frozen and with layers 2–4 training.

    python benchmarks/bench_siamban.py [--frames 30] [--runs 3] [--steps 4] [--batch 8] [--device auto]

Random weights (speed does not depend on them); BatchNorm statistics are first set from a few random crops so a
random ResNet-50 keeps finite outputs in eval mode. Tracking runs on a synthetic 240×320 sequence; the two back ends
alternate (so load from other processes hits both alike) and each reports the median of ``--runs`` whole-sequence
runs after one warm-up. The training step is the recipe's ``training_step`` + backward + SGD step on pairs sampled
beforehand (data loading is not timed); the median of ``--steps`` after one warm-up. Each is measured in wall
seconds and in the process's CPU seconds (``*_cpu_s``, all its threads, ONNX Runtime's included): what the work
costs whatever else the machine runs, the figure to compare on a shared machine. Prints one JSON line.
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

import numpy as np
import torch
import torch.nn.functional as F
from bench_onnx_decoder import median_latencies

from segfit.data.synthetic_tracking import render_sequence, write_synthetic_tracking
from segfit.engine.distributed import resolve_device
from segfit.engine.optim import build_optimizer
from segfit.models.siamban.export import export_onnx, onnx_functions
from segfit.models.siamban.model import SiamBAN
from segfit.models.siamban.recipe import SiambanRecipe
from segfit.models.siamban.spec import SiambanTrackerSpec
from segfit.models.siamban.tracker import Tracker, torch_functions, track_sequence
from segfit.spec import load_spec


def calibrated_model(device: torch.device, video: np.ndarray) -> SiamBAN:
    """A random full model whose BatchNorm statistics come from the video's frames (finite outputs in eval mode)."""
    model = SiamBAN().to(device)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
    model.set_training_layers(("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"))
    model.train()
    frames = torch.from_numpy(video[:4]).permute(0, 3, 1, 2).float().to(device)
    with torch.no_grad():
        model(F.interpolate(frames, size=(127, 127)), F.interpolate(frames, size=(255, 255)))
    return model.eval()


def with_cpu_time(fn: Callable[[], object], cpu: list[float]) -> Callable[[], None]:
    """``fn``, appending the process CPU seconds of each call to ``cpu``."""
    def timed() -> None:
        started = time.process_time()
        fn()
        cpu.append(time.process_time() - started)
    return timed


def tracking_fps(model: SiamBAN, video: np.ndarray, boxes: np.ndarray, runs: int) -> dict[str, float]:
    frames = len(video)
    cpu: tuple[list[float], list[float]] = ([], [])
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp), 127, 255)
        spec = SiambanTrackerSpec()
        trackers = [Tracker(*torch_functions(model), spec), Tracker(*onnx_functions(Path(tmp)), spec)]
        torch_s, onnx_s = median_latencies(*(with_cpu_time(lambda t=t: track_sequence(t, video, boxes[0]), times)
                                             for t, times in zip(trackers, cpu)), runs)
    torch_cpu, onnx_cpu = (statistics.median(times[1:]) / frames for times in cpu)  # [0]: the warm-up
    return {"torch_fps": frames / torch_s, "onnx_fps": frames / onnx_s, "onnx_speedup": torch_s / onnx_s,
            "torch_cpu_s_per_frame": torch_cpu, "onnx_cpu_s_per_frame": onnx_cpu,
            "onnx_speedup_cpu": torch_cpu / onnx_cpu}


def step_seconds(device: torch.device, batch: int, steps: int, unfrozen: bool) -> dict[str, float]:
    """Median wall and process CPU seconds of a training step after one warm-up step."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_tracking(Path(tmp), num_train=4, num_val=0, size=(240, 320), num_frames=8)
        spec = load_spec(None, ["model.name=siamban", f"data.batch_size={batch}",
                                f"data.train.datasets=[{{format: got10k, images: '{data['train_images']}'}}]",
                                f"train.unfreeze_step={0 if unfrozen else 10**9}"])
        recipe = SiambanRecipe(spec)
        with contextlib.redirect_stdout(io.StringIO()):  # the dataset's start-up counts: one JSON line only
            dataset = recipe.train_dataset()
        batches = [recipe.collate([dataset[(i, i)] for i in range(k * batch, (k + 1) * batch)])
                   for k in range(steps + 1)]
    model = recipe.build_model().to(device).train()
    optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
    wall, cpu = [], []
    for batch_data in batches:
        started, started_cpu = time.perf_counter(), time.process_time()
        terms = recipe.training_step(model, {k: v.to(device) for k, v in batch_data.items()})
        terms["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"step_s": statistics.median(wall[1:]), "step_cpu_s": statistics.median(cpu[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    video, boxes, _ = render_sequence(np.random.default_rng(0), (240, 320), args.frames)
    result = {"device": str(device), "threads": torch.get_num_threads(),
              **tracking_fps(calibrated_model(device, video), video, boxes, args.runs)}
    for unfrozen in (False, True):
        backbone = "backbone_training" if unfrozen else "backbone_frozen"
        result.update({f"{key}_{backbone}": value
                       for key, value in step_seconds(device, args.batch, args.steps, unfrozen).items()})
    print(json.dumps({"benchmark": "siamban", "batch": args.batch, **result}))


if __name__ == "__main__":
    main()
