"""DAVIS J, F and J&F on hand-counted masks: boundary maps, the disk, shifts within and beyond the tolerance, the
empty and void conventions, the skipped frames and the averaging over objects."""

import math

import cv2
import numpy as np
import pytest
import torch

from segfit.metrics.video import (VideoMetrics, boundary_f_measure, boundary_map, boundary_radius, dilate, disk,
                                  region_similarity)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def grid(rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row.split()] for row in rows.strip().splitlines()])


def test_disk_is_skimage_disk():
    # skimage.morphology.disk(r) written out (x² + y² ≤ r²): what DAVIS dilates with
    assert disk(0).tolist() == [[True]]
    assert torch.equal(disk(1), grid("""
        0 1 0
        1 1 1
        0 1 0"""))
    assert torch.equal(disk(2), grid("""
        0 0 1 0 0
        0 1 1 1 0
        1 1 1 1 1
        0 1 1 1 0
        0 0 1 0 0"""))
    assert torch.equal(disk(3), grid("""
        0 0 0 1 0 0 0
        0 1 1 1 1 1 0
        0 1 1 1 1 1 0
        1 1 1 1 1 1 1
        0 1 1 1 1 1 0
        0 1 1 1 1 1 0
        0 0 0 1 0 0 0"""))


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 8])
def test_dilate_matches_cv2_dilate_with_the_disk(radius):
    maps = torch.rand(3, 23, 41, generator=torch.Generator().manual_seed(radius)) > 0.97
    maps[0, 0, 0] = maps[0, -1, -1] = True  # at the image corners: outside the image counts as empty in both
    kernel = disk(radius).numpy().astype(np.uint8)
    expected = np.stack([cv2.dilate(m.numpy().astype(np.uint8), kernel) for m in maps]) > 0
    assert np.array_equal(dilate(maps, radius).numpy(), expected)


def test_boundary_map_of_a_square_is_its_outline_offset_towards_the_origin():
    square = rect(12, 12, 3, 7, 4, 8)  # rows 3..6, cols 4..7
    expected = rect(12, 12, 2, 7, 3, 8) & ~rect(12, 12, 3, 6, 4, 7)  # outline of rows 2..6, cols 3..7
    assert torch.equal(boundary_map(square), expected)
    empty, full = torch.zeros(5, 5, dtype=torch.bool), torch.ones(5, 5, dtype=torch.bool)
    assert not boundary_map(empty).any() and not boundary_map(full).any()


def test_boundary_map_at_the_image_edges_as_seg2bmap():
    # DAVIS _seg2bmap, worked by hand: in the last row only the right neighbour counts, in the last column only the
    # bottom one, so a mask running off the right or bottom edge has no boundary there; off the top / left edge
    # neither (no pixel lies beyond it)
    touching_bottom_right = grid("""
        0 0 0 0 0 0
        0 0 0 0 0 0
        0 0 0 1 1 1
        0 0 0 1 1 1
        0 0 0 1 1 1
        0 0 0 1 1 1""")
    assert torch.equal(boundary_map(touching_bottom_right), grid("""
        0 0 0 0 0 0
        0 0 1 1 1 1
        0 0 1 0 0 0
        0 0 1 0 0 0
        0 0 1 0 0 0
        0 0 1 0 0 0"""))
    touching_top_left = grid("""
        1 1 0 0 0 0
        1 1 0 0 0 0
        1 1 0 0 0 0
        0 0 0 0 0 0
        0 0 0 0 0 0
        0 0 0 0 0 0""")
    assert torch.equal(boundary_map(touching_top_left), grid("""
        0 1 0 0 0 0
        0 1 0 0 0 0
        1 1 0 0 0 0
        0 0 0 0 0 0
        0 0 0 0 0 0
        0 0 0 0 0 0"""))


def test_a_6x6_davis_computation_by_hand():
    gt = rect(6, 6, 2, 6, 3, 6)  # the bottom-right mask above: boundary col 2 rows 1..5 + row 1 cols 3..5 (8 px)
    pred = rect(6, 6, 2, 6, 1, 6)  # two columns wider: boundary col 0 rows 1..5 + row 1 cols 1..5 (10 px)
    assert boundary_radius(6, 6) == 1  # ceil(0.008 · √72 = 0.068): the plus-shaped disk(1)
    # precision: row 1 cols 2..5 lie on the gt boundary, (1, 1) is next to (1, 2); col 0 is 2 px off → 5 / 10
    # recall: (1, 2..5) lie on the pred boundary, (2, 2) is below (1, 2); (3..5, 2) are 2 px off col 0 → 5 / 8
    precision, recall = 5 / 10, 5 / 8
    assert boundary_f_measure(pred, gt).item() == pytest.approx(2 * precision * recall / (precision + recall))
    assert region_similarity(pred, gt).item() == pytest.approx(12 / 20)


def test_boundary_radius():
    assert boundary_radius(480, 854) == 8  # DAVIS 480p: ceil(0.008 · 979.6)
    assert boundary_radius(1080, 1920) == 18
    assert boundary_radius(20, 20) == 1
    assert boundary_radius(480, 854, bound_th=3) == 3  # ≥ 1: a radius in pixels
    with pytest.raises(ValueError, match="whole"):
        boundary_radius(480, 854, bound_th=1.5)


def test_identical_masks():
    masks = torch.stack([rect(16, 16, 2, 9, 3, 12), rect(16, 16, 0, 16, 0, 5)])
    assert region_similarity(masks, masks).tolist() == [1.0, 1.0]
    assert boundary_f_measure(masks, masks).tolist() == [1.0, 1.0]


def test_shift_by_k_pixels_iou():
    gt = rect(20, 20, 5, 15, 5, 15)  # 10 × 10
    pred = rect(20, 20, 5, 15, 7, 17)  # shifted 2 right: 80 shared of 120
    assert region_similarity(pred, gt).item() == pytest.approx(80 / 120)


def test_disjoint_masks():
    gt = rect(20, 20, 4, 14, 2, 7)  # rows 4..13, cols 2..6
    far = rect(20, 20, 4, 14, 13, 18)
    assert region_similarity(far, gt).item() == 0.0 and boundary_f_measure(far, gt).item() == 0.0
    # side by side (cols 7..11): no shared pixel, but the outlines (cols 1..6 and 6..11, rows 3..13, 30 px each)
    # share col 6 (11 px), and the first top / bottom pixel beyond it is 1 px away: 13 of 30 matched either way
    beside = rect(20, 20, 4, 14, 7, 12)
    assert region_similarity(beside, gt).item() == 0.0
    assert boundary_f_measure(beside, gt).item() == pytest.approx(13 / 30)


@pytest.mark.parametrize(("shift", "radius", "expected"), [(1, 1, 1.0), (3, 3, 1.0), (2, 1, 22 / 40), (3, 1, 20 / 40)])
def test_boundary_shift_within_and_beyond_the_tolerance(shift, radius, expected):
    # a 10 × 10 square's outline has 4 · 10 = 40 px. Shifted by k ≤ r, every pixel is within k of the other outline.
    # Beyond (k > r): of the shifted outline, the top and bottom rows keep 11 - k + r px, the leading column the r px
    # at either end next to the other's top / bottom row, the trailing column none: (2 (11 - k) + 4r) / 40, and
    # recall is the same by symmetry
    gt = rect(20, 20, 5, 15, 5, 15)
    pred = rect(20, 20, 5, 15, 5 + shift, 15 + shift)
    assert boundary_f_measure(pred, gt, bound_th=radius).item() == pytest.approx(expected)


def test_boundary_tolerance_at_davis_resolution():
    # the default bound_th at 480 × 854 is 8 px: a 100 × 100 square shifted by 8 matches, by 9 it does not all
    gt = rect(480, 854, 100, 200, 300, 400)
    shifted = torch.stack([rect(480, 854, 100, 200, 300 + k, 400 + k) for k in (8, 9)])
    f = boundary_f_measure(shifted, gt.expand_as(shifted))
    torch.testing.assert_close(f, torch.tensor([1.0, (2 * (101 - 9) + 4 * 8) / 400]))


def test_empty_and_full_masks():
    h = w = 8
    empty, full, some = torch.zeros(h, w, dtype=torch.bool), torch.ones(h, w, dtype=torch.bool), rect(h, w, 2, 5, 2, 5)
    pred = torch.stack([empty, empty, some, full])
    gt = torch.stack([empty, some, empty, empty])
    assert region_similarity(pred, gt).tolist() == [1.0, 0.0, 0.0, 0.0]
    # both boundaries empty → 1, one empty → 0; a full mask has no boundary either, so full vs empty scores F = 1
    # (a DAVIS quirk, kept: J catches it)
    assert boundary_f_measure(pred, gt).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_void_pixels_are_left_out():
    gt = rect(16, 16, 2, 8, 2, 8)
    pred = gt | rect(16, 16, 10, 14, 10, 14)  # a false alarm …
    void = rect(16, 16, 9, 16, 9, 16)  # … wholly inside void pixels
    assert region_similarity(pred, gt).item() == pytest.approx(36 / 52)
    assert region_similarity(pred, gt, void).item() == 1.0
    assert boundary_f_measure(pred, gt).item() < 1.0
    assert boundary_f_measure(pred, gt, void=void).item() == 1.0  # DAVIS clears void from both masks first
    assert region_similarity(pred, gt, torch.ones(16, 16, dtype=torch.bool)).item() == 1.0  # nothing left: both empty


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        boundary_f_measure(torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool))


def video(frames: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    """Frames of per-object masks → ``(T, N, H, W)``."""
    return torch.stack([torch.stack(objects) for objects in frames])


def test_first_and_last_frames_are_skipped():
    gt_mask, empty = rect(12, 12, 3, 9, 3, 9), torch.zeros(12, 12, dtype=torch.bool)
    gt = video([(gt_mask,)] * 4)
    pred = video([(empty,), (gt_mask,), (gt_mask,), (empty,)])  # wrong only in the first and the last frame
    davis = VideoMetrics()
    davis.update(pred, gt)
    assert davis.compute() == {"j_mean": 1.0, "f_mean": 1.0, "j&f": 1.0, "num_objects": 1, "num_frames": 2}
    first_only = VideoMetrics(skip_last=False)
    first_only.update(pred, gt)
    assert first_only.compute()["j_mean"] == pytest.approx(2 / 3) and first_only.objects[0]["frames"] == 3
    every = VideoMetrics(skip_first=False, skip_last=False)
    every.update(pred, gt)
    assert every.compute()["f_mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="none to evaluate"):
        davis.update(pred[:2], gt[:2])


def test_objects_weigh_the_same_whatever_their_frames():
    h = w = 12
    empty, square = torch.zeros(h, w, dtype=torch.bool), rect(h, w, 2, 6, 2, 6)
    wide = rect(h, w, 2, 6, 2, 10)  # twice the square: J = 0.5 against it
    metrics = VideoMetrics()
    # video A, one object, 2 evaluated frames: J 1 and 0.5
    metrics.update(video([(empty,), (square,), (wide,), (empty,)]), video([(square,)] * 4), video="A")
    # video B, two objects, 3 evaluated frames: one always right, one always missed
    gt_b = video([(square, square)] * 5)
    metrics.update(video([(square, empty)] * 5), gt_b, video="B")
    f_wide = boundary_f_measure(wide, square).item()
    assert [(o["object"], o["frames"]) for o in metrics.objects] == [("A_1", 2), ("B_1", 3), ("B_2", 3)]
    assert [o["j"] for o in metrics.objects] == pytest.approx([0.75, 1.0, 0.0])
    assert [o["f"] for o in metrics.objects] == pytest.approx([(1 + f_wide) / 2, 1.0, 0.0])
    assert [o["j&f"] for o in metrics.objects] == pytest.approx([(0.75 + (1 + f_wide) / 2) / 2, 1.0, 0.0])
    out = metrics.compute()
    assert out["j_mean"] == pytest.approx(1.75 / 3)  # per object, not per frame ((1 + 0.5 + 3) / 8)
    assert out["f_mean"] == pytest.approx(((1 + f_wide) / 2 + 1 + 0) / 3)
    assert out["j&f"] == pytest.approx((out["j_mean"] + out["f_mean"]) / 2)
    assert out["num_objects"] == 3 and out["num_frames"] == 8


def test_video_void_and_input_checks():
    gt_mask = rect(10, 10, 2, 5, 2, 5)
    pred_mask = gt_mask | rect(10, 10, 7, 9, 7, 9)
    void = rect(10, 10, 6, 10, 6, 10)
    metrics = VideoMetrics(skip_first=False, skip_last=False)
    metrics.update(video([(pred_mask,)] * 2), video([(gt_mask,)] * 2), void=void.expand(2, -1, -1))
    assert metrics.compute()["j&f"] == 1.0
    with pytest.raises(ValueError, match="frames, objects, H, W"):
        metrics.update(gt_mask[None], gt_mask[None])
    with pytest.raises(ValueError, match="frames, H, W"):
        metrics.update(video([(gt_mask,)] * 2), video([(gt_mask,)] * 2), void=void)


def test_compute_before_any_video_is_nan():
    out = VideoMetrics().compute()
    assert math.isnan(out["j_mean"]) and math.isnan(out["j&f"]) and out["num_objects"] == 0


@pytest.mark.parametrize("device", DEVICES)
def test_batched_on_any_device_equals_one_by_one(device):
    # bool and integer arithmetic only, so every device and batch shape gives the same counts
    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(3, 2, 30, 40, generator=gen) > 0.5
    gt = torch.rand(3, 2, 30, 40, generator=gen) > 0.5
    f = boundary_f_measure(pred.to(device), gt.to(device), bound_th=2).cpu()
    j = region_similarity(pred.to(device), gt.to(device)).cpu()
    assert f.shape == j.shape == (3, 2)
    for t in range(3):
        for k in range(2):
            assert f[t, k].item() == pytest.approx(boundary_f_measure(pred[t, k], gt[t, k], bound_th=2).item())
            assert j[t, k].item() == pytest.approx(region_similarity(pred[t, k], gt[t, k]).item())
