"""TAO ``ade`` semantic segmentation: a JSONL file, one ``{"img": ..., "segm": ...}`` object per line, paths relative
to the dataset root; each ``segm`` is a one-channel PNG of class ids (the label map says what the values mean)."""

from __future__ import annotations

import json
from pathlib import Path

from segfit.data.files import read_text, within
from segfit.data.formats.semantic_png import SemanticSample
from segfit.data.records import DataError


def index(annot_file: str, root_dir: str) -> list[SemanticSample]:
    """The samples of the JSONL file in line order; a bad line is a ``DataError`` naming its number."""
    path = Path(annot_file)
    root = Path(root_dir)
    samples = []
    for number, line in enumerate(read_text(path, "JSONL annotation file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            raise DataError(str(path), f"line {number}: invalid JSON ({err})") from err
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("img", "segm")):
            raise DataError(str(path), f'line {number}: expected {{"img": "<image path>", "segm": "<mask path>"}}')
        samples.append(SemanticSample(*(within(root, entry[key], path) for key in ("img", "segm"))))
    if not samples:
        raise DataError(str(path), "no samples (one JSON object per line)")
    return samples
