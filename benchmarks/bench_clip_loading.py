"""Clip loading + augmentation for SAM 2 video training: segfit's clip dataset against the official pipeline
(Meta's ``VOSDataset`` + ``PNGRawDataset`` + ``RandomUniformSampler`` + the MOSE fine-tuning transforms) on the
same files, each in a fresh process with one thread (what a loader worker gets). Prints one JSON line.

    python benchmarks/bench_clip_loading.py [--clips 24] [--image-size 1024] [--repeats 2]

Data: synthetic DAVIS-layout videos at DAVIS's 480×854, 12 frames, 3 objects, written to a temp dir. Both draw
8-frame clips with up to 3 objects and apply flip, affine (25°, shear 20), square resize, colour jitter, grayscale
and per-frame jitter, then normalise. segfit's process keeps freed memory as the ``segfit`` command does (its
loader workers inherit that), and runs once more with glibc's default allocator; each side runs ``--repeats``
times, alternating, and its best rate counts (the machine is shared). Needs Meta's ``training`` package (installed
with ``sam2``) and its imports ``tensordict``, ``fvcore``, ``pandas``, ``submitit``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

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
    return VOSDataset(steps, training=True, video_dataset=videos,
                      sampler=RandomUniformSampler(num_frames, max_objects), multiplier=1)


def segfit_dataset(train: dict[str, Path], image_size: int, run_dir: str):
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    spec = load_spec(None, [
        "model.name=sam2", f"model.image_size={image_size}", f"results_dir={run_dir}", "data.train.format=davis",
        f"data.train.images={train['train_images']}", f"data.train.annotations={train['train_annotations']}",
        f"data.video.num_frames={NUM_FRAMES}", f"data.video.max_num_objects={MAX_OBJECTS}",
    ])
    return recipe_for(spec).train_dataset().sources[0].dataset


def clips_per_second(load, num_clips: int) -> float:
    """Clips per second over ``num_clips`` loads after two warm-up loads."""
    for i in range(2):
        load(i)
    started = time.perf_counter()
    for i in range(num_clips):
        load(i)
    return num_clips / (time.perf_counter() - started)


def measure(side: str, videos: dict[str, Path], image_size: int, num_clips: int, queue: mp.Queue) -> None:
    """One side's rate, in this (fresh) process: ``official``, ``segfit`` or ``segfit_glibc_default``."""
    torch.set_num_threads(1)  # as in a DataLoader worker
    np.random.seed(0)
    if side == "official":
        dataset = official_dataset(videos, image_size)
        rate = clips_per_second(lambda i: dataset[i % len(dataset)], num_clips)
    else:
        if side == "segfit":
            from segfit.engine.host_memory import keep_freed_memory
            keep_freed_memory()
        with tempfile.TemporaryDirectory() as run_dir:
            dataset = segfit_dataset(videos, image_size, run_dir)
            rate = clips_per_second(lambda i: dataset[(i % len(dataset), i)], num_clips)
    queue.put({"clips_per_s": rate})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_videos

    sides = ("official", "segfit", "segfit_glibc_default")
    rates: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        videos = write_synthetic_videos(Path(tmp) / "videos", num_train=6, num_val=0, size=(480, 854),
                                        num_frames=12, max_objects=MAX_OBJECTS)
        for _ in range(args.repeats):
            for side in sides:
                rates[side].append(run_isolated(side, measure, side, videos, args.image_size, args.clips)["clips_per_s"])
    best = {side: max(values) for side, values in rates.items()}
    print(json.dumps({
        "benchmark": "sam2_clip_loading", "image_size": args.image_size, "frames": NUM_FRAMES,
        "objects": MAX_OBJECTS, "source": "480x854 JPEG + palette PNG", "clips": args.clips, "threads": 1,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **{f"{side}_clips_per_s": round(rate, 3) for side, rate in best.items()},
        "all_clips_per_s": {side: [round(r, 3) for r in values] for side, values in rates.items()},
        "speedup": round(best["segfit"] / best["official"], 2),
        "speedup_glibc_default": round(best["segfit_glibc_default"] / best["official"], 2),
        "target_2x_reached": best["segfit"] / best["official"] >= 2,
    }))


if __name__ == "__main__":
    main()
