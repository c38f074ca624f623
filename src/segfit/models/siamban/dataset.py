"""Training pairs as tensors: two augmented crops (CHW float32, RGB 0–255) and the point targets of the search."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segfit.data.formats.tracking import open_tracking_split
from segfit.data.pairs import PairPool, sample_pair
from segfit.models.siamban.model import score_size
from segfit.models.siamban.spec import SiambanTargetSpec
from segfit.models.siamban.targets import point_targets
from segfit.spec.tracking import TrackingDataSpec


def pair_pool(data: TrackingDataSpec, seed: int) -> PairPool:
    """The training datasets' pool; prints each dataset's sequences, videos and picks per epoch (the pairs each
    dataset gives are logged as ``samples/<name>``)."""
    splits = data.train.datasets
    pool = PairPool([open_tracking_split(split) for split in splits], data.train, seed)
    for name, split, counts in zip(pool.names, splits, pool.counts()):
        print(f"train data {name} ({split.format} {split.images}): {counts['sequences']} sequences in "
              f"{counts['videos']} videos, {counts['picks']} picks per epoch (frame_range {split.frame_range})")
    print(f"train data: {len(pool)} pairs per epoch, negative pairs {data.train.neg:g}, grey {data.train.gray:g}")
    return pool


class PairDataset(Dataset):
    def __init__(self, pool: PairPool, data: TrackingDataSpec, targets: SiambanTargetSpec):
        self.pool, self.data, self.targets = pool, data, targets

    def __len__(self) -> int:
        return len(self.pool)

    def source_name(self, key: tuple[int, int]) -> str:
        """The training dataset of item ``key`` (the engine logs pair counts per dataset by it)."""
        return self.pool.source_name(key)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        data, t = self.data, self.targets
        pair = sample_pair(self.pool, index, seed, data.train, data.template_size, data.search_size)
        labels, loc = point_targets(pair["box"], score_size(data.search_size), data.search_size, pair["negative"],
                                    np.random.default_rng([seed, 2]), t.pos_num, t.total_num, t.neg_num)
        return {"template": torch.from_numpy(pair["template"].transpose(2, 0, 1).copy()),
                "search": torch.from_numpy(pair["search"].transpose(2, 0, 1).copy()),
                "labels": torch.from_numpy(labels), "loc": torch.from_numpy(loc)}
