"""Validation during training, on one process or sharded across all of them.

A recipe's ``evaluate`` returns finished metrics (a mean IoU, a J&F), which do not merge across processes. A
recipe that also has the two methods below evaluates sharded: process r evaluates the r-th contiguous part of the
split and returns a picklable *state* of sums and counts (or per-sample values); the engine gathers every state
in memory and the recipe finishes the metrics from them, on every process alike::

    def evaluate_shard(self, model, split, shard: Shard, samples_dir) -> Any: ...
    def merge_evaluation(self, states: list[Any], split, samples_dir) -> dict[str, float]: ...

``evaluate(model, split, samples_dir)`` is then ``merge_evaluation([evaluate_shard(model, split, Shard(0, 1),
samples_dir)], split, samples_dir)``: the same numbers from any number of processes, for an evaluation without
random draws (each process starts from the same seed, so random draws would differ from one process's). Other
recipes evaluate on process 0 while the others wait for its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segfit.engine.checkpoint import isolated_rng
from segfit.engine.distributed import Dist, all_gather
from segfit.engine.fsdp import full_state_dict, is_sharded


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count`` evaluates items ``[index·n/count, (index+1)·n/count)`` of ``n``."""

    index: int = 0
    count: int = 1

    def range(self, n: int) -> range:
        """This shard's items of ``n``: contiguous, so the shards' results in rank order are one process's order."""
        return range(self.index * n // self.count, (self.index + 1) * n // self.count)


def evaluate(recipe: Any, model: nn.Module, samples_dir: Path | None, seed: int, dist: Dist = Dist()) -> dict[str, Any]:
    """The recipe's validation metrics on every process, in eval mode without gradients (fp32, as ``segfit
    evaluate`` computes them); overlays go to ``samples_dir`` from process 0.

    Evaluation runs from a fixed seed in its own RNG state: its numbers do not depend on when it runs and the
    training stream does not depend on whether it ran. A sharded (FSDP) model is gathered into a whole copy on
    every process first: recipes evaluate a plain model, and its forward then needs no other process.
    """
    samples_dir = samples_dir if dist.is_main else None
    model.eval()
    try:
        with torch.no_grad():
            whole = _whole(recipe, model, seed)
        with torch.no_grad(), isolated_rng(seed):
            if dist.active and hasattr(recipe, "evaluate_shard"):
                state = recipe.evaluate_shard(whole, "val", Shard(dist.rank, dist.world_size), samples_dir)
                metrics = recipe.merge_evaluation(all_gather(state, dist), "val", samples_dir)
            else:
                metrics = recipe.evaluate(whole, "val", samples_dir=samples_dir) if dist.is_main else None
                metrics = all_gather(metrics, dist)[0]
    finally:
        model.train()
    return {key: value.item() if hasattr(value, "item") else value for key, value in metrics.items()}


def _whole(recipe: Any, model: nn.Module, seed: int) -> nn.Module:
    """``model`` itself, or for a sharded one a plain copy with its gathered weights (a collective), built outside
    the training and evaluation RNG streams."""
    if not is_sharded(model):
        return model
    state = full_state_dict(model)
    with isolated_rng(seed):
        copy = recipe.build_model().to(next(iter(state.values())).device)
    copy.load_state_dict(state)
    return copy.eval()
