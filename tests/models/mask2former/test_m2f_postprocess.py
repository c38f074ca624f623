"""The three post-processing rules on hand-built query logits with known answers."""

import numpy as np
import torch

from segfit.models.mask2former import postprocess

BIG = 20.0
"""A logit whose softmax / sigmoid is 1 to within 2e-9."""


def _masks(*regions):
    """Q×4×4 mask logits: +BIG inside each query's region (a slice of rows), -BIG elsewhere."""
    out = torch.full((len(regions), 4, 4), -BIG)
    for q, rows in enumerate(regions):
        out[q, rows] = BIG
    return out


def _classes(*labels, num_classes=3):
    """Q×(C+1) logits: each query sure of its label (``num_classes`` = no object)."""
    out = torch.full((len(labels), num_classes + 1), -BIG)
    out[torch.arange(len(labels)), torch.tensor(labels)] = BIG
    return out


def test_semantic_takes_the_class_of_the_covering_query():
    semantic = postprocess.semantic_map(_classes(2, 0, 3), _masks(slice(0, 2), slice(2, 4), slice(0, 4)))
    assert semantic.tolist() == [[2] * 4] * 2 + [[0] * 4] * 2  # the no-object query adds nothing


def test_instances_ranked_by_class_times_mask_score():
    found = postprocess.instances(_classes(1, 3), _masks(slice(0, 1), slice(1, 3)), topk=2)
    assert found.labels.tolist()[0] == 1 and found.scores[0] > 0.99
    assert found.masks[0].sum() == 4 and found.scores[1] < 1e-6  # the no-object query's pairs score ~0


def test_panoptic_merges_stuff_and_drops_mostly_hidden_segments():
    is_thing = np.array([True, False, True])
    classes = _classes(1, 1, 0, 2)
    classes[3, 2] = 3.0  # a less confident thing (score ~0.95) under the others
    masks = _masks(slice(0, 1), slice(1, 2), slice(2, 3), slice(0, 4))
    out = postprocess.panoptic(classes, masks, is_thing, object_mask_threshold=0.5, overlap_threshold=0.5)
    # two stuff queries of class 1 → one segment; the thing of class 0 its own; query 3 keeps 1 of 4 rows: dropped
    assert [(s["label"], s["isthing"]) for s in out.segments] == [(1, False), (0, True)]
    assert out.segment_map.tolist() == [[1] * 4, [1] * 4, [2] * 4, [0] * 4]
    kept = postprocess.panoptic(classes, masks, is_thing, object_mask_threshold=0.5, overlap_threshold=0.2)
    assert [s["label"] for s in kept.segments] == [1, 0, 2] and kept.segment_map[3].tolist() == [3] * 4


def test_masks_to_original_crops_padding_then_resizes():
    logits = torch.zeros(1, 8, 8)
    logits[0, :, 6:] = 5.0  # the padded right quarter of a 32×32 input (mask logits are at stride 4)
    up = postprocess.masks_to_original(logits, resized_hw=(32, 24), original_hw=(64, 48))
    assert up.shape == (1, 64, 48) and up.max() < 5.0 and up[0, :, :40].abs().max() == 0
