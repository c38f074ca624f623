"""Device choice and data-parallel training across processes started by ``torchrun``.

One process per device; ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous
address) in each process's environment. Without them (or with ``WORLD_SIZE=1``) nothing here starts a process
group or wraps a module.

Data parallelism is PyTorch's ``DistributedDataParallel`` around the training *step*, not the model: recipes call
sub-modules, run several forward passes per step and read model attributes, so ``TrainingStep`` makes
``recipe.training_step(model, batch)`` the forward of a small module and DDP wraps that. Recipes therefore get the
plain model, in training and in evaluation alike, while DDP averages the gradients in buckets during the backward
pass (overlapping it) and gives every process rank 0's weights and buffers.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel

# Rank 0 evaluates while the other ranks wait at a collective; a long validation must not time them out.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False
    """This run created the process group, so it destroys it at the end."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def resolve_device(name: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` → a device; ``auto`` and ``cuda`` pick ``cuda:LOCAL_RANK`` (0 without
    ``torchrun``)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"train.device: {name!r} is not one of auto, cpu, cuda, cuda:N")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"train.device: {name!r} requested, but CUDA is not available (torch {torch.__version__}); use cpu"
        )
    device = torch.device(name if ":" in name else f"cuda:{local_rank()}")
    if device.index >= torch.cuda.device_count():
        visible = torch.cuda.device_count()
        raise ValueError(f"train.device: {device} requested, but only {visible} CUDA device(s) are visible")
    return device


def init_distributed(device: torch.device) -> Dist:
    """Make ``device`` current and join the process group when launched by ``torchrun`` with more than one process
    (gloo on CPU, nccl on CUDA)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)  # so that "the current device" (kernels, RNG, NCCL) is this process's one
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return Dist()
    owns_group = not torch_dist.is_initialized()
    if owns_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), owns_group)


def cleanup(dist: Dist) -> None:
    if dist.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class TrainingStep(nn.Module):
    """``forward(batch)`` is ``recipe.training_step(model, batch)``: the unit DDP wraps (see the module docstring).

    A batch whose loss has no gradient (nothing in it trains, e.g. a SAM 2 clip given whole as masks) gets the same
    loss value made differentiable through ``anchor``, a zero parameter outside the model, so the caller always runs
    the backward pass. Under DDP every process must: the gradient reduction happens inside it, and a process that
    skipped it would leave the others waiting. The anchor adds nothing to the model's gradients: DDP averages them
    with this process's share as zero, and where no process had anything to train they stay ``None`` (so the
    optimizer step is skipped, as in a single process).
    """

    def __init__(self, recipe: Any, model: nn.Module):
        super().__init__()
        self.recipe, self.model = recipe, model
        # one element, not a scalar: FSDP shards parameters along their first dimension
        self.anchor = nn.Parameter(torch.zeros(1, device=next(model.parameters()).device))

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        terms = self.recipe.training_step(self.model, batch)
        if "loss" in terms and not terms["loss"].requires_grad:
            terms = {**terms, "loss": terms["loss"] + 0 * self.anchor.sum()}
        return terms


def data_parallel(step: TrainingStep, dist: Dist, device: torch.device) -> nn.Module:
    """``step`` in DDP when several processes train (its construction broadcasts rank 0's weights and buffers),
    else ``step`` itself.

    ``find_unused_parameters``: which parameters a step reaches changes from step to step (SAM 2 without correction
    clicks leaves the mask-prompt encoder out; a video clip's first frame, the memory; the anchor is reached only by
    batches with nothing to train), so DDP traces the step's graph each time to know which gradients not to wait
    for. Buffers (e.g. positional encodings) are rank 0's at the start of every forward (DDP's default).
    """
    if not dist.active:
        return step
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def gradient_sync(step: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """Around a micro-batch's forward and backward: ``sync=False`` keeps its gradients local (DDP's ``no_sync``;
    FSDP keeps them unsharded), so an optimizer step of several micro-batches reduces once, in the last one's
    backward."""
    if isinstance(step, FSDPModule):
        step.set_requires_gradient_sync(sync)  # every unit of the step
    return step.no_sync() if isinstance(step, DistributedDataParallel) and not sync else nullcontext()


def all_reduce_mean(values: dict[str, float], device: torch.device, dist: Dist) -> dict[str, float]:
    """Mean of each scalar over ranks (every rank must pass the same keys)."""
    if not dist.active or not values:
        return values
    keys = sorted(values)  # the same order on every rank, whatever order each built its dict in
    packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(packed)
    means = dict(zip(keys, (packed / dist.world_size).tolist()))
    return {key: means[key] for key in values}


def loss_divisor(count: float | torch.Tensor, device: torch.device) -> float | torch.Tensor:
    """The divisor of a loss summed over a batch's items (objects, masks, cells) that makes the mean of the processes'
    losses (what DDP's averaged gradients descend) one process's loss over all their batches: the items of every
    process's batch, at least 1, over the number of processes. In one process ``max(count, 1)``.

    A collective (an all-reduce queued on the device, no host sync): every process calls it at the same point of its
    step. Dividing by its own count instead would weigh the items of a process with few of them more.
    """
    if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
        return count.clamp_min(1) if isinstance(count, torch.Tensor) else max(count, 1)
    total = (count.detach().float().clone() if isinstance(count, torch.Tensor)
             else torch.tensor(float(count), device=device))
    torch_dist.all_reduce(total)
    return total.clamp_min(1) / torch_dist.get_world_size()


def any_rank(flag: torch.Tensor, dist: Dist) -> torch.Tensor:
    """A boolean device flag that is True on every rank when it is on one (queued: the host does not wait)."""
    if not dist.active:
        return flag
    flag = flag.float()
    torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    return flag.bool()


def all_gather(obj: Any, dist: Dist) -> list[Any]:
    """One picklable object from every rank (in memory, never through files), indexed by rank."""
    if not dist.active:
        return [obj]
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def barrier(dist: Dist) -> None:
    if dist.active:
        torch_dist.barrier()
