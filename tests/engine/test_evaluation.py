"""Sharded evaluation's split of a dataset (engine/evaluation.py)."""

import pytest

from segfit.engine.evaluation import Shard


@pytest.mark.parametrize("n", [0, 1, 5, 8])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_cover_every_item_once_in_order(n, count):
    """Contiguous shards: concatenated in rank order they are one process's order (merged results keep it)."""
    assert [i for index in range(count) for i in Shard(index, count).range(n)] == list(range(n))
    sizes = [len(Shard(index, count).range(n)) for index in range(count)]
    assert max(sizes) - min(sizes) <= 1
