"""Point targets and the loss terms, against values worked out by hand from the definitions."""

from __future__ import annotations

import math

import numpy as np
import torch

from segfit.models.siamban.losses import cls_loss, iou_loss, siamban_loss
from segfit.models.siamban.targets import point_targets, points


def test_points_are_a_stride_8_grid_centred_on_the_crop():
    xs, ys = points(25, 255)
    assert xs[0, 0] == 31 and xs[0, 24] == 223 and ys[12, 0] == 127 and xs[3, 5] == 31 + 40


def test_labels_positive_inside_quarter_ellipse_negative_outside_half_ellipse():
    # a 64 × 32 box centred on the crop (127, 127): positives where (dx/16)² + (dy/8)² < 1, i.e. the centre row at
    # dx = 0, ±8 (3 cells); negatives outside (dx/32)² + (dy/16)² > 1
    box = np.array([95.0, 111.0, 159.0, 143.0])
    labels, loc = point_targets(box, 25, 255, False, np.random.default_rng(0), pos_num=16, total_num=10_000)
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(labels == 1))} == {(12, 11), (12, 12), (12, 13)}
    # (dx/32)² + (dy/16)² ≤ 1 and not positive: |dx| ≤ 32 on the centre row, ≤ 27.7 at dy = ±8, 0 at dy = ±16
    ignored = {(12, c) for c in range(8, 17)} | {(r, c) for r in (11, 13) for c in range(9, 16)} | {(10, 12), (14, 12)}
    ignored -= {(12, 11), (12, 12), (12, 13)}
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(labels == -1))} == ignored
    assert (labels == 0).sum() == 625 - 3 - len(ignored)
    np.testing.assert_allclose(loc[:, 12, 12], [32, 16, 32, 16])
    np.testing.assert_allclose(loc[:, 12, 13], [40, 16, 24, 16])


def test_labels_are_capped_and_negative_pairs_label_only_the_distractor():
    box = np.array([27.0, 27.0, 227.0, 227.0])  # a large box: many candidates
    labels, _ = point_targets(box, 25, 255, False, np.random.default_rng(0))
    assert (labels == 1).sum() == 16 and (labels == 0).sum() == 48
    labels, _ = point_targets(box, 25, 255, True, np.random.default_rng(0))
    assert (labels == 1).sum() == 0 and (labels == 0).sum() == 16
    inside = np.array([[((x - 127) / 50) ** 2 + ((y - 127) / 50) ** 2 < 1 for x in range(31, 224, 8)]
                       for y in range(31, 224, 8)])
    assert inside[labels == 0].all()


def test_cls_loss_averages_positives_and_negatives_separately():
    cls = torch.zeros(1, 2, 1, 3)
    cls[0, 1, 0, 0] = math.log(3)  # p(fg) = 3/4 on the positive cell
    labels = torch.tensor([[[1, 0, -1]]])  # one positive, one negative (p(bg) = 1/2), one ignored
    expected = 0.5 * -math.log(0.75) + 0.5 * -math.log(0.5)
    assert cls_loss(cls, labels).item() == pytest_approx(expected)
    no_positives = 0.5 * (math.log(4) + math.log(2)) / 2  # p(bg) = 1/4 and 1/2; the positive half adds 0
    assert cls_loss(cls, torch.tensor([[[0, 0, -1]]])).item() == pytest_approx(no_positives)


def test_iou_loss_on_positive_cells_only():
    target = torch.tensor([10.0, 10.0, 10.0, 10.0]).view(1, 4, 1, 1).expand(1, 4, 1, 2)
    pred = torch.tensor([[10.0, 5.0], [10.0, 5.0], [10.0, 5.0], [10.0, 5.0]]).view(1, 4, 1, 2)
    labels = torch.tensor([[[1, 1]]])
    # cell 0 exact: IoU (400+1)/(400+1) = 1; cell 1: a 10 × 10 box inside 20 × 20: (100+1)/(400+1)
    assert iou_loss(pred, target, labels).item() == pytest_approx(0.5 * (1 - 101 / 401))
    assert iou_loss(pred, target, torch.tensor([[[1, 0]]])).item() == pytest_approx(0.0)
    terms = siamban_loss(torch.zeros(1, 2, 1, 2), pred, labels, target, cls_weight=2.0, loc_weight=3.0)
    assert terms["loss"].item() == pytest_approx(2 * terms["cls"].item() + 3 * terms["loc"].item())


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-6, abs=1e-7)  # float32 log-softmax and ratios
