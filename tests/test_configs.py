"""Every shipped spec in configs/ loads against the code (a renamed key breaks this test, not a user's run)."""

from pathlib import Path

import pytest

from segfit.spec import load_spec

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path):
    spec = load_spec(path)
    train = spec.data.train
    splits = train.datasets if hasattr(train, "datasets") else [train]  # tracking specs mix several datasets
    assert spec.model.name and all(split != type(split)() for split in splits)  # every training split is set


def test_one_config_per_sam2_size():
    sizes = {load_spec(p).model.size for p in CONFIGS if p.name.startswith("sam2.1_hiera")}
    assert sizes == {"tiny", "small", "base_plus", "large"}
