"""Clip loading + augmentation for SAM 2 video training: segfit's clip dataset against the official pipeline
(Meta's ``VOSDataset`` + ``PNGRawDataset`` + ``RandomUniformSampler`` + the MOSE fine-tuning transforms) on the
same files, with one thread (what a loader worker gets), segfit with each ``data.video.augment.backend`` (``fast``,
the default, and ``reference``). Prints one JSON line: clips per second of wall time and CPU seconds per clip (the
process's, comparable on a shared machine), and each segfit backend's speedup over the official pipeline in both.

    python benchmarks/bench_clip_loading.py [--clips 24] [--image-size 1024]

Data: synthetic DAVIS-layout videos at DAVIS's 480×854, 12 frames, 3 objects, written to a temp dir. Both draw
8-frame clips with up to 3 objects and apply flip, affine (25°, shear 20), square resize, colour jitter, grayscale
and per-frame jitter, then normalise. The two pipelines take turns clip by clip in one process (so a shared
machine's load slows both alike), once with freed memory kept for both (as the ``segfit`` command and its loader
workers run) and once with glibc's default allocator for both (as Meta's trainer runs). Needs Meta's ``training``
package (installed with ``sam2``) and its imports ``tensordict``, ``fvcore``, ``pandas``, ``submitit``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from isolated import run_isolated

NUM_FRAMES, MAX_OBJECTS = 8, 3
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def official_dataset(train: dict[str, Path], image_size: int, num_frames: int = NUM_FRAMES,
                     max_objects: int = MAX_OBJECTS):
    """The official pipeline as the MOSE fine-tuning yaml builds it."""
    from training.dataset import transforms as T
    from training.dataset.vos_dataset import VOSDataset
    from training.dataset.vos_raw_dataset import PNGRawDataset
    from training.dataset.vos_sampler import RandomUniformSampler

    steps = [
        T.RandomHorizontalFlip(consistent_transform=True),
        T.RandomAffine(degrees=25, shear=20, image_interpolation="bilinear", consistent_transform=True),
        T.RandomResizeAPI(sizes=image_size, square=True, consistent_transform=True),
        T.ColorJitter(consistent_transform=True, brightness=0.1, contrast=0.03, saturation=0.03, hue=None),
        T.RandomGrayscale(p=0.05, consistent_transform=True),
        T.ColorJitter(consistent_transform=False, brightness=0.1, contrast=0.05, saturation=0.05, hue=None),
        T.ToTensorAPI(),
        T.NormalizeAPI(mean=MEAN, std=STD),
    ]
    videos = PNGRawDataset(img_folder=str(train["train_images"]), gt_folder=str(train["train_annotations"]))
    with contextlib.redirect_stdout(sys.stderr):  # it prints its length, where the JSON line goes
        return VOSDataset(steps, training=True, video_dataset=videos,
                          sampler=RandomUniformSampler(num_frames, max_objects), multiplier=1)


def segfit_dataset(train: dict[str, Path], image_size: int, run_dir: str, backend: str = "fast"):
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    spec = load_spec(None, [
        "model.name=sam2", f"model.image_size={image_size}", f"results_dir={run_dir}", "data.train.format=davis",
        f"data.train.images={train['train_images']}", f"data.train.annotations={train['train_annotations']}",
        f"data.video.num_frames={NUM_FRAMES}", f"data.video.max_num_objects={MAX_OBJECTS}",
        f"data.video.augment.backend={backend}",
    ])
    return recipe_for(spec).train_dataset().sources[0].dataset


def clips_per_second(loads: dict[str, Callable[[int], object]], num_clips: int) -> dict[str, dict[str, float]]:
    """Clips per second (wall) and CPU seconds per clip of each pipeline over ``num_clips`` loads after two warm-up
    loads each, the pipelines taking turns clip by clip, so a change in the machine's load slows them alike."""
    wall, cpu = dict.fromkeys(loads, 0.0), dict.fromkeys(loads, 0.0)
    for i in range(num_clips + 2):
        for name, load in loads.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            load(i)
            if i >= 2:
                wall[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - started_cpu
    return {name: {"clips_per_s": num_clips / wall[name], "cpu_s_per_clip": cpu[name] / num_clips} for name in loads}


def measure(keep_freed: bool, videos: dict[str, Path], image_size: int, num_clips: int, queue: mp.Queue) -> None:
    """The pipelines' rates in this (fresh) process, with freed memory kept (what the ``segfit`` command and its
    loader workers run with) or glibc's default allocator."""
    import cv2

    from segfit.engine.host_memory import keep_freed_memory

    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    np.random.seed(0)
    if keep_freed:
        keep_freed_memory()
    official = official_dataset(videos, image_size)
    with tempfile.TemporaryDirectory() as run_dir:
        fast, reference = (segfit_dataset(videos, image_size, f"{run_dir}/{b}", b) for b in ("fast", "reference"))
        queue.put(clips_per_second({"official": lambda i: official[i % len(official)],
                                    "segfit_fast": lambda i: fast[(i % len(fast), i)],
                                    "segfit_reference": lambda i: reference[(i % len(reference), i)]}, num_clips))


def _summary(rates: dict[str, dict[str, float]]) -> dict[str, float]:
    """Rounded figures and each segfit backend's speedup, by wall time and by CPU seconds."""
    official = rates["official"]
    out = {f"{name}_{key}": round(value, 3) for name, r in rates.items() for key, value in r.items()}
    for name in ("segfit_fast", "segfit_reference"):
        out[f"{name}_speedup"] = round(rates[name]["clips_per_s"] / official["clips_per_s"], 2)
        out[f"{name}_speedup_cpu"] = round(official["cpu_s_per_clip"] / rates[name]["cpu_s_per_clip"], 2)
    return out


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=1024)
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_videos

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        videos = write_synthetic_videos(Path(tmp) / "videos", num_train=6, num_val=0, size=(480, 854),
                                        num_frames=12, max_objects=MAX_OBJECTS)
        rates = {allocator: run_isolated(allocator, measure, allocator == "freed_memory_kept", videos, args.image_size,
                                         args.clips)
                 for allocator in ("freed_memory_kept", "glibc_default")}
    print(json.dumps({
        "benchmark": "sam2_clip_loading", "image_size": args.image_size, "frames": NUM_FRAMES,
        "objects": MAX_OBJECTS, "source": "480x854 JPEG + palette PNG", "clips": args.clips, "threads": 1,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": _cpu_model(),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **{allocator: _summary(r) for allocator, r in rates.items()},
        "target": "speedup >= 2",
    }))


if __name__ == "__main__":
    main()
