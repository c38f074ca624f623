"""Sharded evaluation of Mask2Former (engine/evaluation.py): the halves of a split, merged, score as the whole."""

import pytest
from m2f_tiny import tiny_spec_overrides

from segfit.engine.evaluation import Shard
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import load_spec


@pytest.mark.parametrize("kind", ["semantic", "instance", "panoptic"])
def test_evaluation_shards_merge_to_the_whole_split(synthetic, tmp_path, kind):
    recipe = Mask2FormerRecipe(load_spec(None, tiny_spec_overrides(kind, synthetic(kind), tmp_path)))
    model = recipe.build_model().eval()
    whole = recipe.evaluate(model, "val")
    halves = [recipe.evaluate_shard(model, "val", Shard(rank, 2), None) for rank in (0, 1)]
    assert [half["evaluated"] for half in halves] == [1, 1]
    merged = recipe.merge_evaluation(halves, "val", None)
    # the same images through the same code in this process: counts (confusion, matches, COCO records) equal; PQ's
    # per-class IoU sums may add in another order
    assert merged.keys() == whole.keys()
    for key, value in whole.items():
        assert merged[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12, nan_ok=True)), key
