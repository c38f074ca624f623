"""OPE tracking metrics against values worked out by hand from the definitions (metrics/tracking.py)."""

from __future__ import annotations

import numpy as np
import pytest

from segfit.metrics.tracking import TrackingMetrics, overlap

GT = [0.0, 0.0, 10.0, 10.0]


def test_overlap_is_continuous_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [2, 2, 5, 5]], float)
    np.testing.assert_allclose(overlap(a, b), [50 / 150, 0, 25 / 100])


def test_two_sequences_by_hand():
    metrics = TrackingMetrics()
    # A: IoU 1, 1/3, 0; centre errors 0, 5, 20·√2; normalised 0, 0.5, 2.83
    row = metrics.update([GT, [5, 0, 10, 10], [20, 20, 10, 10]], [GT] * 3, [True] * 3, "a")
    # success: IoU 1 beats t = 0..0.95 (20 thresholds), IoU 1/3 beats t = 0..0.3 (7) → (20 + 7) / 3 / 21
    assert row["success_auc"] == pytest.approx(27 / 63) and row["precision"] == pytest.approx(2 / 3)
    # B: only frame 0 is visible (frame 1's target is absent): a perfect frame
    metrics.update([GT, [50, 50, 5, 5]], [GT, GT], [True, False], "b")
    result = metrics.compute()
    assert result["success_auc"] == pytest.approx((27 / 63 + 20 / 21) / 2)
    assert result["precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["norm_precision"] == pytest.approx((1 / 3 + 1) / 2)
    # GOT-10k: frame 0 left out, IoUs pooled over sequences: A's 1/3 and 0, nothing from B
    assert result["ao"] == pytest.approx(1 / 6) and result["sr50"] == 0 and result["sr75"] == 0


def test_visible_frames_without_a_usable_box_are_misses():
    metrics = TrackingMetrics()
    metrics.update([GT, GT, [0, 0, 10, 8]], [GT, [np.nan] * 4, GT], [True] * 3)
    result = metrics.compute()
    # frame 1 counts as a miss everywhere; frame 2 has IoU 0.8, which beats t = 0..0.75 (16 thresholds)
    assert result["precision"] == pytest.approx(2 / 3) and result["success_auc"] == pytest.approx((20 + 16) / 3 / 21)
    assert result["ao"] == pytest.approx(0.4) and result["sr50"] == pytest.approx(0.5)
    assert result["sr75"] == pytest.approx(0.5)


def test_compute_without_sequences_fails():
    with pytest.raises(ValueError, match="no sequence"):
        TrackingMetrics().compute()
