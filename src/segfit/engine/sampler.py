"""An infinite, seeded, resumable sample order: a resumed run sees exactly the samples an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def mix_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from integers (neighbouring keys give unrelated seeds)."""
    return int(np.random.SeedSequence([k % 2**64 for k in keys]).generate_state(1)[0])


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` forever, epoch after epoch, for a dataset whose ``__getitem__`` takes that pair.

    Epoch ``e`` is a permutation of ``range(num_samples)`` drawn from ``(seed, e)``. Rank ``r`` of ``world_size``
    takes the ``r``-th equal slice of it (the remainder is left out of that epoch so all ranks run in step) and the
    sample seed comes from ``(seed, epoch, position in the permutation)``: it depends neither on workers nor on
    restarts.

    The state ``(epoch, position)`` counts samples the trainer *consumed* (``advance``), not samples iterated: a
    DataLoader prefetches, so iteration runs ahead of training. ``iter()`` starts at the current state.
    """

    def __init__(self, num_samples: int, seed: int, rank: int = 0, world_size: int = 1):
        if num_samples < world_size:
            raise ValueError(f"training dataset has {num_samples} samples: fewer than the {world_size} processes")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.per_rank = num_samples // world_size
        self.epoch, self.position = 0, 0

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's dataset indices for ``epoch``, in order."""
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        start = self.rank * self.per_rank
        return order[start : start + self.per_rank].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self._stream(self.epoch, self.position)

    def _stream(self, epoch: int, position: int) -> Iterator[tuple[int, int]]:
        offset = self.rank * self.per_rank  # seeds are keyed by the global position, so ranks never share one
        while True:
            indices = self.epoch_indices(epoch)
            for pos in range(position, self.per_rank):
                yield indices[pos], mix_seed(self.seed, epoch, offset + pos)
            epoch, position = epoch + 1, 0

    def advance(self, num_consumed: int) -> None:
        """Record that the trainer consumed ``num_consumed`` more samples."""
        self.epoch, self.position = divmod(self.epoch * self.per_rank + self.position + num_consumed, self.per_rank)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
