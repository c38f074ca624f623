"""What ``train.loss.resolution`` costs in accuracy: the demo's fine-tuning run once per loss resolution.

    python benchmarks/bench_loss_resolution.py [--steps 300] [--resolutions full,low,points]

Each run is ``configs/sam2_demo.yaml`` (tiny from random weights at 256², clicks with one correction click, lr 1e-3)
on the same synthetic data (24 train / 8 val images), same seed, only ``train.loss.resolution`` differs; reported
are the validation click metrics after ``--steps`` steps and the median step time. At 256² the full-resolution loss
is cheap, so this measures the accuracy side; ``bench_finetune_step.py`` measures the speed side at 1024².
Each run is a fresh process. Prints one JSON line.
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

from isolated import run_isolated

DEMO_SPEC = Path(__file__).resolve().parents[1] / "configs" / "sam2_demo.yaml"
NUM_TRAIN, NUM_VAL = 24, 8


def demo_run(data_dir: Path, steps: int, resolution: str, queue: mp.Queue) -> None:
    from segfit.engine.host_memory import keep_freed_memory
    from segfit.engine.logging import read_records
    from segfit.engine.trainer import train
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    keep_freed_memory()  # as the segfit command does
    with tempfile.TemporaryDirectory() as run_dir:
        spec = load_spec(DEMO_SPEC, [
            f"results_dir={run_dir}", f"train.max_steps={steps}", f"train.eval_every={steps}",
            f"train.checkpoint_every={steps}", "evaluate.num_samples=0", f"train.loss.resolution={resolution}",
            f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
            f"data.val.images={data_dir}/val/images", f"data.val.annotations={data_dir}/val/masks",
        ])
        summary = train(recipe_for(spec), spec)
        rates = [r["steps_per_s"] for r in read_records(Path(run_dir) / "metrics.jsonl") if r["split"] == "train"]
    val = summary["val"]
    queue.put({"miou@1": val["miou@1"], "miou@3": val["miou@3"], "box_miou": val["box_miou"],
               "train_loss": summary["train"]["loss"], "step_s": float(np.median([1 / r for r in rates]))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--resolutions", default="full,low,points")
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_images

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_synthetic_images(data_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
        runs = {res: run_isolated(res, demo_run, data_dir, args.steps, res) for res in args.resolutions.split(",")}
    print(json.dumps({
        "benchmark": "sam2_loss_resolution_accuracy", "spec": "configs/sam2_demo.yaml", "steps": args.steps,
        "threads": torch.get_num_threads(), "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "runs": {res: {key: round(value, 4) for key, value in run.items()} for res, run in runs.items()},
        "wall_s": round(time.perf_counter() - started),
    }))


if __name__ == "__main__":
    main()
