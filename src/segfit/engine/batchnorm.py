"""BatchNorm over the global batch of a data-parallel run (``train.sync_batchnorm``), on CPUs (gloo) and GPUs alike.

A training BatchNorm normalises with its batch's mean and variance, so under DDP each process would normalise with
its own share of the batch: N processes × batch B would not train as 1 process × batch N·B. ``GlobalBatchNorm``
gathers every process's per-channel count, mean and variance (one collective of 2C + 1 numbers per call, and one in
the backward pass, as every process's loss depends on every process's inputs), joins them into the global batch's
mean and variance (Chan's parallel formula: no cancellation) and updates the running statistics with
them, as BatchNorm does with one batch. PyTorch's ``SyncBatchNorm`` does the same on GPUs only (it raises on CPU
tensors). In evaluation mode, and in one process, it is BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _GatherFromProcesses(torch.autograd.Function):
    """Every process's tensor, stacked (rank × …). Backward: the gradient of this process's row summed over the
    processes (each process's loss depends on every row), with one all-reduce (gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx: object, tensor: Tensor) -> Tensor:  # type: ignore[override]
        rows = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
        torch_dist.all_gather(rows, tensor.contiguous())
        return torch.stack(rows)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:  # type: ignore[override]
        total = grad.contiguous().clone()
        torch_dist.all_reduce(total)
        return total[torch_dist.get_rank()]


def gather_from_processes(tensor: Tensor) -> Tensor:
    return _GatherFromProcesses.apply(tensor)


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
        local_mean = x.mean(dims)
        local_var = (x - local_mean.view(shape)).square().mean(dims)  # two passes (CPU's var_mean is 15× slower)
        local_count = torch.full((1,), x.numel() / x.shape[1], device=x.device)
        stats = gather_from_processes(torch.cat([local_count, local_mean, local_var]))
        counts, means, variances = stats[:, :1], stats[:, 1:1 + x.shape[1]], stats[:, 1 + x.shape[1]:]
        count = counts.sum()
        mean = (counts * means).sum(0) / count
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        # x · scale + shift: one pass over the input (and few in the backward), the statistics' gradients per channel
        scale = torch.rsqrt(var + self.eps) * (self.weight if self.affine else 1)
        shift = (self.bias if self.affine else 0) - mean * scale
        return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(input.dtype)

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
