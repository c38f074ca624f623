"""PQ / SQ / RQ on hand-built cases with known answers (panopticapi's matching, void and crowd rules)."""

import math

import numpy as np

from segfit.metrics.panoptic import PanopticQuality, Segments


def _maps(*rows):
    return np.array(rows, np.int64)


def test_match_needs_iou_above_half_and_same_class():
    gt = Segments(_maps([1, 1, 1, 1], [2, 2, 2, 2]), {1: 0, 2: 1})
    # pred 5 covers 3 of gt 1's 4 pixels (IoU 3/4, matched); pred 6 is class 0 on gt 2 (class 1): FP + FN
    pred = Segments(_maps([5, 5, 5, 0], [6, 6, 6, 6]), {5: 0, 6: 0})
    pq = PanopticQuality(np.array([True, False]))
    pq.update(gt, pred)
    out = pq.compute()
    # class 0: TP 1 (IoU 3/4), FP 1 → PQ 0.75 / 1.5 = 0.5; class 1: FN 1 → PQ 0
    assert math.isclose(out["pq_th"], 0.5) and math.isclose(out["pq_st"], 0.0)
    assert math.isclose(out["pq"], 0.25) and math.isclose(out["sq_th"], 0.75) and math.isclose(out["rq_th"], 2 / 3)


def test_void_pixels_leave_the_union_and_excuse_false_positives():
    gt = Segments(_maps([1, 1, 0, 0], [0, 0, 0, 0]), {1: 0})
    # pred 3 = gt 1 plus two void pixels: IoU 2 / (4 - 2) = 1; pred 4 lies wholly on void: not an FP
    pred = Segments(_maps([3, 3, 3, 3], [4, 4, 0, 0]), {3: 0, 4: 0})
    pq = PanopticQuality(np.array([True]))
    pq.update(gt, pred)
    assert pq.tp[0] == 1 and pq.fp[0] == 0 and pq.fn[0] == 0 and math.isclose(pq.compute()["pq"], 1.0)


def test_crowd_is_never_matched_missed_or_blamed():
    gt = Segments(_maps([1, 1, 2, 2], [2, 2, 2, 2]), {1: 0, 2: 0}, crowd=frozenset({2}))
    pred = Segments(_maps([5, 5, 6, 6], [6, 6, 6, 6]), {5: 0, 6: 0})  # 6 covers the crowd region only
    pq = PanopticQuality(np.array([True]))
    pq.update(gt, pred)
    assert (pq.tp[0], pq.fp[0], pq.fn[0]) == (1, 0, 0)


def test_exactly_half_is_neither_a_match_nor_excused():
    gt = Segments(_maps([1, 1, 0, 0]), {1: 0})
    pred = Segments(_maps([0, 3, 3, 0]), {3: 0})  # inter 1, union 2 + 2 - 1 - 1 on void = 2: IoU 0.5, not > 0.5
    pq = PanopticQuality(np.array([True]))
    pq.update(gt, pred)
    # unmatched: half of it on void is not *more* than half, so it is a false positive
    assert (pq.tp[0], pq.fp[0], pq.fn[0]) == (0, 1, 1) and pq.compute()["pq"] == 0.0
