"""Inference files: machine-readable predictions (class-id PNGs, COCO-RLE JSON, panoptic PNG + JSON) that the
reference tools read, plus colour overlays in the label map's colours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segfit.data.formats.coco_panoptic import id_to_rgb
from segfit.metrics.coco_masks import encode
from segfit.models.mask2former.labels import LabelMap
from segfit.models.mask2former.predict import Prediction


def class_overlay(image: np.ndarray, index_map: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with each pixel of ``index_map`` > 0 blended with ``colors[index_map]``."""
    out = image.astype(np.float64)
    filled = index_map > 0
    out[filled] = (1 - alpha) * out[filled] + alpha * colors[index_map[filled]]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class OutputWriter:
    """Writes each image's prediction as it comes; ``close`` writes the per-run JSON files."""

    def __init__(self, out_dir: Path, labels: LabelMap):
        self.out_dir, self.labels = out_dir, labels
        self.instances: list[dict] = []
        self.panoptic: list[dict] = []
        self.written: list[Path] = []
        out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, prediction: Prediction) -> None:
        """``name``: the image's stem (outputs are named after it)."""
        ids = np.array([self.labels.output_id(k) for k in range(self.labels.num_classes)], np.int64)
        if prediction.semantic is not None:
            values = ids[prediction.semantic]
            self._png(f"{name}.png", values.astype(np.uint8 if values.max(initial=0) < 256 else np.uint16))
        elif prediction.instances is not None:
            found = prediction.instances
            self.instances += [{"file_name": name, "category_id": int(ids[label]), "segmentation": encode(mask),
                                "score": float(score)}
                               for mask, label, score in zip(found.masks.numpy(), found.labels.numpy(),
                                                             found.scores.numpy())]
        else:
            found = prediction.panoptic
            self._png(f"{name}.png", id_to_rgb(found.segment_map))
            self.panoptic.append({"file_name": f"{name}.png", "segments_info": [
                {"id": s["id"], "category_id": int(ids[s["label"]]), "isthing": s["isthing"], "score": s["score"]}
                for s in found.segments]})

    def add_overlay(self, name: str, image: np.ndarray, index_map: np.ndarray) -> None:
        self._png(f"{name}_overlay.png", class_overlay(image, index_map, self.labels.colors()))

    def close(self) -> list[Path]:
        for filename, entries in (("instances.json", self.instances), ("panoptic.json", self.panoptic)):
            if entries:
                path = self.out_dir / filename
                content = entries if filename == "instances.json" else {"annotations": entries}
                path.write_text(json.dumps(content))
                self.written.append(path)
        return self.written

    def _png(self, filename: str, array: np.ndarray) -> None:
        path = self.out_dir / filename
        Image.fromarray(array).save(path)
        self.written.append(path)
