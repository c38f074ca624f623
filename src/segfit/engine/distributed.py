"""Device choice and data-parallel training across processes started by ``torchrun``.

One process per device; ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous
address) in each process's environment. Without them (or with ``WORLD_SIZE=1``) everything here is a no-op.

Data parallelism without a model wrapper: the processes start from rank 0's weights, each runs the recipe's
step on its own samples, and the gradients are averaged before every optimizer step. Recipes therefore get
the plain model (its attributes and sub-modules as they are), in training and in evaluation alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

# Rank 0 evaluates while the other ranks wait at a collective; a long validation must not time them out.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
BUCKET_ELEMENTS = 2**24  # gradients all-reduced together (64 MB in fp32)


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


def broadcast_model(model: nn.Module, dist: Dist) -> None:
    """Give every process rank 0's parameters and buffers (a random initialisation differs between ranks)."""
    if not dist.active:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch_dist.broadcast(tensor, src=0)


def average_gradients(params: list[nn.Parameter], dist: Dist) -> None:
    """Replace each gradient by its mean over the processes, once per optimizer step (after all accumulation).

    This is what DDP computes, done after the backward passes instead of during them: it works whatever the
    recipe's forward does (calls into sub-modules, several forward passes per step, parts left unused on some
    steps). A gradient missing on some ranks counts as zero there; one missing on all ranks stays missing.
    """
    if not dist.active:
        return
    device = params[0].device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    torch_dist.all_reduce(present)
    grads = []
    for param, count in zip(params, present.tolist()):
        if count:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        torch_dist.all_reduce(flat)
        flat /= dist.world_size
        for grad, reduced in zip(bucket, flat.split([g.numel() for g in bucket])):
            grad.copy_(reduced.view_as(grad))


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive runs of same-dtype tensors of up to BUCKET_ELEMENTS elements: few, large all-reduces."""
    buckets: list[list[torch.Tensor]] = []
    size = 0
    for tensor in tensors:
        if not buckets or tensor.dtype != buckets[-1][0].dtype or size + tensor.numel() > BUCKET_ELEMENTS:
            buckets.append([])
            size = 0
        buckets[-1].append(tensor)
        size += tensor.numel()
    return buckets


def all_reduce_mean(values: dict[str, float], device: torch.device, dist: Dist) -> dict[str, float]:
    """Mean of each scalar over ranks (every rank must pass the same keys)."""
    if not dist.active or not values:
        return values
    keys = sorted(values)  # the same order on every rank, whatever order each built its dict in
    packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(packed)
    means = dict(zip(keys, (packed / dist.world_size).tolist()))
    return {key: means[key] for key in values}


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
