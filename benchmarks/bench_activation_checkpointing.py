"""Full SAM 2 fine-tuning (image encoder trained) with and without activation checkpointing, and LoRA instead:
peak memory, step time, checkpoint size.

    python benchmarks/bench_activation_checkpointing.py [--size tiny] [--image-size 1024] [--steps 4]

Each setting runs segfit's engine in a fresh process (so ``ru_maxrss``, the peak resident set, is its own): random
weights (seed 0), one synthetic 480×640 image per step with up to 8 objects, one click each, no correction clicks,
fp32, every part trained. The step time is the median over the steps after the first. The per-step losses of both
runs are compared too: checkpointing recomputes, it must not change the numbers. A third run trains LoRA adapters
(rank 8, image encoder + mask decoder) and the prompt encoder from a saved base model instead, whose checkpoint
then holds only what trains. All keep freed CPU memory, as the ``segfit`` command does
(``engine/host_memory.py``). Prints one JSON line.
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

SETUP = (
    "model.trainable=[image_encoder,prompt_encoder,mask_decoder]", "data.batch_size=1", "train.seed=0",
    "train.prompts.num_correction_clicks=0", "train.prompts.prob_click=1", "train.prompts.prob_box=0",
    "data.augment.hflip=0", "data.augment.color_jitter=0",
)
LORA = ("model.trainable=[prompt_encoder]", "model.lora.rank=8", "model.lora.targets=[image_encoder,mask_decoder]")


def engine_run(data_dir: Path, size: str, image_size: int, steps: int, checkpointing: bool, overrides: tuple[str, ...],
               queue: mp.Queue) -> None:
    from segfit.engine.host_memory import keep_freed_memory
    from segfit.engine.logging import read_records
    from segfit.engine.trainer import train
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    keep_freed_memory()  # as the segfit command does
    with tempfile.TemporaryDirectory() as run_dir:
        spec = load_spec(None, [
            "model.name=sam2", f"model.size={size}", f"model.image_size={image_size}", f"results_dir={run_dir}",
            f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
            f"model.activation_checkpointing={str(checkpointing).lower()}", f"train.max_steps={steps}",
            "train.log_every=1", "train.eval_every=0", f"train.checkpoint_every={steps + 1}", *SETUP, *overrides,
        ])
        train(recipe_for(spec), spec)
        records = [r for r in read_records(Path(run_dir) / "metrics.jsonl") if r["split"] == "train"]
        weights_mib = (Path(run_dir) / "checkpoints" / "last" / "model.safetensors").stat().st_size / 2**20
    queue.put({"step_s": float(np.median([1 / r["steps_per_s"] for r in records[1:]])),
               "losses": [r["loss"] for r in records],
               "peak_rss_mb": peak_rss_mb(), "checkpoint_mib": weights_mib})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run (≥ 2; the first is warm-up)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    from segfit.data.synthetic import write_synthetic_images
    from segfit.models.sam2.build import build_sam2

    load_before, started = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_images(tmp, num_train=4, num_val=0, size=(480, 640), max_objects=8, seed=0)
        torch.manual_seed(0)
        build_sam2(args.size, image_size=args.image_size).save_pretrained(Path(tmp) / "base")
        plain = run_isolated("without", engine_run, Path(tmp), args.size, args.image_size, args.steps, False, ())
        checkpointed = run_isolated("with", engine_run, Path(tmp), args.size, args.image_size, args.steps, True, ())
        lora = run_isolated("lora", engine_run, Path(tmp), args.size, args.image_size, args.steps, False,
                            (*LORA, f"model.checkpoint={tmp}/base"))
    print(json.dumps({
        "benchmark": "sam2_full_finetune_activation_checkpointing", "size": args.size, "image_size": args.image_size,
        "steps": args.steps, "threads": torch.get_num_threads(), "setup": " ".join(SETUP),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **{name: {"step_s": round(run["step_s"], 3), "peak_rss_mb": round(run["peak_rss_mb"]),
                  "checkpoint_mib": round(run["checkpoint_mib"], 2)}
           for name, run in (("without", plain), ("with", checkpointed), ("lora", lora))},
        "lora_setup": " ".join(LORA),
        "peak_rss_saved_mb": round(plain["peak_rss_mb"] - checkpointed["peak_rss_mb"]),
        "step_time_ratio": round(checkpointed["step_s"] / plain["step_s"], 3),
        "max_loss_difference": float(np.max(np.abs(np.subtract(plain["losses"], checkpointed["losses"])))),
        "wall_s": round(time.perf_counter() - started),
    }))


if __name__ == "__main__":
    main()
