"""Frozen-encoder SAM 2 fine-tuning: segfit's engine vs a faithful re-implementation of the "60-line" loop.

    python benchmarks/bench_finetune_step.py [--size tiny] [--image-size 1024] [--steps 5]

Same tiny model (random weights), same synthetic images, one image per step, all its objects with one click each.
The 60-line loop (Sagi Eppel's widely copied script) runs the image encoder under no_grad every step, decodes
with multimask output, and takes BCE on mask 0 at the original resolution + 0.05·|IoU - score|. segfit runs its
real engine (`segfit.engine.trainer.train`) with the SAM 2 recipe. Prints one JSON line: steps/s of each, the
ratio, and the peak RSS of each (measured in separate child processes so one does not inflate the other).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def sixty_line_loop(data_dir: Path, size: str, image_size: int, steps: int, queue: mp.Queue) -> None:
    from segfit.data.formats import open_split
    from segfit.models.sam2.build import build_sam2
    from segfit.models.sam2.preprocess import masks_to_original, points_to_model, preprocess_image
    from segfit.spec.schema import SplitSpec

    torch.manual_seed(0)
    reader = open_split(SplitSpec(images=str(data_dir / "train/images"), annotations=str(data_dir / "train/masks")))
    model = build_sam2(size, image_size=image_size).train()
    model.vision_encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=4e-5)
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 1):
        started = time.perf_counter()
        record = reader.load(int(rng.integers(len(reader))))
        masks = torch.from_numpy(record.masks).float()
        points = torch.stack([torch.nonzero(m)[torch.randint(int(m.sum()), ())].flip(0) for m in masks.bool()]).float()
        with torch.no_grad():  # predictor.set_image
            embeddings = model.get_image_embeddings(preprocess_image(record.image, image_size)[None])
        out = model(image_embeddings=embeddings, input_points=points_to_model(points, record.size, image_size)[None, :, None],
                    input_labels=torch.ones(1, len(points), 1, dtype=torch.long), multimask_output=True)
        prd = torch.sigmoid(masks_to_original(out.pred_masks[0], record.size)[:, 0])
        seg_loss = (-masks * torch.log(prd + 1e-5) - (1 - masks) * torch.log(1 - prd + 1e-5)).mean()
        inter = (masks * (prd > 0.5)).sum((1, 2))
        iou = inter / (masks.sum((1, 2)) + (prd > 0.5).sum((1, 2)) - inter)
        loss = seg_loss + 0.05 * torch.abs(out.iou_scores[0, :, 0] - iou).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - started)
    queue.put({"steps_per_s": 1 / float(np.median(times)), "peak_rss_mb": _peak_rss_mb()})


def segfit_engine(data_dir: Path, size: str, image_size: int, steps: int, queue: mp.Queue) -> None:
    from segfit.engine.logging import read_records
    from segfit.engine.trainer import train
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    with tempfile.TemporaryDirectory() as run_dir:
        spec = load_spec(None, [
            "model.name=sam2", f"model.size={size}", f"model.image_size={image_size}", f"results_dir={run_dir}",
            f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
            "data.batch_size=1", "data.max_num_objects=100", "data.augment.hflip=0", "data.augment.color_jitter=0",
            f"train.max_steps={steps + 1}", "train.log_every=1", "train.eval_every=0", f"train.checkpoint_every={steps + 10}",
        ])
        train(recipe_for(spec), spec)
        rates = [r["steps_per_s"] for r in read_records(Path(run_dir) / "metrics.jsonl") if r["split"] == "train"][1:]
    queue.put({"steps_per_s": float(np.median(rates)), "peak_rss_mb": _peak_rss_mb()})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(target, *args) -> dict:
    queue: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_images

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_synthetic_images(data_dir, num_train=8, num_val=1, size=(480, 640), max_objects=8, seed=0)
        sixty = _run(sixty_line_loop, data_dir, args.size, args.image_size, args.steps)
        ours = _run(segfit_engine, data_dir, args.size, args.image_size, args.steps)
    print(json.dumps({
        "benchmark": "sam2_frozen_encoder_finetune_step", "size": args.size, "image_size": args.image_size,
        "threads": torch.get_num_threads(), "segfit_steps_per_s": round(ours["steps_per_s"], 4),
        "sixty_line_steps_per_s": round(sixty["steps_per_s"], 4),
        "ratio": round(ours["steps_per_s"] / sixty["steps_per_s"], 3),
        "segfit_peak_rss_mb": round(ours["peak_rss_mb"]), "sixty_line_peak_rss_mb": round(sixty["peak_rss_mb"]),
    }))


if __name__ == "__main__":
    main()
