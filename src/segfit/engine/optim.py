"""AdamW or SGD over the recipe's parameter groups, and the learning-rate schedules (stepped once per optimizer step).

Weight-decay rule: decay pulls weights towards zero, which regularises matrices and kernels but distorts
parameters that are scales, shifts or lookup positions. So no weight decay on parameters with at most one
dimension (norm weights, biases, scalars) and on parameters whose name contains ``pos_embed``, ``position`` or
``positional`` (position embeddings); every other trained parameter gets ``optim.weight_decay``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from segfit.engine.recipe import ParamGroup
from segfit.spec.schema import OptimSpec

NO_DECAY_NAME_PARTS = ("pos_embed", "position", "positional")


def takes_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not any(part in name for part in NO_DECAY_NAME_PARTS)


def build_optimizer(groups: list[ParamGroup], spec: OptimSpec) -> torch.optim.Optimizer:
    """``spec.optimizer`` with each recipe group split into a decayed and a non-decayed group (both keep the group's
    ``name``). A group marked ``unfrozen_later`` keeps its frozen parameters: they get no gradient, so no update
    and no optimizer state, until the recipe's ``before_step`` lets them train."""
    if len(spec.betas) != 2:
        raise ValueError(f"train.optim.betas: expected two values (beta1, beta2), got {spec.betas}")
    owner: dict[int, str] = {}
    torch_groups = []
    for group in groups:
        trainable = [(n, p) for n, p in group["params"] if p.requires_grad or group.get("unfrozen_later")]
        for name, param in trainable:
            if id(param) in owner:
                raise ValueError(
                    f"parameter {name} is in two parameter groups: {owner[id(param)]!r} and {group['name']!r}"
                )
            owner[id(param)] = group["name"]
        decay = [p for n, p in trainable if takes_weight_decay(n, p)]
        no_decay = [p for n, p in trainable if not takes_weight_decay(n, p)]
        for params, weight_decay in ((decay, spec.weight_decay), (no_decay, 0.0)):
            if params:
                torch_groups.append(
                    {"name": group["name"], "params": params, "lr": group["lr"], "weight_decay": weight_decay}
                )
    if not torch_groups:
        raise ValueError("no trainable parameters: every parameter of recipe.param_groups() has requires_grad=False")
    if spec.optimizer == "sgd":
        return torch.optim.SGD(torch_groups, lr=spec.base_lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    betas = (spec.betas[0], spec.betas[1])
    return torch.optim.AdamW(torch_groups, lr=spec.base_lr, betas=betas, weight_decay=spec.weight_decay)


def lr_factor(step: int, spec: OptimSpec, max_steps: int) -> float:
    """Multiplier of each group's initial lr for the optimizer step that follows ``step`` completed steps.

    A linear warm-up ramps so that step ``k`` (1-based) of ``warmup_steps`` uses ``k / warmup_steps``; a log
    warm-up goes geometrically from ``warmup_start_ratio`` (its first step) towards 1 (reached after it, as pysot's
    step warm-up). The schedule proper then runs over the remaining steps: cosine reaches ``min_lr_ratio`` at
    ``max_steps``, log reaches it at the last step (pysot's log schedule: evenly spaced in log lr, both ends
    included), multistep multiplies by ``gamma`` at each milestone (as ``torch.optim.lr_scheduler.MultiStepLR``),
    poly decays as (1 − progress)^power to 0 at ``max_steps``. With ``lr_step_every`` = n, every count (step, warm-up, max_steps, milestones) is taken in units of n steps.
    """
    n = spec.lr_step_every
    step, warmup_steps, max_steps = step // n, spec.warmup_steps // n, max(1, max_steps // n)
    warmup = 1.0
    if step < warmup_steps:
        warmup = (spec.warmup_start_ratio ** (1 - step / warmup_steps) if spec.warmup == "log"
                  else (step + 1) / warmup_steps)
    if spec.scheduler == "constant":
        return warmup
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, max_steps - warmup_steps)))
    if spec.scheduler == "cosine":
        return warmup * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    if spec.scheduler == "log":
        last = min(1.0, max(0.0, (step - warmup_steps) / max(1, max_steps - warmup_steps - 1)))
        return warmup * spec.min_lr_ratio ** last
    if spec.scheduler == "multistep":
        return warmup * spec.gamma ** sum(step >= m // n for m in spec.milestones)
    if spec.scheduler == "poly":
        return warmup * (1 - progress) ** spec.power
    raise ValueError(f"train.optim.scheduler: unknown schedule {spec.scheduler!r}; known: constant, cosine, log, "
                     "multistep, poly")


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: OptimSpec, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    # A plain function (not a callable object) keeps the spec out of the scheduler's state_dict, so a resumed
    # run follows the schedule of its current spec at the restored step.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, spec, max_steps))


def apply_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set every group's lr from the schedule at the scheduler's current step.

    A restored optimizer carries the lr its run computed; when the run is resumed with a longer ``max_steps``
    the schedule has changed, and the next step must use the new schedule's value.
    """
    for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
