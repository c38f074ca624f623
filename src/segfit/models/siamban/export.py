"""ONNX export of SiamBAN as two graphs, each checked against PyTorch in onnxruntime (max abs difference ≤ 1e-3):

- ``siamban_template.onnx``: ``template`` 1×3×T×T (RGB 0–255) → ``kernel0`` ... ``kernel5`` (cls and loc
  correlation kernels of the three levels), run once per target;
- ``siamban_track.onnx``: the six kernels and ``search`` 1×3×S×S → ``cls`` 1×2×n×n, ``loc`` 1×4×n×n, run per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segfit.export.onnx import check_parity, export_graph, open_session
from segfit.models.siamban.model import LEVELS, SiamBAN
from segfit.models.siamban.tracker import TemplateFn, TrackFn

TEMPLATE_GRAPH, TRACK_GRAPH = "siamban_template.onnx", "siamban_track.onnx"
KERNELS = [f"kernel{i}" for i in range(2 * len(LEVELS))]


class TemplateBranch(nn.Module):
    def __init__(self, model: SiamBAN):
        super().__init__()
        self.model = model

    def forward(self, template: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.template(template))


class TrackBranch(nn.Module):
    def __init__(self, model: SiamBAN):
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.track(inputs[:-1], inputs[-1])


def export_onnx(model: SiamBAN, out_dir: Path, template_size: int, search_size: int, opset: int = 17) -> list[Path]:
    """Write both graphs into ``out_dir`` and check each on random crops; returns their paths."""
    model = model.eval().cpu()
    rng = np.random.default_rng(0)
    z = (rng.random((1, 3, template_size, template_size)) * 255).astype(np.float32)
    x = (rng.random((1, 3, search_size, search_size)) * 255).astype(np.float32)
    template, track = TemplateBranch(model).eval(), TrackBranch(model).eval()  # export restores their mode
    paths = [export_graph(template, [torch.from_numpy(z)], out_dir / TEMPLATE_GRAPH, ["template"], KERNELS,
                          opset=opset)]
    check_parity(template, open_session(paths[0]), {"template": z}, TEMPLATE_GRAPH)
    with torch.no_grad():
        kernels = [k.numpy() for k in model.template(torch.from_numpy(z))]
    inputs = {**dict(zip(KERNELS, kernels)), "search": x}
    paths.append(export_graph(track, [torch.from_numpy(v) for v in inputs.values()], out_dir / TRACK_GRAPH,
                              list(inputs), ["cls", "loc"], opset=opset))
    check_parity(track, open_session(paths[1]), inputs, TRACK_GRAPH)
    return paths


def onnx_functions(onnx_dir: Path) -> tuple[TemplateFn, TrackFn]:
    """The tracker's two network functions on the exported graphs."""
    template, track = open_session(onnx_dir / TEMPLATE_GRAPH), open_session(onnx_dir / TRACK_GRAPH)

    def run_template(z: np.ndarray) -> list[np.ndarray]:
        return template.run(KERNELS, {"template": z})

    def run_track(kernels: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls, loc = track.run(["cls", "loc"], {**dict(zip(KERNELS, kernels)), "search": x})
        return cls, loc

    return run_template, run_track
