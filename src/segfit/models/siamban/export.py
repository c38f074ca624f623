"""ONNX export of SiamBAN as two graphs, each checked against PyTorch in onnxruntime (differences ≤ 1e-3; for the
box distances ``loc``, ≤ 1e-3 × max(1, distance)):

- ``siamban_template.onnx``: ``template`` 1×3×T×T (RGB 0–255) → ``kernel0`` ... ``kernel5`` (cls and loc
  correlation kernels of the three levels), run once per target;
- ``siamban_track.onnx``: the six kernels and ``search`` 1×3×S×S → ``cls`` 1×2×n×n, ``loc`` 1×4×n×n, run per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segfit.export.onnx import ParityError, check_parity, export_graph, open_session
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
    z, x = smooth_crop(template_size, 0), smooth_crop(search_size, 1)
    template, track = TemplateBranch(model).eval(), TrackBranch(model).eval()  # export restores their mode
    paths = [export_graph(template, [torch.from_numpy(z)], out_dir / TEMPLATE_GRAPH, ["template"], KERNELS,
                          opset=opset)]
    check_parity(template, open_session(paths[0]), {"template": z}, TEMPLATE_GRAPH)
    with torch.no_grad():
        kernels = [k.numpy() for k in model.template(torch.from_numpy(z))]
    inputs = {**dict(zip(KERNELS, kernels)), "search": x}
    paths.append(export_graph(track, [torch.from_numpy(v) for v in inputs.values()], out_dir / TRACK_GRAPH,
                              list(inputs), ["cls", "loc"], opset=opset))
    with torch.no_grad():
        expected = [t.numpy() for t in track(*(torch.from_numpy(v) for v in inputs.values()))]
    check_track_parity(expected, open_session(paths[1]).run(["cls", "loc"], inputs))
    return paths


def check_track_parity(expected: list[np.ndarray], actual: list[np.ndarray], tolerance: float = 1e-3) -> None:
    """``cls`` within ``tolerance``; ``loc`` (distances in pixels, exp of the head's output) within ``tolerance`` ×
    max(1, distance): float32 rounding of a deep network grows with the value it computes."""
    for name, want, got in zip(("cls", "loc"), expected, actual):
        scale = np.maximum(1.0, np.abs(want)) if name == "loc" else 1.0
        error = float(np.max(np.abs(got - want) / scale))
        if want.shape != got.shape or not error <= tolerance:
            raise ParityError(f"{TRACK_GRAPH}: output {name} differs from PyTorch by {error:.3g} (max, in units of "
                              f"{'max(1, distance)' if name == 'loc' else 'logits'}) > tolerance {tolerance:g}")


def smooth_crop(size: int, seed: int) -> np.ndarray:
    """A 1×3×size×size image-like crop (0–255, smooth: upsampled 8×8 noise) to check the graphs on; pixel noise
    drives a network to activations no photo gives, where float32 rounding of the two back ends adds up."""
    coarse = torch.from_numpy(np.random.default_rng(seed).random((1, 3, 8, 8), np.float32) * 255)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").numpy()


def onnx_functions(onnx_dir: Path) -> tuple[TemplateFn, TrackFn]:
    """The tracker's two network functions on the exported graphs."""
    template, track = open_session(onnx_dir / TEMPLATE_GRAPH), open_session(onnx_dir / TRACK_GRAPH)

    def run_template(z: np.ndarray) -> list[np.ndarray]:
        return template.run(KERNELS, {"template": z})

    def run_track(kernels: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls, loc = track.run(["cls", "loc"], {**dict(zip(KERNELS, kernels)), "search": x})
        return cls, loc

    return run_template, run_track
