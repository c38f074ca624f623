"""Data-parallel SAM 2 training steps on the CPU (gloo): throughput per process, and the share of a step spent
waiting on gradient communication, 1 process vs 2; with ``--distributed fsdp``, the same steps sharded (FSDP2).

    python benchmarks/bench_distributed.py [--size tiny] [--image-size 256] [--batch-size 2] [--steps 4] [--threads 1]
    python benchmarks/bench_distributed.py --distributed fsdp --full --steps 2 --threads 1

Each process count runs under ``torchrun --standalone``, each process with ``--threads`` threads
(``OMP_NUM_THREADS``; default: the machine's cores split between the processes). A process times the engine's step (``TrainingStep``, in DDP when there are 2): forward,
backward, optimizer step, on fixed batches of synthetic images (frozen image encoder, embeddings cached, the
official prompts). With 2 processes the steps alternate between synchronised ones (DDP all-reduces the gradients
during the backward pass) and local ones (``no_sync``: the same work without communication); the waiting share
is 1 − local / synchronised (medians). On a machine with fewer cores than a real cluster node the two processes
also compete for cores, which is why the thread counts are recorded. ``--full`` trains every part (no embedding
cache), as FSDP is meant for. ``state_mib`` is what a process holds of the weights, gradients and optimizer state
after the steps (its shards under FSDP); FSDP runs synchronised steps only (its gathers cannot be left out).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.distributed import (
    TrainingStep,
    cleanup,
    data_parallel,
    gradient_sync,
    init_distributed,
    resolve_device,
)
from segfit.engine.fsdp import fsdp_blocks, fully_sharded
from segfit.engine.optim import build_optimizer
from segfit.engine.transfer import to_device
from segfit.registry import recipe_for
from segfit.spec import load_spec


def worker(args: argparse.Namespace) -> None:
    """One process of the run: time ``args.steps`` synchronised (and as many local) steps; write them as JSON."""
    device = resolve_device("cpu")
    dist = init_distributed(device)
    spec = load_spec(None, [
        "model.name=sam2", f"model.size={args.size}", f"model.image_size={args.image_size}",
        f"data.train.images={args.data}/train/images", f"data.train.annotations={args.data}/train/masks",
        f"data.batch_size={args.batch_size}", f"results_dir={args.out}", "train.device=cpu",
        *(["model.trainable=[image_encoder,prompt_encoder,mask_decoder]"] if args.full else []),
    ])
    recipe = recipe_for(spec)
    torch.manual_seed(0)
    model = recipe.build_model().train()
    sharded = dist.active and args.distributed == "fsdp"
    run_step = TrainingStep(recipe, model)
    if sharded:  # before the optimizer, as the trainer does
        fully_sharded(run_step, fsdp_blocks(recipe, model), dist, device)
    optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
    run_step = run_step if sharded else data_parallel(run_step, dist, device)
    dataset = recipe.train_dataset().sources[0].dataset
    first = dist.rank * args.batch_size
    batch = to_device(recipe.collate([dataset[(i, i)] for i in range(first, first + args.batch_size)]), device)
    modes = [True, False] if dist.active and not sharded else [True]
    times: dict[bool, list[float]] = {mode: [] for mode in modes}
    for index in range(1 + args.steps):  # a warm-up step per mode (the embedding cache fills in the first)
        for sync in modes:
            started = time.perf_counter()
            with gradient_sync(run_step, sync):
                run_step(batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= 1:
                times[sync].append(time.perf_counter() - started)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run_step(batch)["loss"].backward()  # gradients held, as during a step
    held = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None),
            *(t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t))]
    local = [t.to_local() if hasattr(t, "to_local") else t for t in held]
    result = {"rank": dist.rank, "threads": torch.get_num_threads(), "trainable_params": trainable,
              "step_s": statistics.median(times[True]),
              "local_step_s": statistics.median(times[False]) if False in times else None,
              "state_mib": sum(t.numel() * t.element_size() for t in local) / 2**20}
    (Path(args.out) / f"rank{dist.rank}.json").write_text(json.dumps(result))
    cleanup(dist)


def run(processes: int, args: argparse.Namespace, data: Path, out: Path) -> dict:
    """Launch ``processes`` workers under torchrun; merge what they wrote."""
    threads = args.threads or max(1, len(os.sched_getaffinity(0)) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               __file__, "--worker", "--data", str(data), "--out", str(out), "--size", args.size,
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--distributed", args.distributed, *(["--full"] if args.full else [])]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]
    step_s = max(r["step_s"] for r in ranks)  # the processes wait for the slowest
    result = {"threads_per_process": ranks[0]["threads"], "step_s": round(step_s, 4),
              "samples_per_s_per_process": round(args.batch_size / step_s, 3),
              "samples_per_s": round(processes * args.batch_size / step_s, 3),
              "state_mib_per_process": round(max(r["state_mib"] for r in ranks), 1)}
    if ranks[0]["local_step_s"] is not None:
        local = max(r["local_step_s"] for r in ranks)
        result |= {"local_step_s": round(local, 4), "comm_wait_share": round(1 - local / step_s, 3)}
    return result | {"trainable_params": ranks[0]["trainable_params"]}


def cpu_model() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2, help="images per process")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    parser.add_argument("--threads", type=int, help="threads per process (default: the cores split between them)")
    parser.add_argument("--distributed", choices=["ddp", "fsdp"], default="ddp", help="train.distributed")
    parser.add_argument("--full", action="store_true", help="train every part (default: a frozen, cached encoder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_synthetic_images(data, num_train=4, num_val=0, size=(240, 320), max_objects=4, seed=0)
        results = {str(p): run(p, args, data, Path(tmp) / f"p{p}") for p in (1, 2)}
    print(json.dumps({"bench": "distributed", "backend": "gloo", "distributed": args.distributed, "full": args.full,
                      "size": args.size, "image_size": args.image_size,
                      "batch_size_per_process": args.batch_size, "cpu": cpu_model(),
                      "cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg()[0],
                      "torch": torch.__version__, "processes": results}))


if __name__ == "__main__":
    main()
