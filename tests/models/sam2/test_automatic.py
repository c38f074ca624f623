"""automatic_map with a fake predictor: point placement, score order, the overlap rule, the region; one real run."""

import numpy as np
import pytest
import torch

from segfit.models.sam2.automatic import automatic_map, grid_points, random_points, stitch_masks
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.predict import Prediction, Sam2Predictor
from segfit.models.sam2.spec import Sam2AutomaticSpec

H, W = 20, 20


def rect(r0, r1, c0, c1, hw=(H, W)):
    """Rows r0..r1 and columns c0..c1, inclusive."""
    mask = np.zeros(hw, dtype=bool)
    mask[r0 : r1 + 1, c0 : c1 + 1] = True
    return mask


# Given out of score order on purpose. Expected with the default threshold 0.15:
# A (0.9) first → id 1; B (0.8) overlaps A on 20 of 120 px (0.167) → skipped;
# D (0.7) overlaps A on 10 of 110 px (0.09) → id 2 on its 100 free px; C (0.5) lies inside D → skipped.
C, A, B, D = rect(10, 19, 10, 19), rect(0, 9, 0, 19), rect(8, 19, 0, 9), rect(9, 19, 10, 19)
MASKS = np.stack([C, A, B, D])
SCORES = np.array([0.5, 0.9, 0.8, 0.7], dtype=np.float32)
EVERYWHERE = np.ones((H, W), dtype=bool)


def test_masks_painted_by_score_with_the_overlap_rule():
    index_map, kept = stitch_masks(MASKS, SCORES, EVERYWHERE, Sam2AutomaticSpec())
    expected = np.zeros((H, W), np.int32)
    expected[A] = 1
    expected[D & ~A] = 2
    assert index_map.dtype == np.int32
    np.testing.assert_array_equal(index_map, expected)
    assert kept == pytest.approx([0.9, 0.7])


def test_overlap_exactly_at_the_threshold_is_accepted_above_is_not():
    first, second = rect(0, 9, 0, 9), rect(9, 18, 0, 9)  # second: 10 of its 100 px taken
    masks, scores = np.stack([first, second]), np.array([0.9, 0.8])
    assert stitch_masks(masks, scores, EVERYWHERE, Sam2AutomaticSpec(overlap_threshold=0.1))[1] == pytest.approx([0.9, 0.8])
    assert stitch_masks(masks, scores, EVERYWHERE, Sam2AutomaticSpec(overlap_threshold=0.09))[1] == pytest.approx([0.9])
    # threshold 0: only disjoint masks
    index_map, kept = stitch_masks(masks, scores, EVERYWHERE, Sam2AutomaticSpec(overlap_threshold=0.0))
    assert kept == pytest.approx([0.9]) and set(np.unique(index_map)) == {0, 1}


def test_ties_keep_point_order_and_masks_fully_covered_are_skipped():
    same = np.stack([rect(0, 4, 0, 4), rect(0, 4, 0, 4)])
    index_map, kept = stitch_masks(same, np.array([0.5, 0.5]), EVERYWHERE, Sam2AutomaticSpec(overlap_threshold=1.0))
    assert kept == [0.5] and index_map[0, 0] == 1


def test_min_score_and_min_area():
    _, kept = stitch_masks(MASKS, SCORES, EVERYWHERE, Sam2AutomaticSpec(min_score=0.75))
    assert kept == pytest.approx([0.9])
    index_map, kept = stitch_masks(MASKS, SCORES, EVERYWHERE, Sam2AutomaticSpec(min_area=150))  # only A has ≥ 150 px
    assert kept == pytest.approx([0.9]) and np.array_equal(index_map > 0, A)


def test_region_cuts_masks_before_area_and_overlap():
    region = rect(0, 19, 0, 14)
    index_map, kept = stitch_masks(MASKS, SCORES, region, Sam2AutomaticSpec())
    assert not index_map[:, 15:].any()
    # inside the region D has 55 px of which 5 are taken by A (0.09) → still placed
    assert kept == pytest.approx([0.9, 0.7])
    np.testing.assert_array_equal(index_map == 2, rect(10, 19, 10, 14))


class FakePredictor:
    """The mask of a click is the first of ``masks`` that contains it (empty if none), with that mask's score."""

    def __init__(self, masks, scores):
        self.masks, self.scores = masks, scores
        self.batches, self.multimask, self.images_set = [], [], 0

    def set_image(self, image):
        self.images_set += 1

    def predict(self, points, labels, boxes=None, mask_input=None, multimask_output=False, best_only=False):
        assert best_only and boxes is None and mask_input is None
        self.multimask.append(multimask_output)
        assert points.shape[1:] == (1, 2) and torch.equal(labels, torch.ones(len(points), 1, dtype=torch.long))
        self.batches.append(len(points))
        chosen = [self._lookup(int(x), int(y)) for x, y in points[:, 0].tolist()]
        masks = torch.from_numpy(np.stack([m for m, _ in chosen]))[:, None]
        scores = torch.tensor([[s] for _, s in chosen])
        return Prediction(masks=masks, logits=masks.float(), scores=scores, low_res=masks.float())

    def _lookup(self, x, y):
        for mask, score in zip(self.masks, self.scores):
            if mask[y, x]:
                return mask, float(score)
        return np.zeros_like(self.masks[0]), 0.0


def test_grid_points_are_cell_centres_inside_the_region():
    region = np.ones((40, 60), dtype=bool)
    region[:, 40:] = False
    points = grid_points(region, 5)  # ⌈√5⌉ = 3 → 3×3 cells; the right column of centres is outside
    expected = [[x, y] for y in (6, 20, 33) for x in (10, 30)]
    np.testing.assert_array_equal(points, np.array(expected, dtype=np.float32))


def test_random_points_are_distinct_seeded_and_inside_the_region():
    region = np.zeros((40, 60), dtype=bool)
    region[5:15, 20:30] = True
    points = random_points(region, 30, seed=3)
    assert points.shape == (30, 2) and points.dtype == np.float32
    assert region[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    assert len({tuple(p) for p in points.tolist()}) == 30
    np.testing.assert_array_equal(points, random_points(region, 30, seed=3))
    assert not np.array_equal(points, random_points(region, 30, seed=4))
    assert len(random_points(region, 500, seed=0)) == 100  # capped at the region's size


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_automatic_map_end_to_end_with_a_fake_predictor(batch_size):
    fake = FakePredictor([A, D, B, C], [0.9, 0.7, 0.8, 0.5])
    image = np.zeros((H, W, 3), np.uint8)
    result = automatic_map(fake, image, config=Sam2AutomaticSpec(num_points=9, grid=True, batch_size=batch_size))
    # 3×3 grid over 20×20: columns/rows 3, 10, 16 → clicks land in A (row 3) and in D (rows 10, 16)
    assert fake.images_set == 1 and sum(fake.batches) == 9 and max(fake.batches) <= batch_size
    expected = np.zeros((H, W), np.int32)
    expected[A] = 1
    expected[D & ~A] = 2
    np.testing.assert_array_equal(result.index_map, expected)
    assert result.scores == pytest.approx([0.9, 0.7])
    assert result.points.shape == (9, 2)
    assert all(fake.multimask)  # SAM's automatic masks: the best of three per point


def test_automatic_map_can_ask_for_the_single_mask():
    """A model trained with ``model.multimask_output: false`` (the demo) has untrained multimask outputs: its map
    must come from the single mask (``inference.multimask_output: false``)."""
    fake = FakePredictor([A, D], [0.9, 0.7])
    automatic_map(fake, np.zeros((H, W, 3), np.uint8), config=Sam2AutomaticSpec(num_points=4, batch_size=2),
                  multimask_output=False)
    assert fake.multimask == [False, False]


def test_empty_region_gives_an_empty_map_without_predicting():
    fake = FakePredictor([A], [0.9])
    result = automatic_map(fake, np.zeros((H, W, 3), np.uint8), region=np.zeros((H, W), bool))
    assert not result.index_map.any() and result.scores == [] and fake.images_set == 0 and result.points.shape == (0, 2)


def test_region_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="region"):
        automatic_map(FakePredictor([A], [0.9]), np.zeros((H, W, 3), np.uint8), region=np.ones((5, 5), bool))


def test_config_is_validated():
    with pytest.raises(ValueError, match="overlap_threshold"):
        Sam2AutomaticSpec(overlap_threshold=1.5)
    with pytest.raises(ValueError, match="num_points"):
        Sam2AutomaticSpec(num_points=0)


def test_real_model_run_gives_contiguous_ids():
    predictor = Sam2Predictor(build_sam2("test", image_size=256), 256)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    region = np.zeros((120, 160), bool)
    region[10:110, 20:150] = True
    result = automatic_map(predictor, image, region, Sam2AutomaticSpec(num_points=10, batch_size=4, seed=1))
    assert result.index_map.shape == (120, 160) and result.index_map.dtype == np.int32
    assert result.points.shape == (10, 2)
    ids = np.unique(result.index_map)
    assert list(ids[ids > 0]) == list(range(1, len(result.scores) + 1))
    assert len(result.scores) >= 1 and result.scores == sorted(result.scores, reverse=True)
    assert not result.index_map[~region].any()
