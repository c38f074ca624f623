"""The resumable sampler: epochs are seeded permutations, ranks get disjoint equal slices, the state resumes exactly
(also behind a prefetching multi-worker DataLoader)."""

from __future__ import annotations

from itertools import islice

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from segfit.engine.sampler import ResumableSampler, mix_seed


def _take(sampler: ResumableSampler, n: int) -> list[tuple[int, int]]:
    return list(islice(iter(sampler), n))


def test_each_epoch_is_a_fresh_seeded_permutation():
    stream = _take(ResumableSampler(10, seed=5), 30)
    epochs = [[i for i, _ in stream[k : k + 10]] for k in (0, 10, 20)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert stream == _take(ResumableSampler(10, seed=5), 30)
    assert stream != _take(ResumableSampler(10, seed=6), 30)
    seeds = [s for _, s in stream]
    assert len(set(seeds)) == 30  # every draw of a sample gets its own seed, also across epochs


def test_epoch_order_comes_from_seed_and_epoch_only():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(mix_seed(5, 1))).tolist()
    assert ResumableSampler(10, seed=5).epoch_indices(1) == order


@pytest.mark.parametrize(("num_samples", "world_size"), [(10, 3), (12, 2), (7, 7)])
def test_ranks_get_disjoint_slices_of_equal_length(num_samples, world_size):
    per_rank = num_samples // world_size
    streams = [_take(ResumableSampler(num_samples, 0, rank, world_size), 2 * per_rank) for rank in range(world_size)]
    for epoch in range(2):
        slices = [{i for i, _ in s[epoch * per_rank : (epoch + 1) * per_rank]} for s in streams]
        assert all(len(sl) == per_rank for sl in slices)
        assert len(set().union(*slices)) == per_rank * world_size  # disjoint
    all_seeds = [seed for s in streams for _, seed in s]
    assert len(set(all_seeds)) == len(all_seeds)


def test_more_ranks_than_samples_is_an_error():
    with pytest.raises(ValueError, match="3 samples: fewer than the 4 processes"):
        ResumableSampler(3, 0, 0, 4)


def test_state_resumes_the_stream_across_epoch_boundaries():
    reference = _take(ResumableSampler(7, seed=1, rank=1, world_size=2), 20)
    for consumed in (0, 2, 3, 4, 11):
        sampler = ResumableSampler(7, seed=1, rank=1, world_size=2)
        sampler.advance(consumed)
        restored = ResumableSampler(7, seed=1, rank=1, world_size=2)
        restored.load_state_dict(sampler.state_dict())
        assert _take(restored, 20 - consumed) == reference[consumed:]
    sampler = ResumableSampler(7, seed=1, rank=1, world_size=2)
    sampler.advance(7)
    assert sampler.state_dict() == {"epoch": 2, "position": 1}  # 3 per rank and epoch


class Echo(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key


def test_state_counts_consumed_batches_not_prefetched_ones():
    sampler = ResumableSampler(16, seed=3)
    loader = iter(DataLoader(Echo(), batch_size=2, sampler=sampler, num_workers=2, prefetch_factor=4))
    consumed = [next(loader) for _ in range(3)]
    for _ in consumed:
        sampler.advance(2)
    assert sampler.state_dict() == {"epoch": 0, "position": 6}  # the workers have fetched further ahead
    upcoming = next(loader)

    restored = ResumableSampler(16, seed=3)
    restored.load_state_dict(sampler.state_dict())
    first = next(iter(DataLoader(Echo(), batch_size=2, sampler=restored)))
    assert [list(map(int, x)) for x in first] == [list(map(int, x)) for x in upcoming]
