"""Fully sharded data parallelism (PyTorch's FSDP2, ``fully_shard``): ``train.distributed: fsdp``.

Each process keeps 1/N of every parameter, of its gradient and of its optimizer state; a unit's parameters are
all-gathered just before it runs and freed after it (again in the backward pass), and its gradients are
reduce-scattered, so each process ends the backward pass holding the mean gradient of its own shard only.

Which modules make the units is family knowledge: ``recipe.fsdp_blocks(model)`` names them (SAM 2: the image
encoder's blocks; Mask2Former: the Swin blocks and the decoder layers), each one unit, gathered and freed as a whole.
Everything else (stems, heads, the prompt encoder, the mask decoder) belongs to the root unit, the ``TrainingStep``
(as for DDP, the step is wrapped, not the model), so recipes keep calling the plain model's sub-modules.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from segfit.engine.distributed import Dist, TrainingStep


def fsdp_blocks(recipe: Any, model: nn.Module) -> list[nn.Module]:
    """The recipe's units (``fsdp_blocks``, optional): without them the whole model is one unit, which still shards
    the optimizer state and gradients but gathers every parameter for the whole step."""
    name_blocks = getattr(recipe, "fsdp_blocks", None)
    return [] if name_blocks is None else list(name_blocks(model))


def fully_sharded(step: TrainingStep, blocks: list[nn.Module], dist: Dist, device: torch.device) -> TrainingStep:
    """``step`` with each of ``blocks`` and then the rest sharded over the ``dist.world_size`` processes, in place.

    FSDP does not broadcast, so every process first takes rank 0's weights and buffers (each built the model from
    its own seed). Parameters a step leaves out (SAM 2 box prompts leave the point embeddings out) get a zero
    gradient, reduce-scattered with the others: a reduce-scatter must have the same parameters on every process,
    and which ones a process reached differs between processes.
    """
    for tensor in [*step.parameters(), *step.buffers()]:
        torch_dist.broadcast(tensor.detach(), src=0)
    mesh = init_device_mesh(device.type, (dist.world_size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(step, mesh=mesh)
    step.set_reduce_scatter_unused_params(True)  # type: ignore[operator]  # fully_shard made step an FSDPModule
    return step


def is_sharded(model: nn.Module) -> bool:
    return any(isinstance(param, DTensor) for param in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state_dict with every sharded tensor gathered whole (a collective: every process calls it)."""
    return {key: value.full_tensor() if isinstance(value, DTensor) else value
            for key, value in model.state_dict().items()}


def local_value(value: torch.Tensor) -> torch.Tensor:
    """A replicated DTensor (e.g. the gradient norm of sharded gradients) as a plain tensor."""
    return value.full_tensor() if isinstance(value, DTensor) else value
