"""The label map: which ids on disk are which classes, which are ignored, and what each mode trains on.

Wrong label conventions (background 0, ``reduce_zero_label``, ``num_classes``) are the commonest silent failure
of custom Mask2Former data, so every id a sample holds is checked here, and an unknown one stops the run with
the file and the values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segfit.data.formats.segments import SegmentReader
from segfit.data.records import DataError, SegmentRecord
from segfit.models.mask2former.spec import ClassSpec, Mask2FormerDataSpec, Mode
from segfit.spec.load import SpecError, from_dict
from segfit.visualize import palette


@dataclass
class Targets:
    """What one image trains and is scored on: class-index masks and the pixels left out."""

    masks: np.ndarray
    """N×H×W bool."""
    labels: np.ndarray
    """N int64 class indices (0..num_classes-1, label-map order)."""
    ignore: np.ndarray
    """H×W bool: ignored ids, crowd regions."""


@dataclass(frozen=True)
class LabelMap:
    classes: tuple[ClassSpec, ...]
    ignored_ids: frozenset[int]
    """Ids that are never trained or scored (``ignore_index``, and 0 with ``background: ignore``)."""
    contiguous_id: bool = False

    @classmethod
    def from_spec(cls, data: Mask2FormerDataSpec, num_classes: int) -> LabelMap:
        """From ``data.label_map`` (a TAO JSON file) or ``data.classes``, else ids counted from ``num_classes``."""
        if data.label_map and data.classes:
            raise SpecError("data.label_map and data.classes: give the label map once")
        first = 1 if data.background == "ignore" else 0
        classes = (_read_label_map(data.label_map) if data.label_map else tuple(data.classes)
                   or tuple(ClassSpec(id=first + k, name=f"class_{first + k}") for k in range(num_classes)))
        ignored = frozenset({data.ignore_index} | ({0} if data.background == "ignore" else set()))
        ids = [c.id for c in classes]
        if len(set(ids)) != len(ids):
            raise SpecError(f"label map: class ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
        if ignored & set(ids):
            raise SpecError(f"label map: ids {sorted(ignored & set(ids))} are also ignored (data.ignore_index "
                            f"{data.ignore_index}, data.background {data.background!r})")
        if len(classes) != num_classes:
            raise SpecError(f"model.sem_seg_head.num_classes is {num_classes} but the label map has {len(classes)} "
                            f"classes; make them equal")
        return cls(classes, ignored, data.contiguous_id)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name or str(c.id) for c in self.classes]

    @property
    def is_thing(self) -> np.ndarray:
        return np.array([c.isthing for c in self.classes], bool)

    def output_id(self, index: int) -> int:
        """The id outputs give class ``index``: its label-map id, or index + 1 with ``contiguous_id``."""
        return index + 1 if self.contiguous_id else self.classes[index].id

    def colors(self) -> np.ndarray:
        """(num_classes + 1, 3) uint8: black for "none" at 0, then each class's colour (generated if unset)."""
        generated = palette(self.num_classes + 1)
        for k, c in enumerate(self.classes, start=1):
            if len(c.color) == 3:
                generated[k] = c.color
        return generated

    def check(self, annotation: str, ids: set[int]) -> None:
        """A ``DataError`` naming ``annotation`` and the values when ``ids`` holds one outside the label map."""
        unknown = sorted(ids - {c.id for c in self.classes} - self.ignored_ids)
        if unknown:
            known = [c.id for c in self.classes]
            shown = f"{known[:20]}{' ...' if len(known) > 20 else ''}"
            raise DataError(annotation, f"ids {unknown} are not in the label map (class ids {shown}; ignored "
                                        f"{sorted(self.ignored_ids)}): check data.label_map / data.classes, "
                                        f"data.background and data.ignore_index")

    def check_split(self, reader: SegmentReader, split: str) -> None:
        """Every label file of ``reader`` (PNG values, JSON category ids) checked before a run: one ``DataError``
        listing the bad files with their values."""
        bad = []
        for i in range(len(reader)):
            try:
                self.check(*reader.ids(i))
            except DataError as err:
                bad.append(str(err))
        if bad:
            listed = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise DataError(f"data.{split}", f"{len(bad)} of {len(reader)} label files hold ids outside the label "
                                             f"map (segfit data check lists them all):\n  {listed}")

    def indices(self, record: SegmentRecord) -> np.ndarray:
        """Class index of each segment (-1 for ignored ids); an id outside the label map is a ``DataError``."""
        self.check(record.annotation, {int(i) for i in record.category_ids})
        lookup = {c.id: k for k, c in enumerate(self.classes)}
        return np.array([lookup.get(int(i), -1) for i in record.category_ids], np.int64)

    def targets(self, record: SegmentRecord, mode: Mode) -> Targets:
        """Segments → training targets. Semantic: one mask per class present. Panoptic: things one per instance,
        stuff merged per class. Instance: thing instances only (stuff is not an object). Ignored ids and crowds
        become ``ignore``."""
        index = self.indices(record)
        dropped = (index < 0) | record.crowd
        ignore = np.logical_or.reduce(record.masks[dropped], axis=0) if dropped.any() else np.zeros(record.size, bool)
        masks, labels = record.masks[~dropped], index[~dropped]
        things = self.is_thing[labels] if mode != "semantic" else np.zeros(len(labels), bool)
        if mode == "instance":
            masks, labels, things = masks[things], labels[things], things[things]
        merged = [(masks[labels == k].any(axis=0), k) for k in np.unique(labels[~things])]
        masks = np.concatenate([masks[things], np.array([m for m, _ in merged], bool).reshape(-1, *record.size)])
        labels = np.concatenate([labels[things], np.array([k for _, k in merged], np.int64)])
        keep = masks.any(axis=(1, 2))
        return Targets(masks[keep], labels[keep], ignore & ~masks.any(axis=0))


def _read_label_map(path: str) -> tuple[ClassSpec, ...]:
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"data.label_map: {path} not found")
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"data.label_map: {path} is not valid JSON: {err}") from err
    if not isinstance(entries, list):
        raise SpecError(f'data.label_map: {path} must hold a list of {{"id", "name", "color", "isthing"}} objects')
    # TAO and COCO files write isthing as 0 / 1
    entries = [{**e, "isthing": bool(e["isthing"])} if isinstance(e, dict) and e.get("isthing") in (0, 1) else e
               for e in entries]
    return tuple(from_dict(ClassSpec, entry, f"data.label_map[{k}]") for k, entry in enumerate(entries))
