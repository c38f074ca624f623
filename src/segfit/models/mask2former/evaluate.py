"""Scores of a split at full resolution, one image at a time: mIoU & co. (semantic), COCO mask AP (instance), PQ
(panoptic); overlays of ground truth vs prediction for the first images. A split is scored in shards (one per
process, ``engine/evaluation.py``) whose states merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segfit.data.formats.segments import SegmentReader
from segfit.data.records import DataError, SegmentRecord
from segfit.engine.evaluation import Shard
from segfit.metrics.coco_masks import MaskAP
from segfit.metrics.panoptic import PanopticQuality, Segments
from segfit.metrics.semantic import SemanticScores
from segfit.models.mask2former.labels import LabelMap, Targets
from segfit.models.mask2former.outputs import class_overlay
from segfit.models.mask2former.predict import Forward, Prediction, predict
from segfit.models.mask2former.spec import Mask2FormerSpec
from segfit.visualize import save_png, side_by_side


Scores = SemanticScores | MaskAP | PanopticQuality


def evaluate_shard(forward: Forward, reader: SegmentReader, spec: Mask2FormerSpec, labels: LabelMap, shard: Shard,
                   samples_dir: Path | None) -> dict[str, Any]:
    """The scores of ``shard``'s images as a state ``merge_scores`` merges with the other shards'."""
    mode, limit = spec.model.mode, min(len(reader), spec.evaluate.max_images or len(reader))
    scores: Scores = {"semantic": lambda: SemanticScores(labels.num_classes),
                      "instance": lambda: MaskAP(labels.num_classes),
                      "panoptic": lambda: PanopticQuality(labels.is_thing)}[mode]()
    evaluated, skipped = 0, 0
    for i in shard.range(limit):
        try:
            record = reader.load(i)
            targets = labels.targets(record, mode)
        except DataError:
            if spec.data.on_error == "raise":
                raise
            skipped += 1
            continue
        prediction = predict(forward, record.image, spec, labels)
        _update(scores, record, targets, prediction, labels)
        if samples_dir is not None and evaluated < spec.evaluate.num_samples:
            _write_sample(record, targets, prediction, labels, samples_dir)
        evaluated += 1
    return {"scores": scores, "evaluated": evaluated, "skipped": skipped}


def merge_scores(states: list[dict[str, Any]], mode: str, labels: LabelMap) -> dict[str, float]:
    """mIoU & co., mask AP or PQ of the shards' states (in shard order: one process's image order)."""
    scores = states[0]["scores"]
    for state in states[1:]:
        scores.merge(state["scores"])
    evaluated, skipped = sum(s["evaluated"] for s in states), sum(s["skipped"] for s in states)
    if not evaluated:
        raise ValueError(f"no image could be evaluated ({skipped} skipped)")
    metrics = scores.compute(labels.names) if mode == "semantic" else scores.compute()
    extra = {"ap_backend": "pycocotools"} if mode == "instance" else {}
    return {**metrics, **extra, "num_images": evaluated, "skipped_images": skipped}


def _update(scores: Scores, record: SegmentRecord, targets: Targets, prediction: Prediction, labels: LabelMap) -> None:
    if prediction.semantic is not None:
        scores.update(prediction.semantic, semantic_truth(targets))
    elif prediction.instances is not None:
        index = labels.indices(record)
        things = (index >= 0) & labels.is_thing[np.maximum(index, 0)]
        found = prediction.instances
        scores.update(record.masks[things], index[things], record.crowd[things], found.masks.numpy(),
                      found.labels.numpy(), found.scores.numpy())
    else:
        found = prediction.panoptic
        scores.update(panoptic_truth(record, labels),
                      Segments(found.segment_map, {s["id"]: s["label"] for s in found.segments}))


def semantic_truth(targets: Targets) -> np.ndarray:
    """H×W class indices of semantic targets, -1 where no class (ignored pixels)."""
    truth = np.full(targets.ignore.shape, -1, np.int64)
    for mask, label in zip(targets.masks, targets.labels):
        truth[mask] = label
    return truth


def panoptic_truth(record: SegmentRecord, labels: LabelMap) -> Segments:
    """The record's segments as panoptic ground truth (ids 1..N; ignored ids are void)."""
    index = labels.indices(record)
    id_map = np.zeros(record.size, np.int64)
    kept = {}
    for n, (mask, label) in enumerate(zip(record.masks, index), start=1):
        if label >= 0:
            id_map[mask] = n
            kept[n] = int(label)
    crowd = frozenset(n for n, flag in enumerate(record.crowd, start=1) if flag and n in kept)
    return Segments(id_map, kept, crowd)


def prediction_index_map(prediction: Prediction) -> np.ndarray:
    """H×W map of class index + 1 (0 = none) for overlays."""
    if prediction.semantic is not None:
        return prediction.semantic + 1
    if prediction.panoptic is not None:
        lookup = np.array([0] + [s["label"] + 1 for s in prediction.panoptic.segments])
        return lookup[prediction.panoptic.segment_map]
    found = prediction.instances
    out = np.zeros(found.masks.shape[1:], np.int64)
    for mask, label in reversed(list(zip(found.masks.numpy(), found.labels.numpy()))):  # best score on top
        out[mask] = label + 1
    return out


def _write_sample(record: SegmentRecord, targets: Targets, prediction: Prediction, labels: LabelMap,
                  out_dir: Path) -> None:
    colors = labels.colors()
    panel = side_by_side(class_overlay(record.image, semantic_truth(targets) + 1, colors),
                         class_overlay(record.image, prediction_index_map(prediction), colors),
                         titles=["ground truth", "prediction"])
    save_png(out_dir / f"{Path(record.source).stem}.png", panel)
