"""The training loop every model family shares; the family's recipe supplies model, data, loss terms and metrics.

    segfit train -e spec.yaml                                   # one process: CPU or one GPU
    torchrun --nproc_per_node 4 -m segfit train -e spec.yaml    # data-parallel over 4 GPUs of one machine

Outputs under ``results_dir``: ``checkpoints/{last,best}/``, ``metrics.jsonl``, ``results.csv``, ``tensorboard/``,
``plots/*.png`` and ``samples/step_NNNNNN/`` (the recipe's validation overlays). Checkpoints of a model started from
``model.checkpoint`` with frozen parameters hold only what trains (``engine/checkpoint.py``).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from segfit.engine.checkpoint import (
    checkpoint_bytes,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
)
from segfit.engine.distributed import (
    TrainingStep,
    all_gather,
    all_reduce_mean,
    any_rank,
    barrier,
    cleanup,
    data_parallel,
    gradient_sync,
    init_distributed,
    resolve_device,
)
from segfit.engine.evaluation import evaluate
from segfit.engine.fsdp import fsdp_blocks, fully_sharded, local_value
from segfit.engine.logging import METRICS_FILE, RunLog
from segfit.engine.nonfinite import NonFinite, batch_files
from segfit.engine.optim import apply_schedule, build_optimizer, build_scheduler
from segfit.engine.plots import render_plots
from segfit.engine.precision import autocast, check_precision, grad_scaler
from segfit.engine.recipe import Recipe
from segfit.engine.sampler import MixedBatchSampler, MixedDataset, Source
from segfit.engine.storage import check_room
from segfit.engine.transfer import to_device
from segfit.spec.schema import Spec, TrainSpec


def train(recipe: Recipe, spec: Spec) -> dict[str, Any]:
    """Run ``spec.train.max_steps`` optimizer steps, continuing from ``checkpoints/last`` when ``train.resume`` (or
    from ``train.resume_from``).

    Returns a summary: final ``step``, the last ``train`` record, the last ``val`` metrics, the ``best`` value of
    ``best_metric`` and the paths of the checkpoints and of ``metrics.jsonl``.
    """
    cfg, results_dir = spec.train, Path(spec.results_dir)
    _check(cfg, spec.data.batch_size)
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    dist = init_distributed(device)
    with ExitStack() as teardown:  # closes the log and leaves the process group even when a step raises
        teardown.callback(cleanup, dist)
        seed_everything(cfg.seed + dist.rank)
        model = recipe.build_model().to(device)
        last = Path(cfg.resume_from) if cfg.resume_from else (
            find_checkpoint(results_dir, "last") if cfg.resume else None)
        initial_weights = getattr(recipe, "initial_weights", None)
        if last is None and initial_weights is not None:  # before sharding: the plain model takes the file
            initial_weights(model)
        if cfg.compile:
            recipe.compile(model)
        if dist.is_main:  # now, not at the first save minutes or hours in
            check_room(results_dir, checkpoint_bytes(model, spec.model.checkpoint))
        step_module = TrainingStep(recipe, model)  # recipes still get the plain model
        sharded = dist.active and cfg.distributed == "fsdp"
        if sharded:  # before the optimizer: it must hold the shards
            fully_sharded(step_module, fsdp_blocks(recipe, model), dist, device)
        non_finite = NonFinite(cfg.on_nonfinite)
        # a fused optimizer can skip a step on the device (its found_inf): what on_nonfinite=skip needs
        optimizer = build_optimizer(recipe.param_groups(model), cfg.optim, fused=non_finite.skip)
        scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
        scaler = grad_scaler(cfg.precision, device)
        dataset = recipe.train_dataset()
        if not isinstance(dataset, MixedDataset):
            dataset = MixedDataset([Source("train", dataset, spec.data.batch_size)])
        phases = cfg.phases_per_epoch
        sampler = MixedBatchSampler(dataset, cfg.seed, dist.rank, dist.world_size, phases or 1)
        best_metric = cfg.best_metric or recipe.default_best_metric
        step, best, elapsed_before = 0, None, 0.0
        if last is not None:
            state = load_checkpoint(last, model, optimizer, scheduler, scaler, rank=dist.rank,
                                    base=spec.model.checkpoint)
            sampler.load_state_dict(state["sampler_state"])
            apply_schedule(scheduler)  # the schedule of this spec (max_steps may have grown since the save)
            step, best, elapsed_before = state["step"], state["best"], state["extra"]["elapsed"]
            if dist.is_main:
                print(f"resuming from {last} at step {step}")
        elif dist.is_main and (results_dir / "checkpoints").is_dir():
            # a fresh start owns results_dir: checkpoints of an earlier run must not be resumed or picked as best
            print(f"starting afresh in {results_dir}: its earlier checkpoints and metrics are replaced")
            shutil.rmtree(results_dir / "checkpoints")
        run_step = step_module if sharded else data_parallel(step_module, dist, device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        workers = loader_workers(spec.data.num_workers)
        batches = iter(DataLoader(
            dataset, batch_sampler=sampler, collate_fn=recipe.collate,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),  # keeps the loader off the global RNG
        ))
        log = teardown.enter_context(RunLog(results_dir, step, cfg.max_steps, enabled=dist.is_main,
                                            bar_keys=("loss", "iou", best_metric, "gpu_mem")))
        validate = spec.data.val is not None and cfg.eval_every > 0
        max_norm = math.inf if cfg.optim.grad_clip is None else cfg.optim.grad_clip  # inf: measure, don't clip
        started = time.perf_counter()
        window, last_train, last_val = _Window(), {}, {}

        def save(name: str, val_metrics: dict[str, Any], rng_states: list[dict[str, Any]]) -> None:
            """Checkpoint ``name`` at the current ``step`` with the current ``best``."""
            extra = {"elapsed": elapsed_before + time.perf_counter() - started, "best_metric": best_metric,
                     "metrics": val_metrics}
            save_checkpoint(results_dir / "checkpoints" / name, model, optimizer, scheduler, scaler, step,
                            sampler.state_dict(), extra, best=best, rng_states=rng_states, base=spec.model.checkpoint,
                            dist=dist)

        if validate and cfg.eval_at_start and step == 0:  # the baseline the curves start from
            log.log({"step": 0, "split": "val", **evaluate(recipe, model, results_dir / "samples" / "step_000000",
                                                            cfg.seed, dist), "time": 0.0})
        model.train()
        before_step = getattr(recipe, "before_step", None)
        while step < cfg.max_steps:
            if before_step is not None and before_step(model, step):
                trainable = [p for p in model.parameters() if p.requires_grad]
                if not sharded:  # DDP reduces what trains now; FSDP reduce-scatters whatever requires a gradient
                    run_step = data_parallel(TrainingStep(recipe, model), dist, device)
            step_started, data_seconds, phases_before = time.perf_counter(), 0.0, sampler.phases_done
            for micro in range(cfg.grad_accum_steps):
                window.count(sampler.next_names())
                data_started = time.perf_counter()
                batch = to_device(next(batches), device)
                data_seconds += time.perf_counter() - data_started
                with gradient_sync(run_step, micro == cfg.grad_accum_steps - 1):  # averaged over processes once
                    with autocast(cfg.precision, device):
                        terms = run_step(batch)
                    finite = non_finite.add(terms, step + 1, batch_files(batch))
                    # always differentiable (TrainingStep), so every process joins the gradient reduction
                    scaler.scale(terms["loss"] / cfg.grad_accum_steps).backward()
                sampler.advance()
                window.add(terms, keep=finite if non_finite.skip else None)  # skip: means over the finite losses
            scaler.unscale_(optimizer)
            grad_norm = local_value(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            lrs = {f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups}  # the lr this step used
            bad = any_rank(non_finite.step_is_bad(step + 1), dist) if non_finite.skip else None
            if any(p.grad is not None for p in trainable):  # the fp16 scaler refuses a step without gradients
                non_finite.skip_if_bad(optimizer, bad)
                scaler.step(optimizer)
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            window.add({"grad_norm": grad_norm, "data_s": data_seconds}, time.perf_counter() - step_started,
                       keep=None if bad is None else ~bad)
            log.advance()

            at_end = step == cfg.max_steps
            log_due = step % cfg.log_every == 0 or at_end
            phase_due = phases is not None and sampler.phases_done > phases_before
            eval_due = validate and (step % cfg.eval_every == 0 or at_end or phase_due)
            checkpoint_due = step % cfg.checkpoint_every == 0 or at_end or phase_due
            if log_due or eval_due or checkpoint_due:
                # where the host waits anyway: never log, evaluate or save after a bad step (stop raises here)
                window.skipped += len(non_finite.check())
            if log_due:
                last_train = all_reduce_mean(window.means(), device, dist)
                steps_per_s = window.steps / window.seconds
                skipped = {"skipped_steps": window.skipped} if non_finite.skip else {}  # a count: logged, not plotted
                log.log({"step": step, "split": "train", **lrs, **last_train, **skipped, **peak_gpu_memory(device),
                         "steps_per_s": steps_per_s, "samples_per_s": sum(window.samples.values()) / window.seconds,
                         **window.sample_counts(dataset.named), "epoch": sampler.epochs_done,
                         "time": elapsed_before + time.perf_counter() - started})
                window = _Window()
            if not (eval_due or checkpoint_due):
                continue
            rng_states = all_gather(rng_state(), dist)  # every rank's generators, for an exact resume
            # every process evaluates (sharded, or waiting for rank 0's metrics) and saves (rank 0 alone unless
            # sharded), so all take the same decisions
            if eval_due:
                last_val = evaluate(recipe, model, results_dir / "samples" / f"step_{step:06d}", cfg.seed, dist)
                log.log({"step": step, "split": "val", **last_val,
                         "time": elapsed_before + time.perf_counter() - started})
                value = _metric(last_val, best_metric)
                if improves(value, best, cfg.best_mode):
                    best = value
                    save("best", last_val, rng_states)
            if checkpoint_due:
                save("last", last_val, rng_states)
            if dist.is_main and (eval_due or at_end):
                render_plots(results_dir)
                log.flush()
            barrier(dist)

        progress = log.progress(best_metric, cfg.best_mode)
    if progress:
        print(progress)
    best_dir = results_dir / "checkpoints" / "best"
    return {
        "step": step, "train": last_train, "val": last_val, "best": best, "best_metric": best_metric,
        "last_checkpoint": str(results_dir / "checkpoints" / "last"),
        "best_checkpoint": str(best_dir) if best_dir.is_dir() else None,
        "metrics": str(results_dir / METRICS_FILE),
    }


def improves(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


class _Window:
    """Running means of the logged scalars between two training records (kept on the device: no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int | torch.Tensor] = {}
        self.samples: dict[str, int] = {}
        self.steps, self.seconds = 0, 0.0
        self.skipped = 0
        """Steps skipped for a non-finite loss (``train.on_nonfinite: skip``)."""

    def count(self, names: list[str]) -> None:
        """A global batch (every process's samples), by the name of each sample's dataset."""
        for name in names:
            self.samples[name] = self.samples.get(name, 0) + 1

    def sample_counts(self, per_source: bool) -> dict[str, int]:
        """``samples/<dataset>``: the samples each training dataset gave since the last record (when named)."""
        return {f"samples/{name}": count for name, count in self.samples.items()} if per_source else {}

    def add(self, values: dict[str, torch.Tensor], step_seconds: float | None = None,
            keep: torch.Tensor | None = None) -> None:
        """``keep``: a device flag; values flagged False (a skipped step's NaN) count neither in sums nor counts."""
        for key, value in values.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            if keep is not None:
                value = torch.where(keep, value, 0.0)
            self.sums[key] = self.sums.get(key, 0) + value
            self.counts[key] = self.counts.get(key, 0) + (1 if keep is None else keep.float())
        if step_seconds is not None:
            self.steps, self.seconds = self.steps + 1, self.seconds + step_seconds

    def means(self) -> dict[str, float]:
        return {key: (total / self.counts[key]).item() for key, total in self.sums.items()}


def peak_gpu_memory(device: torch.device) -> dict[str, float]:
    """``gpu_mem``: the most CUDA memory tensors held since the last record, in GiB (nothing on other devices)."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"gpu_mem": peak}


def loader_workers(setting: int | str) -> int:
    """``data.num_workers``: ``auto`` leaves a core to each training process of this machine and uses the rest
    (at most 8), and at least one worker, so loading overlaps the step."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, min(8, per_process - 1))


def _metric(metrics: dict[str, Any], name: str) -> float:
    if name not in metrics:
        raise KeyError(f"train.best_metric: {name!r} is not among the validation metrics {sorted(metrics)}")
    return float(metrics[name])


def _check(cfg: TrainSpec, batch_size: int) -> None:
    at_least = {"train.grad_accum_steps": (cfg.grad_accum_steps, 1), "train.log_every": (cfg.log_every, 1),
                "train.checkpoint_every": (cfg.checkpoint_every, 1), "train.eval_every": (cfg.eval_every, 0),
                "train.max_steps": (cfg.max_steps, 0), "data.batch_size": (batch_size, 1),
                "train.phases_per_epoch": (1 if cfg.phases_per_epoch is None else cfg.phases_per_epoch, 1)}
    for key, (value, minimum) in at_least.items():
        if value < minimum:
            raise ValueError(f"{key}: {value} must be at least {minimum}")

