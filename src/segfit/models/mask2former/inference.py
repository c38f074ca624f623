"""``segfit inference`` for Mask2Former: every image of ``inference.input`` (default ``data.test.img_dir``) →
the mode's machine-readable outputs and an overlay, from the PyTorch model or the exported ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from segfit.data.image_io import list_images, read_image
from segfit.models.mask2former.evaluate import prediction_index_map
from segfit.models.mask2former.labels import LabelMap
from segfit.models.mask2former.outputs import OutputWriter
from segfit.models.mask2former.predict import Forward, predict, torch_forward
from segfit.models.mask2former.spec import Mask2FormerSpec


def input_images(spec: Mask2FormerSpec) -> dict[str, Path]:
    """Images by stem: ``inference.input`` (a file or a folder), else ``data.test.img_dir`` (under ``root_dir``)."""
    test = spec.data.test
    source = spec.inference.input or (str(Path(test.root_dir) / test.img_dir) if test and test.img_dir else "")
    if not source:
        raise ValueError("inference.input: no images given; set inference.input or data.test.img_dir")
    path = Path(source)
    return {path.stem: path} if path.is_file() else list_images(path)


def run_inference(load_model: Callable[[], nn.Module], spec: Mask2FormerSpec, labels: LabelMap,
                  out_dir: Path) -> list[Path]:
    forward = onnx_forward(spec) if spec.inference.backend == "onnx" else torch_forward(load_model())
    writer = OutputWriter(out_dir, labels)
    for name, path in input_images(spec).items():
        image = read_image(path)
        prediction = predict(forward, image, spec, labels)
        writer.add(name, prediction)
        if spec.inference.overlays:
            writer.add_overlay(name, image, prediction_index_map(prediction))
    return writer.close()


def onnx_forward(spec: Mask2FormerSpec) -> Forward:
    from segfit.models.mask2former.export import onnx_path, session_forward  # the ONNX stack only when used

    return session_forward(onnx_path(spec))
