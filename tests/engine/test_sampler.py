"""The batch sampler: epochs are seeded orders of one or several datasets, each batch from one dataset at its own
batch size, ranks get disjoint slices of the same batches, the state resumes exactly (also behind a prefetching
multi-worker DataLoader)."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest
from torch.utils.data import DataLoader, Dataset

from segfit.engine.sampler import MixedBatchSampler, MixedDataset, Source


class Echo(Dataset):
    """Items are their own keys."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key


def mixed(*sources: tuple[int, int, float]) -> MixedDataset:
    """Sources of (size, batch size, repeat factor), named a, b, c..."""
    return MixedDataset([Source("abc"[i], Echo(size), batch, repeat) for i, (size, batch, repeat) in enumerate(sources)])


def take(sampler: MixedBatchSampler, n: int) -> list[list[tuple[int, int, int]]]:
    return list(islice(iter(sampler), n))


def test_one_dataset_epochs_are_fresh_seeded_orders():
    sampler = MixedBatchSampler(mixed((10, 3, 1.0)), seed=5)
    assert sampler.batches_per_epoch() == 3  # the 10th sample waits for another epoch
    batches = take(sampler, 9)
    epochs = [[index for batch in batches[k : k + 3] for _, index, _ in batch] for k in (0, 3, 6)]
    assert all(len(set(e)) == 9 for e in epochs) and epochs[0] != epochs[1] != epochs[2]
    assert batches == take(MixedBatchSampler(mixed((10, 3, 1.0)), seed=5), 9)
    assert batches != take(MixedBatchSampler(mixed((10, 3, 1.0)), seed=6), 9)
    seeds = [seed for batch in batches for _, _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every draw of a sample gets its own seed, also across epochs


def test_each_batch_comes_from_one_dataset_at_its_own_size():
    sampler = MixedBatchSampler(mixed((12, 4, 1.0), (9, 1, 1.0)), seed=0)
    assert sampler.batches_per_epoch() == 3 + 9
    batches = take(sampler, 12)
    assert all(len({s for s, _, _ in b}) == 1 and len(b) == (4 if b[0][0] == 0 else 1) for b in batches)
    per_source = Counter(b[0][0] for b in batches)
    assert per_source == {0: 3, 1: 9}
    assert [b[0][0] for b in batches] != sorted(b[0][0] for b in batches)  # interleaved, not one after the other
    for source, size in ((0, 12), (1, 9)):  # each sample of each source once per epoch
        assert sorted(i for b in batches for s, i, _ in b if s == source) == list(range(size))


def test_repeat_factors_repeat_samples_on_average():
    sampler = MixedBatchSampler(mixed((20, 2, 2.5), (20, 2, 1.0)), seed=1)
    counts = {0: Counter(), 1: Counter()}
    for epoch in range(40):
        for batch in take(sampler, sampler.batches_per_epoch()):
            counts[batch[0][0]].update(i for _, i, _ in batch)
        sampler.advance(sampler.batches_per_epoch())
    assert set(counts[1].values()) == {40}  # factor 1: every sample exactly once per epoch
    assert 2.3 < sum(counts[0].values()) / (20 * 40) < 2.7
    # ⌊2.5⌋ = 2 copies every epoch and a third about every other epoch (an odd total leaves one copy out)
    assert min(counts[0].values()) >= 75 and max(counts[0].values()) <= 120


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_slices_of_the_same_batches(world_size):
    data = mixed((13, 2, 1.0), (7, 1, 1.5))
    streams = [take(MixedBatchSampler(data, 4, rank, world_size), 10) for rank in range(world_size)]
    for step in zip(*streams):
        assert len({batch[0][0] for batch in step}) == 1  # every rank trains on the same dataset at each step
        keys = [(s, seed) for batch in step for s, _, seed in batch]
        assert len(set(keys)) == len(keys)  # no sample draw shared between ranks


def test_a_dataset_smaller_than_one_batch_per_process_is_an_error():
    with pytest.raises(ValueError, match=r"'b' has 3 samples.*one batch of 2 for each of the 2 processes"):
        MixedBatchSampler(mixed((10, 2, 1.0), (3, 2, 1.0)), 0, 0, 2)


def test_datasets_need_distinct_names_and_sane_sizes():
    with pytest.raises(ValueError, match="names"):
        MixedDataset([Source("a", Echo(4), 1), Source("a", Echo(4), 1)])
    with pytest.raises(ValueError, match="'a': batch_size 0"):
        MixedDataset([Source("a", Echo(4), 0)])


def test_state_resumes_the_stream_across_epoch_boundaries():
    data = mixed((7, 2, 1.0), (5, 1, 1.5))
    reference = take(MixedBatchSampler(data, 1, 1, 2), 20)
    for consumed in (0, 2, 3, 4, 11):
        sampler = MixedBatchSampler(data, 1, 1, 2)
        sampler.advance(consumed)
        restored = MixedBatchSampler(data, 1, 1, 2)
        restored.load_state_dict(sampler.state_dict())
        assert take(restored, 20 - consumed) == reference[consumed:]
        assert sampler.next_source().name == "ab"[reference[consumed][0][0]]
    with pytest.raises(ValueError, match="older segfit"):
        MixedBatchSampler(data, 1).load_state_dict({"epoch": 1, "position": 3})


def test_another_number_of_processes_continues_the_order_if_the_global_batch_is_kept():
    """2 processes × 2 resumed as 1 × 4: the same global batches follow; 1 × 2 warns that the order changes."""
    two = [MixedBatchSampler(mixed((12, 2, 1.0)), 1, rank, 2) for rank in range(2)]
    reference = list(zip(*(take(sampler, 8) for sampler in two)))
    for sampler in two:
        sampler.advance(3)
    one = MixedBatchSampler(mixed((12, 4, 1.0)), 1)
    one.load_state_dict(two[0].state_dict())
    assert take(one, 5) == [first + second for first, second in reference[3:]]
    with pytest.warns(UserWarning, match=r"global batches of \[2\] samples .* where the run had \[4\]"):
        MixedBatchSampler(mixed((12, 2, 1.0)), 1).load_state_dict(two[0].state_dict())


def test_phases_cut_each_epoch_into_equal_parts():
    sampler = MixedBatchSampler(mixed((10, 1, 1.0)), seed=0, phases_per_epoch=4)  # 10 batches: phases of 3, 3, 3, 1
    done = []
    for _ in range(20):
        sampler.advance()
        done.append(sampler.phases_done)
    assert done == [0, 0, 1, 1, 1, 2, 2, 2, 3, 4] + [4, 4, 5, 5, 5, 6, 6, 6, 7, 8]
    assert sampler.epochs_done == 2.0


def test_state_counts_consumed_batches_not_prefetched_ones():
    data = mixed((16, 2, 1.0))
    sampler = MixedBatchSampler(data, seed=3)
    loader = iter(DataLoader(data, batch_sampler=sampler, num_workers=2, prefetch_factor=4))
    for _ in range(3):
        next(loader)
        sampler.advance()
    assert sampler.state_dict() == {"epoch": 0, "batch": 3, "global_batch": [2]}  # the workers fetched further
    upcoming = next(loader)

    restored = MixedBatchSampler(data, seed=3)
    restored.load_state_dict(sampler.state_dict())
    first = next(iter(DataLoader(data, batch_sampler=restored)))
    assert [list(map(int, x)) for x in first] == [list(map(int, x)) for x in upcoming]


class Halves(Echo):
    """Mixes two datasets in its batches: even indices are ``even``'s, odd ones ``odd``'s."""

    def source_name(self, key: tuple[int, int]) -> str:
        return ("even", "odd")[key[0] % 2]


def test_names_count_every_process_sample_by_the_dataset_it_names():
    data = MixedDataset([Source("pairs", Halves(12), 3)])
    assert data.named and not mixed((4, 1, 1.0)).named and mixed((4, 1, 1.0), (4, 1, 1.0)).named
    samplers = [MixedBatchSampler(data, 4, rank, 2) for rank in (0, 1)]
    for batches in zip(*(take(s, 4) for s in samplers)):
        names = samplers[0].next_names()
        assert names == samplers[1].next_names()  # every process counts the global batch alike
        assert names == [("even", "odd")[index % 2] for batch in batches for _, index, _ in batch]
        for sampler in samplers:
            sampler.advance()
    assert MixedBatchSampler(mixed((4, 2, 1.0)), 0, 0, 2).next_names() == ["a"] * 4
