"""The batched SAM 2 training episode against the per-image one it replaced, on any device (CPU figures in
docs/speed.md), and what recomputing the full-resolution loss in the backward pass saves.

    python benchmarks/bench_batched_step.py [--size tiny] [--image-size 512] [--repeats 5]

Both variants run ``simulate.prompt_and_score`` forward + backward with the official prompts (click or box, 7
correction clicks) on the same batches of synthetic images (up to 4 objects each) and the same cached embeddings
(frozen encoder): ``per_image`` calls it once per image, as segfit's step did before (one decoder call per image,
prompt kind and step); ``batched`` once for the batch (one call per prompt kind and step). The time is the median
of ``--repeats`` steps after one warm-up; ``saved_mb`` is what the step keeps for its backward pass (every tensor
autograd saves), with and without recomputing the full-resolution loss (``batched_loss_stored``). The variants
alternate step by step; freed memory is kept, as the ``segfit`` command does. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.host_memory import keep_freed_memory
from segfit.models.sam2 import losses
from segfit.models.sam2.simulate import prompt_and_score
from segfit.registry import recipe_for
from segfit.spec import load_spec


def step(recipe, model, embeddings, batch, per_image: bool) -> tuple[float, int, float]:
    """One episode forward + backward → (seconds, decoder calls, MiB saved for backward)."""
    spec = recipe.spec
    args = (spec.train.prompts, spec.train.loss, spec.model.multimask_output)
    calls, saved = [], []
    hook = model.mask_decoder.register_forward_hook(lambda *_: calls.append(1))
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        if per_image:  # what the recipe did before: one episode per image, weighted by its objects
            index = batch["image_index"]
            total = 0
            for b in range(len(batch["image"])):
                rows = index == b
                valid = None if batch["valid"] is None else batch["valid"][b]
                terms = prompt_and_score(model, [e[b : b + 1] for e in embeddings], batch["masks"][rows], valid, *args)
                total = total + terms["loss"] * rows.sum() / len(index)
        else:
            total = prompt_and_score(model, embeddings, batch["masks"], batch["valid"], *args, batch["image_index"])["loss"]
    total.backward()
    hook.remove()
    return time.perf_counter() - started, len(calls), sum(saved) / 2**20


@contextmanager
def loss_stored(store: bool) -> Iterator[None]:
    """With ``store``, the full-resolution loss keeps its tensors for backward instead of recomputing them."""
    recompute = losses.checkpoint
    if store:
        losses.checkpoint = lambda fn, *inputs, **_: fn(*inputs)
    try:
        yield
    finally:
        losses.checkpoint = recompute


VARIANTS = {"per_image": (True, False), "batched": (False, False), "batched_loss_stored": (False, True)}
"""name: (one episode per image, full-resolution loss stored instead of recomputed)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()  # as the segfit command does
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_synthetic_images(data_dir, num_train=8, num_val=1, size=(480, 640), max_objects=4, seed=0)
        spec = load_spec(None, [
            "model.name=sam2", f"model.size={args.size}", f"model.image_size={args.image_size}", f"results_dir={tmp}/run",
            f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
            "data.augment.color_jitter=0",
        ])
        recipe = recipe_for(spec)
        torch.manual_seed(0)
        model = recipe.build_model().train()
        dataset = recipe.train_dataset().sources[0].dataset
        started = time.perf_counter()
        for batch_size in (1, 4):
            batches = [recipe.collate([dataset[((i * batch_size + j) % 8, i)] for j in range(batch_size)])
                       for i in range(args.repeats + 1)]
            with torch.no_grad():
                embeddings = [model.get_image_embeddings(b["image"]) for b in batches]
            runs = {name: [] for name in VARIANTS}
            for i, (e, b) in enumerate(zip(embeddings, batches)):  # alternating: the same machine state for all
                for name, (per_image, store) in VARIANTS.items():
                    torch.manual_seed(i)  # the same prompt draws for every variant (per image: in image order)
                    with loss_stored(store):
                        runs[name].append(step(recipe, model, e, b, per_image))
            model.zero_grad()
            objects = np.mean([len(b["masks"]) for b in batches[1:]])
            for name, measured in runs.items():
                step_s = float(np.median([r[0] for r in measured[1:]]))
                results[f"{name}_batch{batch_size}"] = {
                    "step_s": round(step_s, 3), "objects_per_s": round(objects / step_s, 2),
                    "decoder_calls": float(np.mean([r[1] for r in measured[1:]])),
                    "saved_mb": round(float(np.mean([r[2] for r in measured[1:]])), 1)}
    speedup = {f"batch{b}": round(results[f"per_image_batch{b}"]["step_s"] / results[f"batched_batch{b}"]["step_s"], 2)
               for b in (1, 4)}
    print(json.dumps({
        "benchmark": "sam2_batched_episode", "size": args.size, "image_size": args.image_size,
        "prompts": "official: click or box, 7 correction clicks", "repeats": args.repeats,
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": "cpu", **results, "speedup_batched_vs_per_image": speedup,
        "load_avg_1min_after": round(os.getloadavg()[0], 2), "wall_s": round(time.perf_counter() - started),
    }))


if __name__ == "__main__":
    main()
