"""Frozen-encoder SAM 2 fine-tuning speed: segfit's engine with the embedding cache and the speed knobs vs the
"60-line" loop, with each segfit variant's 1-click mIoU on the synthetic validation set after the same steps.

    python benchmarks/bench_finetune_step.py [--size tiny] [--image-size 1024] [--steps 16] [--variants cache,...]

Same model (random weights, seed 0), same synthetic images (8 train, 4 val, 480×640, up to 8 objects). The 60-line
loop is ``sixty_line.py``. segfit runs its real engine (``trainer.train``) with the
SAM 2 recipe and, for a like-for-like step, the same prompts: one click per object, all objects, no correction
clicks, no box prompts, no augmentation (``LIKE_FOR_LIKE``). Every run is ``--steps`` optimizer steps; the rate is
1 / median step time over the steps after the first epoch (8 steps at batch 1), when every view is a cache hit: the
steady state of a longer fine-tuning. segfit runs keep freed CPU memory as the ``segfit`` command does
(``engine/host_memory.py``); the 60-line loop is measured as written (the speed-ups are against it) and once more
with that allocator setting, to show what the setting alone is worth. Each run is a fresh process (peak RSS is its
own). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from isolated import peak_rss_mb, run_isolated
from sixty_line import sixty_line_loop

NUM_TRAIN, NUM_VAL = 8, 4

LIKE_FOR_LIKE = (
    "train.prompts.num_correction_clicks=0", "train.prompts.prob_click=1", "train.prompts.prob_box=0",
    "data.max_num_objects=100", "data.augment.hflip=0", "data.augment.color_jitter=0",
)
"""The 60-line loop's work per step: one click per object, every object, no augmentation."""

VARIANTS: dict[str, tuple[str, ...]] = {
    "no_cache": ("train.embedding_cache.mode=off",),
    "cache": (),
    "cache_low": ("train.loss.resolution=low",),
    "cache_points": ("train.loss.resolution=points",),
    "cache_low_bf16": ("train.loss.resolution=low", "train.precision=bf16"),
    "cache_low_batch4": ("train.loss.resolution=low", "data.batch_size=4"),
    "cache_points_batch4": ("train.loss.resolution=points", "data.batch_size=4"),
    "cache_low_malloc_default": ("train.loss.resolution=low",),
}
"""segfit runs: overrides on top of LIKE_FOR_LIKE (the cache is on by default, in memory). All run as the ``segfit``
command does, with freed CPU memory kept (``engine/host_memory.py``), except ``*_malloc_default``: what that alone
is worth."""

DEFAULT_VARIANTS = ("no_cache", "cache", "cache_low", "cache_points", "cache_low_bf16", "cache_low_batch4",
                    "cache_low_malloc_default")
"""What a plain run measures (about 12 min at 1024² on 2 cores); the bf16 one only on a CPU with native bf16."""


def sixty_line_run(data_dir: Path, size: str, image_size: int, steps: int, keep_memory: bool, queue: mp.Queue) -> None:
    from segfit.engine.host_memory import keep_freed_memory

    if keep_memory:  # not what the script does; measured to show what the allocator alone is worth to it
        keep_freed_memory()
    step_s = float(np.median(sixty_line_loop(data_dir, size, image_size, steps)["times"][NUM_TRAIN:]))
    queue.put({"steps_per_s": 1 / step_s, "images_per_s": 1 / step_s, "peak_rss_mb": peak_rss_mb()})


def segfit_run(data_dir: Path, size: str, image_size: int, steps: int, overrides: tuple[str, ...], keep_memory: bool,
               queue: mp.Queue) -> None:
    """``steps`` steps of the engine, then the 1-click mIoU on the validation set (or before training: steps=0)."""
    from segfit.engine.evaluation import evaluate
    from segfit.engine.host_memory import keep_freed_memory
    from segfit.engine.logging import read_records
    from segfit.engine.trainer import train
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    if keep_memory:
        keep_freed_memory()  # as the segfit command does
    with tempfile.TemporaryDirectory() as run_dir:
        spec = load_spec(None, [
            "model.name=sam2", f"model.size={size}", f"model.image_size={image_size}", f"results_dir={run_dir}",
            f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
            f"data.val.images={data_dir}/val/images", f"data.val.annotations={data_dir}/val/masks",
            "data.batch_size=1", "train.seed=0", "train.optim.base_lr=1e-4", "train.optim.scheduler=constant",
            f"train.max_steps={steps}", "train.log_every=1", f"train.eval_every={steps}",
            f"train.checkpoint_every={steps + 1}", "evaluate.max_clicks=1", "evaluate.num_samples=0",
            *LIKE_FOR_LIKE, *overrides,
        ])
        recipe = recipe_for(spec)
        if steps == 0:
            torch.manual_seed(spec.train.seed)
            val = evaluate(recipe, recipe.build_model(), Path(run_dir) / "samples", spec.train.seed)
            queue.put({"miou@1": val["miou@1"]})
            return
        summary = train(recipe, spec)
        warm = -(-NUM_TRAIN // spec.data.batch_size)  # the first epoch fills the cache
        rates = [r["steps_per_s"] for r in read_records(Path(run_dir) / "metrics.jsonl") if r["split"] == "train"]
    step_s = float(np.median([1 / rate for rate in rates[warm:]]))
    cache = recipe.embedding_cache
    queue.put({
        "steps_per_s": 1 / step_s, "images_per_s": spec.data.batch_size / step_s,
        "first_epoch_s": float(np.sum([1 / rate for rate in rates[:warm]])),
        "miou@1": summary["val"]["miou@1"], "peak_rss_mb": peak_rss_mb(),
        "cache_hits": cache.hits if cache else 0, "cache_misses": cache.misses if cache else 0,
    })


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: what makes bf16 autocast faster than fp32 on a CPU."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=16, help=f"optimizer steps per run (> {NUM_TRAIN})")
    parser.add_argument("--variants", help=f"comma-separated, of: {', '.join(VARIANTS)} (default: "
                                            f"{', '.join(DEFAULT_VARIANTS)}; bf16 only on a CPU with native bf16)")
    args = parser.parse_args()
    native_bf16 = cpu_has_native_bf16()
    names = args.variants.split(",") if args.variants else [n for n in DEFAULT_VARIANTS if native_bf16 or "bf16" not in n]
    unknown = set(names) - set(VARIANTS)
    if unknown or args.steps <= NUM_TRAIN:
        parser.error(f"unknown variants {sorted(unknown)}" if unknown else f"--steps must be more than {NUM_TRAIN}")
    from segfit.data.synthetic import write_synthetic_images

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_synthetic_images(data_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, size=(480, 640), max_objects=8, seed=0)
        sixty = run_isolated("sixty_line", sixty_line_run, data_dir, args.size, args.image_size, args.steps, False)
        sixty_kept = run_isolated("sixty_line_kept_memory", sixty_line_run, data_dir, args.size, args.image_size,
                                  args.steps, True)
        untrained = run_isolated("untrained", segfit_run, data_dir, args.size, args.image_size, 0, (), True)
        runs = {name: run_isolated(name, segfit_run, data_dir, args.size, args.image_size, args.steps, VARIANTS[name],
                                   not name.endswith("_malloc_default")) for name in names}
    variants = []
    for name, run in runs.items():
        variants.append({
            "name": name, "overrides": list(VARIANTS[name]),
            "steps_per_s": round(run["steps_per_s"], 4), "images_per_s": round(run["images_per_s"], 4),
            "speedup_steps": round(run["steps_per_s"] / sixty["steps_per_s"], 2),
            "speedup_images": round(run["images_per_s"] / sixty["images_per_s"], 2),
            "miou@1": round(run["miou@1"], 4), "first_epoch_s": round(run["first_epoch_s"], 1),
            "cache_hits": run["cache_hits"], "cache_misses": run["cache_misses"], "peak_rss_mb": round(run["peak_rss_mb"]),
        })
    best = max(variants, key=lambda v: v["speedup_images"])
    print(json.dumps({
        "benchmark": "sam2_frozen_encoder_finetune", "size": args.size, "image_size": args.image_size,
        "steps": args.steps, "measured": "median step after the first epoch (all cache hits)",
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": native_bf16,
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "segfit_prompts": "like-for-like: " + " ".join(LIKE_FOR_LIKE), "segfit_lr": "1e-4 constant",
        "sixty_line": {"steps_per_s": round(sixty["steps_per_s"], 4), "peak_rss_mb": round(sixty["peak_rss_mb"])},
        "sixty_line_kept_memory": {"steps_per_s": round(sixty_kept["steps_per_s"], 4),
                                   "peak_rss_mb": round(sixty_kept["peak_rss_mb"])},
        "miou@1_untrained": round(untrained["miou@1"], 4), "variants": variants,
        "best": best["name"], "target_4x_reached": best["speedup_images"] >= 4,
        "wall_s": round(time.perf_counter() - started),
    }))


if __name__ == "__main__":
    main()
