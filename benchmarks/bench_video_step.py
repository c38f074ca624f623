"""SAM 2 video training step: segfit's clip episode against Meta's ``SAM2Train`` (the official trainer's model) on the
same clips, with the same prompt settings, in fresh processes. Prints one JSON line.

    python benchmarks/bench_video_step.py [--steps 5] [--image-size 512] [--precisions fp32,bf16] [--device cuda]

Both: tiny with random weights, every part trained, 4-frame clips with 2 objects (synthetic DAVIS videos at
480×854 through each side's own loading and augmentation), one clicked first frame with 7 correction clicks and the
other frames tracked from memory (the prompt kind and frame plan fixed so both do the same work), loss on every
frame and step (focal 20, dice 1, IoU 1, object score 1), backward, gradient clipping to 0.1, AdamW. The step time
is the median over ``--steps`` steps after one warm-up, each side's data loading excluded; peak memory is the
process's resident set on the CPU, ``torch.cuda.max_memory_allocated`` with ``--device cuda`` (both sides then train
on the GPU, bf16 as CUDA autocast). segfit runs once more with ``model.activation_checkpointing`` (the image
encoder's blocks and the memory attention recomputed). Targets (issue 9): ≤ 0.8× the official step time and ≤ 0.7×
its peak memory. Needs Meta's ``training`` package (installed with ``sam2``) and its imports (``make bench-video``
installs them; on a lent GPU, carry the wheels ``benchmarks/gpu_wheels.sh`` writes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from isolated import peak_rss_mb, run_isolated

FRAMES, OBJECTS = 4, 2
WEIGHTS = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}


def official_run(data: dict[str, Path], image_size: int, steps: int, precision: str, device: str,
                 queue: mp.Queue) -> None:
    from sam2.build_sam import build_sam2
    from training.loss_fns import MultiStepMultiMasksAndIous
    from training.utils.data_utils import collate_fn

    from bench_clip_loading import official_dataset

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device=device, mode="train", apply_postprocessing=False,
                       hydra_overrides_extra=[
                           "++model._target_=training.model.sam2.SAM2Train", f"++model.image_size={image_size}",
                           "++model.prob_to_use_pt_input_for_train=1.0", "++model.prob_to_use_box_input_for_train=0.0",
                           "++model.num_frames_to_correct_for_train=1", "++model.num_init_cond_frames_for_train=1",
                           "++model.rand_init_cond_frames_for_train=false", "++model.num_correction_pt_per_frame=7",
                           "++model.prob_to_sample_from_gt_for_train=0.1", "++model.add_all_frames_to_correct_as_cond=true",
                       ])
    model.train()
    loss_fn = MultiStepMultiMasksAndIous(WEIGHTS, supervise_all_iou=True, iou_use_l1_loss=True, pred_obj_scores=True,
                                         focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-6, weight_decay=0.1)
    dataset = official_dataset(data, image_size, num_frames=FRAMES, max_objects=OBJECTS)
    batches = (collate_fn([dataset[i % len(dataset)]], dict_key="all").to(device, non_blocking=True)
               for i in range(steps + 1))  # as Meta's trainer moves a batch
    step_s = median_step(model, optimizer, batches, lambda batch: loss_fn(model(batch), batch.masks)["core_loss"],
                         precision, device)
    queue.put({"step_s": step_s, "peak_mb": peak_mb(device)})


def segfit_run(data: dict[str, Path], image_size: int, steps: int, precision: str, device: str, checkpointing: bool,
               queue: mp.Queue) -> None:
    from segfit.engine.host_memory import keep_freed_memory
    from segfit.engine.optim import build_optimizer
    from segfit.engine.transfer import to_device
    from segfit.registry import recipe_for
    from segfit.spec import load_spec

    keep_freed_memory()  # as the segfit command does
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as run_dir:
        spec = load_spec(None, [
            "model.name=sam2", "model.size=tiny", f"model.image_size={image_size}", f"results_dir={run_dir}",
            "model.trainable=[image_encoder,prompt_encoder,mask_decoder,memory]", "data.train.format=davis",
            f"data.train.images={data['train_images']}", f"data.train.annotations={data['train_annotations']}",
            f"data.video.num_frames={FRAMES}", f"data.video.max_num_objects={OBJECTS}", "data.batch_size=1",
            "train.video.prompts.prob_click=1", "train.video.prompts.prob_box=0", "train.video.prompts.prob_mask=0",
            "train.video.num_init_cond_frames=1", "train.video.num_frames_to_correct=1",
            f"model.activation_checkpointing={str(checkpointing).lower()}",
        ])
        recipe = recipe_for(spec)
        model = recipe.build_model().to(device).train()
        optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
        dataset = recipe.train_dataset().sources[0].dataset
        batches = (to_device(recipe.collate([dataset[(i % len(dataset), i)]]), torch.device(device))
                   for i in range(steps + 1))
        step_s = median_step(model, optimizer, batches, lambda batch: recipe.training_step(model, batch)["loss"],
                             precision, device)
    queue.put({"step_s": step_s, "peak_mb": peak_mb(device)})


def peak_mb(device: str) -> float:
    """The process's peak memory on ``device``: resident set on the CPU, allocated tensors on a GPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()


def median_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches, loss_of, precision: str,
                device: str) -> float:
    """Median seconds of forward + loss (``loss_of(batch)``), backward, clipping to 0.1 and the optimizer step,
    over the batches after the first (a warm-up); loading a batch and its copy to the device are not timed."""
    autocast = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    times = []
    for batch in batches:
        sync()
        started = time.perf_counter()
        with autocast:
            loss = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        sync()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_videos

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_videos(Path(tmp) / "videos", num_train=4, num_val=0, size=(480, 854), num_frames=8,
                                      max_objects=OBJECTS)
        for precision in args.precisions.split(","):
            theirs = run_isolated(f"official_{precision}", official_run, data, args.image_size, args.steps, precision,
                                  args.device)
            results[precision] = {"official": {k: round(v, 3) for k, v in theirs.items()}}
            for name, checkpointing in (("segfit", False), ("segfit_activation_checkpointing", True)):
                ours = run_isolated(f"{name}_{precision}", segfit_run, data, args.image_size, args.steps, precision,
                                    args.device, checkpointing)
                results[precision][name] = {k: round(v, 3) for k, v in ours.items()} | {
                    "time_ratio": round(ours["step_s"] / theirs["step_s"], 2),
                    "memory_ratio": round(ours["peak_mb"] / theirs["peak_mb"], 2),
                }
    print(json.dumps({
        "benchmark": "sam2_video_step", "size": "tiny", "image_size": args.image_size, "frames": FRAMES,
        "objects": OBJECTS, "prompts": "1 clicked frame + 7 correction clicks, other frames tracked",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), **results,
        "targets": "time_ratio <= 0.8, memory_ratio <= 0.7",
    }))


if __name__ == "__main__":
    main()
