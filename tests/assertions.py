"""Comparisons of results that two numeric backends computed; the rules for when to use them: tests/README.md.

ONNX Runtime and PyTorch, Meta's ``sam2`` and segfit, fp32 and bf16, two thread counts or CPU instruction sets, a
batched and an unbatched call: each rounds differently in the last bits. Their values are compared within a
tolerance, and what a threshold decides from them (a mask pixel) only where the values are clear of the threshold.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

THRESHOLD_MARGIN = 1e-3
"""Mask logits closer than this to the threshold 0 may land on either side on another backend (SAM 2 logits from
ONNX Runtime and PyTorch differ by up to 2e-4), so the pixels they decide are left out of a comparison."""

MIN_CLEAR_FRACTION = 0.99
"""At least this share of the pixels must be clear of the threshold, so that a comparison still covers the mask."""


def clear_of_threshold(logits: Tensor, margin: float = THRESHOLD_MARGIN) -> Tensor:
    """True where ``|logits| ≥ margin``: the pixels that every backend thresholds the same way."""
    clear = logits.abs() >= margin
    share = clear.float().mean().item()
    assert share >= MIN_CLEAR_FRACTION, f"only {share:.2%} of the pixels are {margin} or more from the threshold"
    return clear


def assert_same_masks(masks: Tensor, want_logits: Tensor, margin: float = THRESHOLD_MARGIN) -> None:
    """``masks`` equal ``want_logits > 0`` on every pixel where ``want_logits`` are clear of the threshold."""
    assert masks.shape == want_logits.shape and masks.dtype == torch.bool
    clear = clear_of_threshold(want_logits, margin)
    wrong = int((masks != (want_logits > 0))[clear].sum())
    assert wrong == 0, f"{wrong} mask pixels differ where the logits are {margin} or more from the threshold"


def assert_close_to_scale(actual: Tensor, expected: Tensor, rel: float) -> None:
    """``max |actual − expected| ≤ rel · max |expected|``.

    For the outputs of a deep float32 network: their rounding errors follow the size of the activations they were
    summed from, not each output's own value, so a near-zero output may differ by far more than its own 1e-5.
    """
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * expected.abs().max().item())


def assert_same_index_map(got: np.ndarray, want: np.ndarray, clear: np.ndarray) -> None:
    """Index maps equal on the ``clear`` pixels (those no backend can decide differently), ≥ 99% of the map."""
    assert got.shape == want.shape == clear.shape and got.dtype == want.dtype
    assert clear.mean() >= MIN_CLEAR_FRACTION, f"only {clear.mean():.2%} of the pixels are clear of the threshold"
    wrong = np.argwhere((got != want) & clear)
    assert not len(wrong), f"{len(wrong)} clear pixels differ, first at {wrong[0].tolist()}: {got[tuple(wrong[0])]} " \
                           f"(got) vs {want[tuple(wrong[0])]} (want)"


def assert_same_objects(got: np.ndarray, want: np.ndarray, min_iou: float, name: str = "") -> None:
    """Two maps (index or binary) with the same values, each value's pixels overlapping with IoU ≥ ``min_iou``."""
    assert got.shape == want.shape, name
    ids = np.unique(want)
    assert np.array_equal(np.unique(got), ids), f"{name}: values {np.unique(got).tolist()} vs {ids.tolist()}"
    for value in ids:
        a, b = got == value, want == value
        iou = (a & b).sum() / (a | b).sum()
        assert iou >= min_iou, f"{name}: the pixels of {value} overlap with IoU {iou:.5f} < {min_iou}"
