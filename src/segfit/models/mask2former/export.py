"""ONNX export: pixel values → raw class and mask logits (post-processing stays outside the graph, so one graph
serves every mode and runs ``segfit inference inference.backend=onnx`` with the PyTorch thresholds).

The graph comes from ``torch.onnx.export(dynamo=True)`` with Swin's attention in ``eager`` mode: the legacy
exporter casts the deformable-attention sampling grid to float64, which onnxruntime's GridSample refuses, and
the dynamo exporter cannot decompose Swin's SDPA reshape. The batch axis is dynamic (``export.batch_size: -1``),
height and width are ``export.input_height`` × ``input_width``; smaller inputs are zero-padded to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segfit.export.onnx import DEFAULT_OPSET, check_parity, export_graph, open_session
from segfit.models.mask2former.dataset import SIZE_DIVISOR
from segfit.models.mask2former.predict import Forward
from segfit.models.mask2former.spec import Mask2FormerSpec

INPUTS, OUTPUTS = ["pixel_values"], ["class_logits", "mask_logits"]
PARITY_TOLERANCE = 1e-3
"""Max abs difference allowed between onnxruntime and PyTorch logits (rounding differs between backends)."""


class LogitsOnly(nn.Module):
    """The model as a graph-friendly function: pixel values → (class logits, mask logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(pixel_values=pixel_values)
        return out.class_queries_logits, out.masks_queries_logits


def onnx_path(spec: Mask2FormerSpec) -> Path:
    """``inference.onnx_file``, else ``export.onnx_file``, else ``model.onnx`` in the export folder."""
    out_dir = Path(spec.export.output_dir or Path(spec.results_dir) / "export")
    return Path(spec.inference.onnx_file or spec.export.onnx_file or out_dir / "model.onnx")


def export_onnx(model: nn.Module, spec: Mask2FormerSpec, out_dir: Path) -> list[Path]:
    """Write the graph, check it against PyTorch in onnxruntime on a random batch, print the difference."""
    export = spec.export
    if export.input_height % SIZE_DIVISOR or export.input_width % SIZE_DIVISOR:
        raise ValueError(f"export.input_height, input_width: multiples of {SIZE_DIVISOR}, got "
                         f"{export.input_height}×{export.input_width}")
    opset = max(export.opset_version, DEFAULT_OPSET["dynamo"])
    if opset != export.opset_version:
        print(f"export: opset {export.opset_version} asked; the dynamo exporter writes opset {opset}")
    path = Path(export.onnx_file) if export.onnx_file else out_dir / "model.onnx"
    model = model.cpu().eval()
    model.set_attn_implementation("eager")
    wrapped = LogitsOnly(model).eval()
    batch = 2 if export.batch_size == -1 else export.batch_size
    example = torch.randn(batch, export.input_channel, export.input_height, export.input_width)
    dynamic = {"pixel_values": {0: "batch"}} if export.batch_size == -1 else None
    export_graph(wrapped, (example,), path, INPUTS, OUTPUTS, dynamic_axes=dynamic, exporter="dynamo", opset=opset)
    check_input = np.random.default_rng(0).standard_normal(
        (1 if export.batch_size == -1 else batch, 3, export.input_height, export.input_width)).astype(np.float32)
    diffs = check_parity(wrapped, open_session(path), {"pixel_values": check_input}, path.name, PARITY_TOLERANCE)
    print(f"onnxruntime vs PyTorch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return [path]


def session_forward(path: Path) -> Forward:
    """``Forward`` over an exported graph: inputs are zero-padded to the graph's height and width."""
    session = open_session(path)
    height, width = session.get_inputs()[0].shape[2:]

    def forward(pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        h, w = pixel_values.shape[-2:]
        if h > height or w > width:
            raise ValueError(f"{path}: the graph takes {height}×{width} inputs, this image is {h}×{w} after resizing; "
                             f"export with a larger export.input_height / input_width or lower "
                             f"data.augmentation.test_min_size / test_max_size")
        padded = torch.nn.functional.pad(pixel_values, (0, width - w, 0, height - h))
        class_logits, mask_logits = session.run(OUTPUTS, {"pixel_values": padded.numpy()})
        return torch.from_numpy(class_logits), torch.from_numpy(mask_logits)

    return forward
