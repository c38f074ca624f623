"""The training data order: batches from one or several datasets, seeded, resumable, split across processes.

A resumed run sees exactly the batches an uninterrupted one would, whatever the number of loader workers. Several
datasets mix as the official SAM 2 trainer mixes them (``TorchTrainMixedDataset``): each has its own batch size,
every batch comes from one dataset, drawn with probability proportional to the batches it has left this epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def mix_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from integers (neighbouring keys give unrelated seeds)."""
    return int(np.random.SeedSequence([k % 2**64 for k in keys]).generate_state(1)[0])


@dataclass(frozen=True)
class Source:
    """One training dataset: its items take ``(index, sample_seed)``; its batches hold ``batch_size`` of them per
    process. ``repeat_factor`` r shows each sample r times per epoch on average (⌊r⌋ times, once more with
    probability r − ⌊r⌋, drawn afresh every epoch: Detectron2's repeat factors).

    A dataset that mixes several datasets within its batches (SiamBAN's pairs) may name each item's dataset,
    ``source_name((index, sample_seed)) -> str``: the log then counts samples by those names instead of ``name``."""

    name: str
    dataset: Dataset
    batch_size: int
    repeat_factor: float = 1.0


class MixedDataset(Dataset):
    """Several sources behind one dataset: an item is ``(source, index, sample_seed)``."""

    def __init__(self, sources: Sequence[Source]):
        if not sources:
            raise ValueError("no training dataset")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"training datasets: names {names} must differ (they label the logged sample counts)")
        for s in sources:
            if s.batch_size < 1 or not s.repeat_factor > 0:
                raise ValueError(f"training dataset {s.name!r}: batch_size {s.batch_size} must be at least 1 and "
                                 f"repeat_factor {s.repeat_factor} above 0")
        self.sources = list(sources)

    def __len__(self) -> int:
        return sum(len(s.dataset) for s in self.sources)  # type: ignore[arg-type]

    @property
    def named(self) -> bool:
        """Whether samples come from several named datasets (sources, or a source naming its items' datasets):
        then the log counts ``samples/<name>``."""
        return len(self.sources) > 1 or any(hasattr(s.dataset, "source_name") for s in self.sources)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        source, index, seed = key
        return self.sources[source].dataset[(index, seed)]


@dataclass(frozen=True)
class _Epoch:
    """One epoch's plan: each batch's source and the positions of its samples in that source's order."""

    sources: list[int]
    starts: list[int]
    orders: list[list[int]]


class MixedBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields this process's batches of ``(source, index, sample_seed)`` forever, epoch after epoch.

    Epoch ``e``, from ``(seed, e)`` alone: each source's indices repeated by its factor and shuffled, cut into global
    batches of ``batch_size × world_size`` (a remainder is left out of that epoch), and the batches of all sources
    put in a random order, the same on every process, so all processes train on the same source at each step. Rank
    ``r`` takes the ``r``-th slice of each global batch. A sample's seed comes from ``(seed, epoch, source, its
    position in the source's order)``: it depends neither on workers, nor on restarts, nor on the rank.

    The state ``(epoch, batch)`` counts batches the trainer *consumed* (``advance``), not batches iterated: a
    DataLoader prefetches, so iteration runs ahead of training. ``iter()`` starts at the current state.
    ``phases_per_epoch`` cuts each epoch into that many phases of equal batch counts (the official trainer's
    checkpoint and validation cadence); ``phases_done`` counts the phase ends consumed so far.
    """

    def __init__(self, dataset: MixedDataset, seed: int, rank: int = 0, world_size: int = 1,
                 phases_per_epoch: int = 1):
        self.sources, self.seed, self.rank, self.world_size = dataset.sources, seed, rank, world_size
        self.sizes = [len(s.dataset) for s in self.sources]  # type: ignore[arg-type]
        for source, size in zip(self.sources, self.sizes):
            if size * math.floor(source.repeat_factor) < source.batch_size * world_size:
                raise ValueError(f"training dataset {source.name!r} has {size} samples (repeat factor "
                                 f"{source.repeat_factor}): fewer than one batch of {source.batch_size} for each of "
                                 f"the {world_size} processes")
        self.phases_per_epoch = phases_per_epoch
        self.epoch, self.batch = 0, 0
        self._cached: tuple[int, _Epoch] | None = None

    def plan(self, epoch: int) -> _Epoch:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._plan(epoch))
        return self._cached[1]

    def _plan(self, epoch: int) -> _Epoch:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        orders, labels = [], []
        for index, (source, size) in enumerate(zip(self.sources, self.sizes)):
            whole, fraction = divmod(source.repeat_factor, 1.0)
            copies = torch.full((size,), int(whole)) + (torch.rand(size, generator=gen) < fraction).long()
            order = torch.arange(size).repeat_interleave(copies)
            orders.append(order[torch.randperm(len(order), generator=gen)].tolist())
            labels += [index] * (len(order) // (source.batch_size * self.world_size))
        # a random order of all batches: each step draws a source with probability ∝ the batches it has left
        sources = [labels[i] for i in torch.randperm(len(labels), generator=gen).tolist()]
        done, starts = [0] * len(self.sources), []
        for source in sources:  # the k-th batch of a source takes the k-th slice of its order
            starts.append(done[source] * self.sources[source].batch_size * self.world_size)
            done[source] += 1
        return _Epoch(sources, starts, orders)

    def batches_per_epoch(self) -> int:
        return len(self.plan(self.epoch).sources)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        epoch, batch = self.epoch, self.batch
        while True:
            plan = self.plan(epoch)
            for position in range(batch, len(plan.sources)):
                yield self._batch(epoch, plan, position)
            epoch, batch = epoch + 1, 0

    def _batch(self, epoch: int, plan: _Epoch, position: int) -> list[tuple[int, int, int]]:
        size = self.sources[plan.sources[position]].batch_size
        return self._items(epoch, plan, position, self.rank * size, size)

    def _items(self, epoch: int, plan: _Epoch, position: int, first: int, count: int) -> list[tuple[int, int, int]]:
        """Items ``first`` to ``first + count`` of global batch ``position`` (rank r's slice starts at r × size)."""
        source = plan.sources[position]
        order, start = plan.orders[source], plan.starts[position] + first
        return [(source, order[p], mix_seed(self.seed, epoch, source, p)) for p in range(start, start + count)]

    def next_source(self) -> Source:
        """The source of the next batch the trainer will consume."""
        return self.sources[self.plan(self.epoch).sources[self.batch]]

    def next_names(self) -> list[str]:
        """The dataset name of each sample of the next global batch (every process's): its source's ``name``, or
        the name the source's dataset gives the item (``source_name``)."""
        source = self.next_source()
        count = source.batch_size * self.world_size
        name_of = getattr(source.dataset, "source_name", None)
        if name_of is None:
            return [source.name] * count
        return [name_of(item[1:]) for item in self._items(self.epoch, self.plan(self.epoch), self.batch, 0, count)]

    def advance(self, num_batches: int = 1) -> None:
        """Record that the trainer consumed ``num_batches`` more batches."""
        for _ in range(num_batches):
            self.batch += 1
            if self.batch == self.batches_per_epoch():
                self.epoch, self.batch = self.epoch + 1, 0

    @property
    def epochs_done(self) -> float:
        """Data epochs consumed, with the fraction of the current one."""
        return self.epoch + self.batch / self.batches_per_epoch()

    @property
    def phases_done(self) -> int:
        """Phase ends consumed (``phases_per_epoch`` per epoch, of ⌈batches / phases⌉ batches each, the last
        one shorter)."""
        per_phase = math.ceil(self.batches_per_epoch() / self.phases_per_epoch)
        return self.epoch * self.phases_per_epoch + self.batch // per_phase

    def global_batch_sizes(self) -> list[int]:
        """Each source's global batch (its batch size × the processes): with the seed, what the order depends on."""
        return [source.batch_size * self.world_size for source in self.sources]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "global_batch": self.global_batch_sizes()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the saved position: the same samples follow at any number of processes that keeps the global
        batches (e.g. 2 processes × 4 resumed as 1 × 8); other global batches cut the epochs into other batches."""
        if "batch" not in state:
            raise ValueError(f"checkpoint sampler state {state} is from an older segfit, which ordered the data "
                             "otherwise: it cannot resume exactly; start afresh (train.resume=false)")
        saved = state.get("global_batch", self.global_batch_sizes())
        if list(saved) != self.global_batch_sizes():
            warnings.warn(f"resuming with global batches of {self.global_batch_sizes()} samples (batch size × "
                          f"{self.world_size} processes) where the run had {list(saved)}: the data order from here "
                          "on is not the one the run would have followed; keep batch size × processes to continue "
                          "it exactly", stacklevel=2)
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
