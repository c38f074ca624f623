"""What the trainer does about a step whose loss is not finite (``train.on_nonfinite``): stop, or skip the step.

Testing every loss on the host would make it wait for every step. So the flags stay on the device, the skip
happens on the device too (the fused AdamW and SGD leave weights and optimizer state untouched when their
``found_inf`` is set, as they do for the fp16 gradient scaler), and the trainer calls ``check`` only where the host
waits anyway (records, evaluations, checkpoints):

- ``stop`` (default): ``check`` raises for the first bad step since the last check, naming its loss terms and
  its batch's files, before anything is logged, evaluated or saved after it: the last checkpoint is the last
  good one, and a run loses at most the steps since it.
- ``skip``: the bad step's update is skipped (its batch is still consumed and the schedule moves on, so the run
  stays the length it was asked to be); ``check`` warns with the same details and returns the skipped steps.

The files come from the batch's ``source`` list when it has one (recipes put their samples' files there).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

class _MicroBatch(NamedTuple):
    step: int
    bad: Tensor
    terms: dict[str, Tensor]
    files: list[str]


def batch_files(batch: Any) -> list[str]:
    """The files of a batch's samples: its ``source`` list when it is a dict with one, else none."""
    source = batch.get("source") if isinstance(batch, dict) else None
    return [str(file) for file in source] if isinstance(source, (list, tuple)) else []


class NonFinite:
    """The loss flags of every micro-batch since the last ``check``, kept on the device."""

    def __init__(self, action: str):
        self.skip = action == "skip"
        self.pending: list[_MicroBatch] = []

    def add(self, terms: dict[str, Tensor], step: int, files: list[str]) -> Tensor:
        """Remember one micro-batch of optimizer step ``step`` (1-based); returns its "loss is finite" flag."""
        if "loss" not in terms:
            raise KeyError(f"recipe.training_step returned {sorted(terms)}: the total loss must be under 'loss'")
        finite = torch.isfinite(terms["loss"].detach())
        values = {key: torch.as_tensor(value).detach().float() for key, value in terms.items()}
        self.pending.append(_MicroBatch(step, ~finite, values, files))
        return finite

    def step_is_bad(self, step: int) -> Tensor:
        """Whether any micro-batch of ``step`` had a non-finite loss, as a device flag."""
        return torch.stack([entry.bad for entry in self.pending if entry.step == step]).any()

    @staticmethod
    def skip_if_bad(optimizer: torch.optim.Optimizer, bad: Tensor | None) -> None:
        """Make the coming ``optimizer.step()`` a no-op when ``bad`` (a device flag: no host wait); None: step."""
        if bad is not None:
            optimizer.found_inf = bad.float()  # read by the fused optimizers (build_optimizer(fused=True))

    def check(self) -> list[int]:
        """Read the flags (one host wait): ``stop`` raises ``FloatingPointError`` naming the first bad step;
        ``skip`` warns and returns the steps skipped since the last check."""
        if not self.pending:
            return []
        flags = torch.stack([entry.bad for entry in self.pending]).tolist()
        bad = [entry for entry, flag in zip(self.pending, flags) if flag]
        self.pending = []
        if not bad:
            return []
        first = bad[0]
        values = ", ".join(f"{key}={float(value):.4g}" for key, value in first.terms.items())
        files = ", ".join(first.files) if first.files else "not named (the batch has no 'source' list)"
        what = f"step {first.step}: the loss is not finite ({values}); the batch's files: {files}"
        if not self.skip:
            raise FloatingPointError(f"{what}. Stopped before logging or saving anything after it: the last "
                                     f"checkpoint is the last good one (train.on_nonfinite=skip skips such steps)")
        steps = sorted({entry.step for entry in bad})
        warnings.warn(f"skipped {len(steps)} step(s) whose loss was not finite ({', '.join(map(str, steps))}); "
                      f"first: {what}", RuntimeWarning, stacklevel=2)
        return steps
