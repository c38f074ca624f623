"""Mask2Former Swin-T: segfit's training step against the transformers example's loop, and ONNX Runtime against PyTorch.

    python benchmarks/bench_mask2former.py [--image-size 384] [--batch 2] [--steps 4] [--runs 5] [--skip-onnx] [--skip-train]

Training, each side in a fresh process (its own peak memory), on the same model (Swin-T, 100 queries, random
weights, 20 classes) and the same synthetic instance images (COCO layout, ``image-size``² after cropping):

- ``segfit``: the recipe's dataset items and collate (torchvision v2 resize / crop / flip), ``training_step`` (loss
  terms from transformers' loss), backward, gradient clipping, AdamW with the backbone group, as the engine runs them;
- ``hf_example``: what ``examples/pytorch/instance-segmentation/run_instance_segmentation_no_trainer.py`` does per
  step: ``Mask2FormerImageProcessor`` on an instance map + ``instance_id_to_semantic_id`` (its collate),
  ``model(**batch).loss``, backward, AdamW step. The example augments in Albumentations before that; here its
  samples get segfit's resize / crop / flip with the same draws, so both sides train on identical images and masks
  (the number of masks decides much of the loss's cost).

Step time is the median of ``--steps`` steps after one warm-up step, in wall seconds and in the process's CPU
seconds (``*_cpu_s``: what a step costs whatever else the machine runs; with ``OMP_NUM_THREADS=1``, which both
sides' processes inherit, it is the compute alone). ONNX: the exported graph (dynamo, eager Swin attention) against
the PyTorch model on one image, median of ``--runs`` alternating runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from isolated import peak_rss_mb, run_isolated  # noqa: E402

CLASSES = 20


def _spec(data_dir: Path, image_size: int, batch: int, *more: str) -> Any:
    from segfit.spec import load_spec

    split = f"{{img_dir: {data_dir}/train/images, instance_json: {data_dir}/train/annotations.json}}"
    classes = "[" + ",".join(f"{{id: {k}}}" for k in range(1, CLASSES + 1)) + "]"
    return load_spec(None, [
        "model.name=mask2former", "model.mode=instance", f"model.sem_seg_head.num_classes={CLASSES}",
        "data.type=coco", f"data.train={split}", f"data.classes={classes}", f"data.train.batch_size={batch}",
        f"data.augmentation.train_min_size=[{image_size}]", f"data.augmentation.train_max_size={4 * image_size}",
        f"data.augmentation.train_crop_size=[{image_size},{image_size}]", f"data.augmentation.test_min_size={image_size}",
        f"data.augmentation.test_max_size={image_size}", "data.check_labels=false", *more])


def _steps(step, count: int) -> dict[str, float]:
    """Median wall and CPU seconds per step after one warm-up step. The CPU time (all threads of the process) is
    what a step costs whatever else runs on the machine: on a shared machine, compare sides by it."""
    wall, cpu = [], []
    for k in range(count + 1):
        started, started_cpu = time.perf_counter(), time.process_time()
        step(k)
        if k:
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    return {"step_s": statistics.median(wall), "step_cpu_s": statistics.median(cpu)}


def segfit_side(data_dir: Path, image_size: int, batch: int, steps: int, queue) -> None:
    from segfit.engine.optim import build_optimizer
    from segfit.models.mask2former.recipe import Mask2FormerRecipe

    torch.manual_seed(0)
    spec = _spec(data_dir, image_size, batch)
    recipe = Mask2FormerRecipe(spec)
    model = recipe.build_model().train()
    optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
    dataset = recipe.train_dataset()

    def step(k: int) -> None:
        batch_ = recipe.collate([dataset[((k * batch + i) % len(dataset), k * batch + i)] for i in range(batch)])
        terms = recipe.training_step(model, batch_)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    queue.put({**_steps(step, steps), "peak_rss_mb": peak_rss_mb()})


def hf_side(data_dir: Path, image_size: int, batch: int, steps: int, queue) -> None:
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    from segfit.models.mask2former.build import hf_config
    from segfit.models.mask2former.dataset import train_transform
    from segfit.models.mask2former.recipe import Mask2FormerRecipe

    torch.manual_seed(0)
    spec = _spec(data_dir, image_size, batch)
    recipe = Mask2FormerRecipe(spec)  # only for the reader, label map and augmentation: the same samples as segfit
    reader, aug = recipe.reader(spec.data.train), spec.data.augmentation
    model = Mask2FormerForUniversalSegmentation(hf_config(spec.model, [str(k) for k in range(CLASSES)])).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.train.optim.base_lr)
    # the example's settings: background 0 → ignore, instance ids 1..N mapped to category ids (1-based → 0-based)
    processor = Mask2FormerImageProcessor(do_resize=False, ignore_index=255, do_reduce_labels=True)

    def example(i: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        """Sample ``i`` augmented as segfit's item ``(i, seed)`` is (the example's Albumentations resize / crop /
        flip, here the same draws), as the example's dataset gives it: an instance map and its class per id."""
        record = reader.load(i)
        targets = recipe.labels.targets(record, spec.model.mode)
        image, masks = train_transform(record.image, targets.masks, aug, seed)
        instance_map = np.zeros(masks.shape[1:], np.int64)
        for n, mask in enumerate(masks.numpy(), start=1):
            instance_map[mask] = n
        return (image.permute(1, 2, 0).numpy(), instance_map,
                {n: int(label) + 1 for n, label in enumerate(targets.labels, start=1)})

    def step(k: int) -> None:
        items = [example((k * batch + i) % len(reader), k * batch + i) for i in range(batch)]
        inputs = processor(images=[i[0] for i in items], segmentation_maps=[i[1] for i in items],
                           instance_id_to_semantic_id=[i[2] for i in items], return_tensors="pt")
        loss = model(pixel_values=inputs["pixel_values"], mask_labels=inputs["mask_labels"],
                     class_labels=inputs["class_labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    queue.put({**_steps(step, steps), "peak_rss_mb": peak_rss_mb()})


def onnx_latency(data_dir: Path, image_size: int, runs: int) -> dict[str, float]:
    from segfit.models.mask2former.export import export_onnx, session_forward
    from segfit.models.mask2former.predict import torch_forward
    from segfit.models.mask2former.recipe import Mask2FormerRecipe

    torch.manual_seed(0)
    spec = _spec(data_dir, image_size, 1, f"export.input_height={image_size}", f"export.input_width={image_size}")
    model = Mask2FormerRecipe(spec).build_model().eval()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        (path,) = export_onnx(model, spec, Path(tmp))
        export_s = time.perf_counter() - started
        onnx, eager = session_forward(path), torch_forward(model)
        pixels = torch.randn(1, 3, image_size, image_size)
        times: tuple[list[float], list[float]] = ([], [])
        with torch.no_grad():
            for run in range(runs + 1):
                for fn, out in zip((onnx, eager), times):
                    started = time.perf_counter()
                    fn(pixels)
                    if run:
                        out.append(time.perf_counter() - started)
    onnx_s, torch_s = statistics.median(times[0]), statistics.median(times[1])
    return {"onnx_s": onnx_s, "torch_eager_s": torch_s, "onnx_speedup": torch_s / onnx_s, "export_s": export_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    from segfit.data.synthetic import write_synthetic_images

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        size = (args.image_size + args.image_size // 4, args.image_size + args.image_size // 2)
        write_synthetic_images(data_dir, format="coco", num_train=2 * args.batch * (args.steps + 1), num_val=0,
                               size=size, max_objects=5)
        result: dict[str, Any] = {"benchmark": "mask2former_swin_t", "image_size": args.image_size,
                                  "batch": args.batch, "device": "cpu", "threads": torch.get_num_threads()}
        if not args.skip_train:
            for label, side in (("segfit", segfit_side), ("hf_example", hf_side)):
                out = run_isolated(label, side, data_dir, args.image_size, args.batch, args.steps)
                result.update({f"{label}_{key}": value for key, value in out.items()})
            result["train_speedup"] = result["hf_example_step_s"] / result["segfit_step_s"]
            result["train_speedup_cpu"] = result["hf_example_step_cpu_s"] / result["segfit_step_cpu_s"]
        if not args.skip_onnx:
            result.update(onnx_latency(data_dir, args.image_size, args.runs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
