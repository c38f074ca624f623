"""The label map: unknown ids stop with the file and the values; targets per mode; TAO label-map files."""

import json

import numpy as np
import pytest

from segfit.data.records import DataError, SegmentRecord
from segfit.models.mask2former.labels import LabelMap
from segfit.models.mask2former.spec import ClassSpec, Mask2FormerDataSpec
from segfit.spec import SpecError

CLASSES = [ClassSpec(id=1, name="sky", isthing=False), ClassSpec(id=7, name="car"), ClassSpec(id=9, name="dog")]


def _record(ids: np.ndarray, category_ids, crowd=None, masks=None) -> SegmentRecord:
    if masks is None:
        masks = ids[None] == np.asarray(category_ids)[:, None, None]
    return SegmentRecord(image=np.zeros((*ids.shape, 3), np.uint8), masks=masks, category_ids=category_ids,
                         source="a.jpg", annotation="masks/a.png", crowd=crowd)


def test_unknown_ids_name_the_file_and_the_values():
    labels = LabelMap.from_spec(Mask2FormerDataSpec(classes=CLASSES), 3)
    ids = np.array([[0, 1, 7, 3], [255, 4, 9, 9]])
    with pytest.raises(DataError, match=r"masks/a\.png: ids \[3, 4\] are not in the label map") as error:
        labels.targets(_record(ids, [0, 1, 3, 4, 7, 9, 255]), "semantic")
    assert "ignored [0, 255]" in str(error.value)


def test_background_as_a_class_and_ignore_index():
    labels = LabelMap.from_spec(Mask2FormerDataSpec(background="class", ignore_index=255), 2)
    assert [c.id for c in labels.classes] == [0, 1]
    targets = labels.targets(_record(np.array([[0, 1, 255]]), [0, 1, 255]), "semantic")
    assert targets.labels.tolist() == [0, 1] and targets.ignore.tolist() == [[False, False, True]]


def test_targets_per_mode():
    labels = LabelMap.from_spec(Mask2FormerDataSpec(classes=CLASSES), 3)
    h = w = 4
    masks = np.zeros((5, h, w), bool)
    masks[0, :2] = masks[1, 2:, :2] = True   # sky in two pieces (stuff), and ...
    masks[2, 2:, 2] = masks[3, 2:, 3] = True  # ... two cars,
    masks[4, 3, 0] = True                    # and a crowd of dogs over the second sky piece
    record = _record(np.zeros((h, w), int), [1, 1, 7, 7, 9], crowd=[0, 0, 0, 0, 1], masks=masks)
    semantic = labels.targets(record, "semantic")
    assert semantic.labels.tolist() == [0, 1]  # one mask per class: sky, car
    assert semantic.masks[1].sum() == 4 and semantic.ignore.sum() == 0  # the crowd pixel is also sky
    panoptic = labels.targets(record, "panoptic")
    assert panoptic.labels.tolist() == [1, 1, 0]  # car instances, then the merged stuff
    assert labels.targets(record, "instance").labels.tolist() == [1, 1]


def test_num_classes_must_match_the_label_map(tmp_path):
    path = tmp_path / "colormap.json"
    path.write_text(json.dumps([{"id": 1, "name": "a", "isthing": 1, "color": [1, 2, 3]}, {"id": 2, "isthing": 0}]))
    labels = LabelMap.from_spec(Mask2FormerDataSpec(label_map=str(path)), 2)
    assert labels.is_thing.tolist() == [True, False] and labels.colors()[1].tolist() == [1, 2, 3]
    with pytest.raises(SpecError, match="num_classes is 3 but the label map has 2"):
        LabelMap.from_spec(Mask2FormerDataSpec(label_map=str(path)), 3)


def test_contiguous_ids_in_outputs():
    assert LabelMap.from_spec(Mask2FormerDataSpec(classes=CLASSES), 3).output_id(2) == 9
    assert LabelMap.from_spec(Mask2FormerDataSpec(classes=CLASSES, contiguous_id=True), 3).output_id(2) == 3
