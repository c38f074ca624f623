"""Template/search pair sampling and crops: geometry, seeds, negatives, frame range, augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from segfit.data.crops import context_size, crop, map_box
from segfit.data.pairs import PairPool, augmented_crop, sample_pair, target_view
from segfit.data.records import TrackSequence
from segfit.spec.tracking import CropAugmentSpec, TrackingSplitSpec, TrackingTrainDataSpec

STILL = CropAugmentSpec(shift=0, scale=0, blur=0, flip=0, color=0)


def _sequence(name: str, count: int) -> TrackSequence:
    boxes = np.tile([10.0, 10.0, 20.0, 10.0], (count, 1))
    return TrackSequence(name=name, source=name, frames=[f"{name}/{t}.jpg" for t in range(count)], boxes=boxes,
                         visible=np.ones(count, bool))


def test_crop_maps_the_centre_to_the_middle_and_boxes_with_it():
    image = np.zeros((50, 60, 3), np.uint8)
    image[20:30, 10:30] = 255  # a 20 × 10 target, centre (19.5, 24.5)
    patch = crop(image, (19.5, 24.5), 40, 80)
    box = map_box(np.array([9.5, 19.5, 29.5, 29.5]), (19.5, 24.5), (40, 40), 80)
    np.testing.assert_allclose(box, [19.5, 29.5, 59.5, 49.5])
    assert patch[35:45, 25:55].min() > 200 and patch[:25].max() < 60  # the target lands inside the mapped box


def test_target_view_and_unaugmented_crop_put_the_target_at_the_centre(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(tmp_path / "0.jpg")
    seq = TrackSequence(name="s", source="s", frames=[str(tmp_path / "0.jpg")], boxes=[[30, 40, 20, 10]],
                        visible=[True])
    rng = np.random.default_rng(0)
    _, box = augmented_crop(target_view(seq, 0), 255, 255, STILL, rng, gray=False)
    k = 127 / context_size(20, 10)  # the search crop shows the template region × 255/127
    np.testing.assert_allclose(box, [127 - 10 * k, 127 - 5 * k, 127 + 10 * k, 127 + 5 * k])


def test_cropped_sequences_rebuild_the_box_from_its_size(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((511, 511, 3), np.uint8)).save(tmp_path / "000000.00.x.jpg")
    seq = TrackSequence(name="v/00", source="v", frames=[str(tmp_path / "000000.00.x.jpg")], boxes=[[0, 0, 40, 20]],
                        visible=[True], cropped=True)
    _, box = augmented_crop(target_view(seq, 0), 127, 127, STILL, np.random.default_rng(0), gray=False)
    k = 127 / context_size(40, 20)
    np.testing.assert_allclose(box, [63 - 20 * k, 63 - 10 * k, 63 + 20 * k, 63 + 10 * k])


def _train(*datasets: tuple[int, int], **options) -> TrackingTrainDataSpec:
    """A train section of datasets given as (num_use, frame_range)."""
    return TrackingTrainDataSpec(datasets=[TrackingSplitSpec(num_use=use, frame_range=frames)
                                           for use, frames in datasets], **options)


def test_pairs_respect_frame_range_and_num_use_and_repeat_from_their_seed():
    pool = PairPool([[_sequence("a", 30), _sequence("b", 5)], [_sequence("c", 3)]], _train((4, 2), (-1, 100)))
    assert len(pool) == 5 and pool.counts() == [{"sequences": 2, "videos": 2, "picks": 4},
                                                {"sequences": 1, "videos": 1, "picks": 1}]
    assert sorted(pool.picks) == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]  # two whole cycles through a and b
    for index in range(5):
        for seed in range(20):
            choice = pool.choose(index, seed, neg=0.0, gray=0.0)
            assert choice.template[:2] == choice.search[:2] and not choice.negative
            assert abs(choice.template[2] - choice.search[2]) <= pool.frame_range[choice.template[0]]
            assert pool.source_name((index, seed)) == ["train0", "train1"][choice.template[0]]
    assert pool.choose(3, 7, 0.2, 0.2) == pool.choose(3, 7, 0.2, 0.2)
    negatives = [pool.choose(0, seed, neg=1.0, gray=0.0) for seed in range(40)]
    assert all(c.negative for c in negatives) and {c.search[0] for c in negatives} == {0, 1}


def test_the_last_cycle_of_picks_is_a_random_share_of_the_videos():
    videos = [_sequence(name, 3) for name in "abcdef"]
    shares = {tuple(sorted(v for _, v in PairPool([videos], _train((8, 100)), seed).picks)) for seed in range(6)}
    assert all(len(share) == 8 and set(share) == set(range(6)) for share in shares)  # each video once, two twice
    assert len(shares) > 1  # which two depends on the seed, not on the order of the list


def test_a_video_is_drawn_first_then_one_of_its_tracks():
    """pysot: one video with three tracks and one with one; each video gets half the pairs, as the reference."""
    tracks = [replace(_sequence(f"v1/{t:02d}", 4), video="v1") for t in range(3)] + [_sequence("v2", 4)]
    pool = PairPool([tracks], _train((-1, 100)))
    assert pool.counts() == [{"sequences": 4, "videos": 2, "picks": 2}]
    drawn = [pool.sequence(pool.choose(index, seed, 0.0, 0.0).template).name for index in (0, 1)
             for seed in range(300)]
    assert drawn.count("v2") == 300 and {name for name in drawn if name != "v2"} == {"v1/00", "v1/01", "v1/02"}
    negatives = [pool.sequence(pool.choose(0, seed, 1.0, 0.0).search).name for seed in range(400)]
    assert 140 < negatives.count("v2") < 260  # a random video, then a track: about half (200), not a quarter


def test_an_epoch_shorter_than_the_picks_draws_another_share_each_time():
    pool = PairPool([[_sequence("a", 3)], [_sequence("b", 3)]], _train((50, 100), (50, 100), videos_per_epoch=10))
    assert len(pool) == 10
    names = [pool.source_name((index, 100 * index + seed)) for index in range(10) for seed in range(20)]
    assert 60 < names.count("train0") < 140  # both datasets, about half each (100 of 200; the engine's seeds differ)


def test_sample_pair_sizes_and_augmentation(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for t in range(4):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / f"{t}.jpg")
    seq = TrackSequence(name="s", source="s", frames=[str(tmp_path / f"{t}.jpg") for t in range(4)],
                        boxes=np.tile([20, 20, 16, 12], (4, 1)), visible=np.ones(4, bool))
    pool = PairPool([[seq]], _train((8, 100)))
    search_aug = CropAugmentSpec(shift=16, scale=0.18, blur=1.0, flip=1.0, color=1.0)
    train = TrackingTrainDataSpec(neg=0.0, gray=1.0, template_augment=STILL, search_augment=search_aug)
    sample = sample_pair(pool, 0, 5, train, 63, 127)
    assert sample["template"].shape == (63, 63, 3) and sample["search"].shape == (127, 127, 3)
    assert sample["template"].dtype == np.float32
    np.testing.assert_allclose(sample["template"][..., 0], sample["template"][..., 2], atol=1e-3)  # grey
    x1, y1, x2, y2 = sample["box"]
    assert x1 < x2 and y1 < y2 and abs((x1 + x2) / 2 - 63) <= 16 * 1.2 + 1  # shifted at most `shift` (flipped)
    again = sample_pair(pool, 0, 5, train, 63, 127)
    np.testing.assert_array_equal(sample["search"], again["search"])


def test_pool_without_usable_sequences_is_an_error():
    empty = TrackSequence(name="e", source="e", frames=["x.jpg"], boxes=[[0, 0, 0, 0]], visible=[True])
    with pytest.raises(ValueError, match="no sequence with a usable box"):
        PairPool([[empty]], _train((-1, 100)))
