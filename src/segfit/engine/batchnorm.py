"""BatchNorm over the global batch of a data-parallel run (``train.sync_batchnorm``), on CPUs (gloo) and GPUs alike.

A training BatchNorm normalises with its batch's mean and variance, so under DDP each process would normalise with
its own share of the batch: N processes × batch B would not train as 1 process × batch N·B. ``GlobalBatchNorm``
sums each channel's values and squared deviations over the processes (two all-reduces, differentiable: the backward
pass all-reduces their gradients, as every process's loss depends on every process's inputs) and updates the running
statistics with the global mean and unbiased variance, as BatchNorm does with one batch. PyTorch's ``SyncBatchNorm``
does the same on GPUs only (it raises on CPU tensors). In evaluation mode, and in one process, it is BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: the sum feeds every process's loss."""

    @staticmethod
    def forward(ctx: object, tensor: Tensor) -> Tensor:  # type: ignore[override]
        total = tensor.clone()
        torch_dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:  # type: ignore[override]
        total = grad.clone()
        torch_dist.all_reduce(total)
        return total


def sum_over_processes(tensor: Tensor) -> Tensor:
    return _SumOverProcesses.apply(tensor)


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (any input of N×C×…) whose training statistics are those of every process's batch together."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected an input of N×C×… (at least 2 dimensions), got {input.dim()}")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and torch_dist.is_initialized() and torch_dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float()
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_count = torch.full((1,), x.numel() / x.shape[1], device=x.device)
        sums = sum_over_processes(torch.cat([x.sum(dims), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = sum_over_processes((centred * centred).sum(dims)) / count  # two passes: no cancellation
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        """As BatchNorm: the running variance takes the unbiased variance; ``momentum=None``: a cumulative mean."""
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(var * count / (count - 1), alpha=momentum)


def globalize_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm layer under ``module`` by a ``GlobalBatchNorm`` sharing its parameters and buffers
    (optimizers and checkpoints see the same tensors under the same names); the number replaced."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, (GlobalBatchNorm, nn.SyncBatchNorm)):
            module.add_module(name, _global_copy(child))
            replaced += 1
        else:
            replaced += globalize_batchnorm(child)
    return replaced


def _global_copy(layer: _BatchNorm) -> GlobalBatchNorm:
    copy = GlobalBatchNorm(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats,
                           device="meta")
    for name, tensor in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
        setattr(copy, name, tensor)
    return copy.train(layer.training)
