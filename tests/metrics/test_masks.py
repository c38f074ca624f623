"""Mask IoU: hand-counted values, the both-empty convention, ignored pixels and the running mean."""

import math

import pytest
import torch

from segfit.metrics.masks import MeanIoU, mask_iou


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_of_overlapping_squares():
    pred = square(10, 10, 0, 4, 0, 4)  # 16 px
    gt = square(10, 10, 2, 6, 2, 6)  # 16 px, 4 shared
    assert mask_iou(pred, gt).item() == pytest.approx(4 / 28)


def test_batched_shapes_and_conventions():
    empty = torch.zeros(6, 6, dtype=torch.bool)
    gt = torch.stack([square(6, 6, 0, 3, 0, 3), empty, empty])
    pred = torch.stack([square(6, 6, 0, 3, 0, 3), empty, square(6, 6, 0, 1, 0, 1)])
    ious = mask_iou(pred[None].expand(2, -1, -1, -1), gt[None].expand(2, -1, -1, -1))
    assert ious.shape == (2, 3)
    assert ious[0].tolist() == [1.0, 1.0, 0.0]  # perfect; both empty counts as perfect; a false alarm on nothing


def test_ignored_pixels_do_not_count():
    pred = square(8, 8, 0, 4, 0, 8)  # 32 px, the top half
    gt = square(8, 8, 0, 8, 0, 4)  # 32 px, the left half; 16 shared
    assert mask_iou(pred, gt).item() == pytest.approx(16 / 48)
    valid = square(8, 8, 0, 8, 0, 4)  # only the left half counts → pred 16 px, gt 32 px, 16 shared
    assert mask_iou(pred, gt, valid).item() == pytest.approx(16 / 32)
    assert mask_iou(pred, gt, ~square(8, 8, 0, 8, 0, 8)).item() == 1.0  # nothing counted: both empty


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        mask_iou(torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool))


def test_mean_iou_weighs_every_object_the_same():
    metric = MeanIoU()
    assert math.isnan(metric.compute())
    metric.update(torch.tensor([1.0, 0.5]))
    metric.update(torch.tensor([0.0]))
    metric.update(torch.tensor([]))
    assert metric.count == 3 and metric.compute() == pytest.approx(0.5)
