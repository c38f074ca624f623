"""Run under ``torchrun --nproc_per_node 2`` by ``test_global_batchnorm.py``: each process normalises its half of a
fixed batch with ``GlobalBatchNorm`` for two training steps and saves what it got to ``OUT/rank<N>.pt``."""

import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist

from segfit.engine.batchnorm import GlobalBatchNorm


def batch_and_grads(steps: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch of each step (8×3×5×5, channel means away from 0) and the gradient each output gets."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(steps, 8, 3, 5, 5, generator=gen) * torch.tensor([1.0, 3.0, 0.5]).view(1, 1, 3, 1, 1) + 2
    return x, torch.randn(x.shape, generator=gen)


def main(out_dir: Path) -> None:
    torch_dist.init_process_group("gloo")
    rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    xs, grads = batch_and_grads()
    layer = GlobalBatchNorm(3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    saved: dict[str, list[torch.Tensor]] = {"out": [], "input_grad": [], "weight_grad": [], "bias_grad": []}
    for x, grad in zip(xs, grads):
        mine = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        x = x[mine].clone().requires_grad_()
        layer.zero_grad()
        out = layer(x)
        (out * grad[mine]).sum().backward()  # this process's share of the whole batch's sum
        for param in (layer.weight, layer.bias):
            torch_dist.all_reduce(param.grad)  # the sum of the shares, as DDP's mean of the processes' means
        saved["out"].append(out.detach())
        saved["input_grad"].append(x.grad)
        saved["weight_grad"].append(layer.weight.grad.clone())
        saved["bias_grad"].append(layer.bias.grad.clone())
    torch.save({**saved, "running_mean": layer.running_mean, "running_var": layer.running_var,
                "num_batches_tracked": layer.num_batches_tracked}, out_dir / f"rank{rank}.pt")
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
