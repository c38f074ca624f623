"""TAO ``ade`` semantic segmentation: a JSONL file, one ``{"img": ..., "segm": ...}`` object per line, paths relative
to the dataset root; each ``segm`` is a one-channel PNG of class ids (the label map says what the values mean)."""

from __future__ import annotations

import json
from pathlib import Path

from segfit.data.formats.semantic_png import SemanticSample
from segfit.data.records import DataError


def index(annot_file: str, root_dir: str) -> list[SemanticSample]:
    """The samples of the JSONL file in line order; a bad line is a ``DataError`` naming its number."""
    path = Path(annot_file)
    if not path.is_file():
        raise DataError(str(path), "JSONL annotation file not found")
    root = Path(root_dir)
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(str(path), f"line {number}: invalid JSON ({err})") from err
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("img", "segm")):
            raise DataError(str(path), f'line {number}: expected {{"img": "<image path>", "segm": "<mask path>"}}')
        samples.append(SemanticSample(root / entry["img"], root / entry["segm"]))
    if not samples:
        raise DataError(str(path), "no samples (one JSON object per line)")
    return samples
