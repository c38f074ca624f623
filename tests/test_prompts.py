"""Prompt simulation: exact parity with Meta's reference samplers where they are deterministic, statistics where not."""

import pytest
import torch
import torch.nn.functional as F

from segfit.prompts import (
    box_to_points,
    center_points,
    mask_to_box,
    next_click,
    noisy_boxes,
    sample_points_in_masks,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def blobs(n: int, h: int = 37, w: int = 41, seed: int = 0, density: float = 0.0) -> torch.Tensor:
    """Random smooth masks with several components and holes (ties in the distance map included)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, h // 4 + 1, w // 4 + 1, generator=g)
    return F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0] > density


def reference_utils():
    return pytest.importorskip("sam2.modeling.sam2_utils")


# ---- sample_points_in_masks ----------------------------------------------------------------------------------


def test_points_lie_in_their_mask_and_are_distinct():
    masks = blobs(12, seed=1)
    masks[3] = False
    points, labels = sample_points_in_masks(masks, 5, torch.Generator().manual_seed(0))
    assert points.shape == (12, 5, 2) and labels.shape == (12, 5) and points.dtype == torch.float32
    for i in range(12):
        if i == 3:
            assert (labels[i] == -1).all() and (points[i] == 0).all()
            continue
        x, y = points[i].long().unbind(-1)
        assert masks[i, y, x].all() and (labels[i] == 1).all()
        assert len({(int(a), int(b)) for a, b in zip(x, y)}) == 5


def test_small_mask_is_sampled_with_replacement():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 2, 3] = masks[0, 6, 1] = True
    points, labels = sample_points_in_masks(masks, 40, torch.Generator().manual_seed(0))
    seen = {tuple(p) for p in points[0].long().tolist()}
    assert seen == {(3, 2), (1, 6)} and (labels == 1).all()


def test_more_points_than_pixels():
    masks = torch.ones(2, 2, 3, dtype=torch.bool)
    points, _ = sample_points_in_masks(masks, 10)
    assert points.shape == (2, 10, 2) and points[..., 0].max() <= 2 and points[..., 1].max() <= 1


def test_points_are_uniform_over_the_mask():
    mask = torch.zeros(4000, 6, 6, dtype=torch.bool)
    mask[:, 1:5, 2:4] = True  # 8 pixels, each drawn 2 × 4000 / 8 = 1000 times on average
    for k in (2, 12):  # without and with replacement
        points, _ = sample_points_in_masks(mask, k, torch.Generator().manual_seed(k))
        idx = (points[..., 1] * 6 + points[..., 0]).long().flatten()
        counts = torch.bincount(idx, minlength=36).float()[mask[0].flatten()]
        expected = 4000 * k / 8
        assert ((counts - expected).abs() < 5 * expected**0.5).all(), counts


def test_points_are_reproducible_with_a_generator():
    masks = blobs(4, seed=2)
    a = sample_points_in_masks(masks, 3, torch.Generator().manual_seed(7))
    b = sample_points_in_masks(masks, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---- distance map, centre clicks -----------------------------------------------------------------------------


def test_centre_counts_the_image_border_as_outside():
    masks = torch.zeros(2, 5, 7, dtype=torch.bool)
    masks[0] = True  # distance 3 from the padded border at columns 2..4 of row 2: the first is taken
    masks[1, 1:, 4:] = True  # a 4×3 block in the bottom-right corner: centre (5, 2), not pushed to the border
    points, labels = center_points(masks)
    assert points[:, 0].tolist() == [[2.0, 2.0], [5.0, 2.0]] and labels.tolist() == [[1], [1]]


@pytest.mark.reference
def test_center_points_match_the_reference():
    ref = reference_utils()
    masks = blobs(24, seed=3)
    masks[5] = False
    masks[6, 10:15, 10:15] = True  # a square: many tied pixels near its centre → the first in raster order wins
    points, labels = center_points(masks)
    ref_points, ref_labels = ref.sample_one_point_from_error_center(masks[:, None], None)
    present = masks.flatten(1).any(1)
    assert torch.equal(points[present], ref_points[present])
    assert torch.equal(labels[present], ref_labels[present].long())
    assert labels[5] == -1 and (points[5] == 0).all()


@pytest.mark.reference
@pytest.mark.parametrize("density", [0.0, 1.2])  # large regions touching the border; small isolated ones
def test_center_correction_click_matches_the_reference(density):
    ref = reference_utils()
    gt = blobs(64, seed=4, density=density)
    pred = blobs(64, seed=5, density=density + 0.3) | (gt & blobs(64, seed=6))  # misses and false alarms
    points, labels = next_click(gt, pred, "center")
    ref_points, ref_labels = ref.sample_one_point_from_error_center(gt[:, None], pred[:, None])
    assert torch.equal(points, ref_points) and torch.equal(labels, ref_labels.long())
    assert 0 < labels.sum() < 64  # both positive and negative clicks were exercised


def test_next_click_without_prediction_is_the_centre_click():
    gt = blobs(8, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(next_click(gt, None), center_points(gt)))


@pytest.mark.parametrize("method", ["center", "uniform"])
def test_no_error_gives_a_background_click_or_none(method):
    gt = torch.zeros(3, 12, 12, dtype=torch.bool)
    gt[0, 0:4, 0:4] = True  # perfect prediction of a corner object
    gt[2] = True  # perfect prediction of a full-image object: no background left
    points, labels = next_click(gt, gt.clone(), method)
    assert labels[:, 0].tolist() == [0, -1, -1]
    x, y = points[0, 0].long()
    assert not gt[0, y, x]
    if method == "center":  # 5 px from the object's corner (3, 3) and from the right border: the first such pixel
        assert (x, y) == (7, 6)


def test_uniform_clicks_cover_the_error_regions_uniformly():
    gt = torch.zeros(6000, 10, 10, dtype=torch.bool)
    gt[:, 2:6, 2:6] = True
    pred = torch.zeros_like(gt)
    pred[:, 2:6, 2:4] = True  # 8 missed pixels
    pred[:, 8, 0:4] = True  # 4 false alarms
    points, labels = next_click(gt, pred, "uniform", torch.Generator().manual_seed(0))
    x, y = points[:, 0].long().unbind(-1)
    assert torch.equal(labels[:, 0], gt[0, y, x].long())  # positive exactly in the misses
    idx = torch.bincount(y * 10 + x, minlength=100).float()
    error = (gt[0] ^ pred[0]).flatten()
    assert idx[~error].sum() == 0
    assert ((idx[error] - 500).abs() < 5 * 500**0.5).all()


@pytest.mark.reference
def test_uniform_label_rate_matches_the_reference():
    ref = reference_utils()
    gt = blobs(1, seed=8).expand(3000, -1, -1).clone()
    pred = blobs(1, seed=9, density=0.2).expand(3000, -1, -1).clone()
    _, labels = next_click(gt, pred, "uniform", torch.Generator().manual_seed(0))
    _, ref_labels = ref.sample_random_points_from_errors(gt[:, None], pred[:, None])
    assert abs(labels.float().mean() - ref_labels.float().mean()) < 0.05


def test_empty_gt_and_prediction_give_no_click():
    gt = torch.zeros(2, 6, 6, dtype=torch.bool)
    for method in ("center", "uniform"):
        _, labels = next_click(gt, gt.clone(), method)
        assert (labels == -1).all()


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method 'random'"):
        next_click(blobs(1), blobs(1, seed=1), "random")


# ---- boxes ---------------------------------------------------------------------------------------------------


@pytest.mark.reference
def test_mask_to_box_matches_the_reference():
    misc = pytest.importorskip("sam2.utils.misc")
    masks = blobs(16, seed=10, density=0.8)
    masks[0, 3, 5] = True
    present = masks.flatten(1).any(1)
    assert torch.equal(mask_to_box(masks)[present], misc.mask_to_box(masks[:, None])[present, 0].float())


def test_mask_to_box_of_an_empty_mask_is_zero():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[1, 1:3, 2:5] = True
    assert mask_to_box(masks).tolist() == [[0, 0, 0, 0], [2, 1, 4, 2]]


@pytest.mark.reference
def test_noisy_boxes_match_the_reference_draw_for_draw():
    ref = reference_utils()
    masks = blobs(32, seed=11, density=0.5) | blobs(32, seed=12, density=1.5)
    torch.manual_seed(3)
    ref_points, ref_labels = ref.sample_box_points(masks[:, None])
    boxes = noisy_boxes(masks, generator=torch.Generator().manual_seed(3))
    # the reference's noise and segfit's: the same draws, scaled and clamped in their own float32 order
    torch.testing.assert_close(boxes, ref_points.reshape(-1, 4), rtol=0, atol=1e-5)
    points, labels = box_to_points(boxes)
    assert torch.equal(points, boxes.reshape(-1, 2, 2)) and torch.equal(labels, ref_labels.long())


def test_noisy_box_statistics_and_bounds():
    masks = torch.zeros(4000, 250, 40, dtype=torch.bool)
    masks[:, 22:228, 5:25] = True  # box (5, 22, 24, 227): w 19 → ±1.9 px, h 205 → ±20 px (the bound); no clamping
    boxes = noisy_boxes(masks, generator=torch.Generator().manual_seed(0))
    delta = boxes - torch.tensor([5.0, 22.0, 24.0, 227.0])
    limit = torch.tensor([1.9, 20.0, 1.9, 20.0])
    assert (delta.abs() <= limit + 1e-5).all()
    assert (delta.abs().amax(0) > 0.95 * limit).all()  # the whole range is used
    assert (delta.mean(0).abs() < 0.05 * limit).all()  # ≈ 5 standard errors
    torch.testing.assert_close(delta.std(0), limit / 3**0.5, rtol=0.03, atol=0)  # uniform on ±limit


def test_noisy_boxes_stay_in_the_image_and_noise_zero_is_exact():
    masks = torch.ones(500, 30, 50, dtype=torch.bool)
    boxes = noisy_boxes(masks, noise=0.5)
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 49).all() and (boxes[:, [1, 3]] <= 29).all()
    assert torch.equal(noisy_boxes(masks[:2], noise=0.0), torch.tensor([[0.0, 0, 49, 29]] * 2))


# ---- devices -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_stay_on_the_masks_device(device):
    gt = blobs(3, seed=13).to(device)
    pred = blobs(3, seed=14).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    outputs = [
        *sample_points_in_masks(gt, 2, gen),
        *center_points(gt),
        *next_click(gt, pred, "center"),
        *next_click(gt, pred, "uniform", gen),
        noisy_boxes(gt, generator=gen),
        *box_to_points(mask_to_box(gt)),
    ]
    assert all(t.device.type == device for t in outputs)
    cpu_click = next_click(gt.cpu(), pred.cpu(), "center")
    assert torch.equal(outputs[4].cpu(), cpu_click[0])
