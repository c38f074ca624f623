"""The click protocol with a fake, hand-checkable model; NoC and the click metrics on known IoU tables."""

import math

import pytest
import torch

from segfit.metrics.interactive import ClickMetrics, click_protocol, noc

H = W = 32


def square(cy: int, cx: int, half: int) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1] = True
    return m


class SquarePainter:
    """A fake model: a 5×5 square around every positive click, minus one around every negative click.

    Records its inputs; its "low-res logits" count the calls, so the feedback of the previous ones is checkable.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, points, labels, prev):
        self.calls.append((points.clone(), labels.clone(), prev))
        masks = torch.zeros(len(points), H, W, dtype=torch.bool)
        for i in range(len(points)):
            for (x, y), label in zip(points[i].long().tolist(), labels[i].tolist()):
                if label == 1:
                    masks[i] |= square(y, x, 2)
            for (x, y), label in zip(points[i].long().tolist(), labels[i].tolist()):
                if label == 0:
                    masks[i] &= ~square(y, x, 2)
        return masks, torch.full((len(points), 1, 4, 4), float(len(self.calls)))


def test_click_protocol_on_squares():
    gt = torch.stack([square(14, 14, 4), square(6, 6, 2)])  # a 9×9 object (10..18) and a 5×5 one
    painter = SquarePainter()
    ious = click_protocol(gt, painter, max_clicks=3)
    assert ious.shape == (2, 3)
    # click 1 at the centres: the 5×5 object is hit exactly; the 9×9 one gets its 25 central pixels of 81
    assert painter.calls[0][0].tolist() == [[[14.0, 14.0]], [[6.0, 6.0]]]
    assert painter.calls[0][1].tolist() == [[1], [1]]
    # click 2 on the 9×9 object: the missed ring is farthest (√2) from the prediction at (11, 11) → square 9..13,
    # adding 16 object pixels (4 already covered) and 9 outside → IoU (25 + 12) / (81 + 9)
    assert painter.calls[1][0][0, 1].tolist() == [11.0, 11.0] and painter.calls[1][1][0, 1] == 1
    torch.testing.assert_close(ious[0, :2], torch.tensor([25 / 81, 37 / 90]))
    # the 5×5 object stays perfect: later clicks are negative, in the background far from it
    assert ious[1].tolist() == [1.0, 1.0, 1.0]
    assert painter.calls[1][1][1, 1] == 0 and not gt[1][tuple(painter.calls[1][0][1, 1].long().flip(0))]
    # clicks accumulate and the previous logits come back
    assert [c[0].shape[1] for c in painter.calls] == [1, 2, 3]
    assert painter.calls[0][2] is None and painter.calls[2][2].unique().tolist() == [2.0]


def test_ignored_pixels_attract_no_click():
    gt = square(14, 14, 4)[None]
    valid = torch.ones(H, W, dtype=torch.bool)
    valid[:, :14] = False  # the left half of the object is ignored: only the right half can be missed
    painter = SquarePainter()
    ious = click_protocol(gt, painter, max_clicks=2, valid=valid)
    x, _ = painter.calls[1][0][0, 1].tolist()
    assert x >= 14
    assert ious[0, 0] == pytest.approx(15 / 45)  # valid: columns 14..18 of the object (45 px), 3×5 predicted


def test_noc_edge_cases():
    ious = torch.tensor(
        [
            [0.95, 0.99, 0.99],  # reached at the first click
            [0.50, 0.86, 0.91],  # 85 % at click 2, 90 % at click 3
            [0.10, 0.20, 0.30],  # never
            [0.80, 0.90, 0.70],  # exactly the threshold counts; a later drop does not matter
        ]
    )
    assert noc(ious, 0.85).tolist() == [1, 2, 20, 2]
    assert noc(ious, 0.90, max_clicks=3).tolist() == [1, 3, 3, 2]
    assert noc(ious, 0.90, max_clicks=2).tolist() == [1, 2, 2, 2]  # only the first 2 clicks are looked at


def test_noc_threshold_in_float32():
    assert noc(torch.tensor([[9 / 10]], dtype=torch.float32), 0.9).tolist() == [1]


def test_click_metrics():
    metrics = ClickMetrics()
    assert all(math.isnan(v) for v in metrics.compute().values())
    metrics.update(torch.tensor([[0.5, 0.86, 0.9, 0.9, 0.95], [0.9, 0.9, 0.9, 0.9, 0.9]]))
    metrics.update(torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1]]))
    out = metrics.compute()
    assert metrics.count == 3
    assert out == pytest.approx(
        {"miou@1": 1.5 / 3, "miou@3": 1.9 / 3, "miou@5": 1.95 / 3, "noc@85": (2 + 1 + 5) / 3, "noc@90": (3 + 1 + 5) / 3}
    )
    with pytest.raises(ValueError, match="3 clicks per object, earlier updates had 5"):
        metrics.update(torch.zeros(1, 3))


def test_click_metrics_report_only_the_clicks_run():
    metrics = ClickMetrics()
    metrics.update(torch.tensor([[0.2, 0.95]]))
    assert metrics.compute() == pytest.approx({"miou@1": 0.2, "noc@85": 2, "noc@90": 2})
