"""Family-neutral ONNX helpers: export a module, open the graph in onnxruntime, check it against PyTorch.

Two exporters are offered. ``legacy`` (TorchScript tracing, ``dynamo=False``) exports SAM 2 in about a second
and writes one self-contained file; ``dynamo`` (``torch.export``) is PyTorch's default and future path but is
several times slower to export, needs ``onnxscript`` and starts at opset 18. Both give the same numbers on
the models checked so far, so families default to ``legacy``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

Exporter = Literal["legacy", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("legacy", "dynamo")
DEFAULT_OPSET: dict[Exporter, int] = {"legacy": 17, "dynamo": 18}
"""Lowest opset each exporter writes without converting (dynamo implements its ops from opset 18 on)."""

DynamicAxes = Mapping[str, Mapping[int, str]]
"""``{input or output name: {axis: axis name}}``: the axes whose size may change after export."""


class ParityError(ValueError):
    """An ONNX graph's output differs from PyTorch's by more than the tolerance."""


def export_graph(
    module: nn.Module,
    args: Sequence[Tensor],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: DynamicAxes | None = None,
    exporter: Exporter = "legacy",
    opset: int | None = None,
) -> Path:
    """Write ``module(*args)`` as one ONNX file (weights inside) at ``path``; returns ``path``.

    Every name in ``input_names`` must be used by the graph (the legacy exporter drops unused inputs).
    ``opset`` defaults to ``DEFAULT_OPSET[exporter]``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: unknown value {exporter!r}; valid: {', '.join(EXPORTERS)}")
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    if opset < DEFAULT_OPSET[exporter]:
        raise ValueError(f"opset: the {exporter} exporter needs opset ≥ {DEFAULT_OPSET[exporter]}, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    common = dict(input_names=list(input_names), output_names=list(output_names), opset_version=opset)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # Tracer warnings flag Python-side shape logic that is constant for a given export: noise for users.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        if exporter == "legacy":
            torch.onnx.export(module, tuple(args), str(path), dynamo=False, dynamic_axes=_plain(dynamic_axes), **common)
        else:
            program = torch.onnx.export(
                module, tuple(args), dynamo=True, dynamic_shapes=_dynamic_shapes(input_names, dynamic_axes), **common
            )
            program.save(str(path), external_data=False)
    return path


def open_session(path: Path, providers: Sequence[str] | None = None) -> ort.InferenceSession:
    """An onnxruntime session on CUDA when onnxruntime has it, else on the CPU (or on ``providers``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX graph not found")
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: graph-optimiser notices are not actionable for users
    return ort.InferenceSession(str(path), options, providers=list(providers))


def check_parity(
    module: nn.Module,
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    graph: str,
    tolerance: float = 1e-3,
) -> dict[str, float]:
    """Max abs difference per output between ``module(*inputs.values())`` and the session on the same inputs.

    ``inputs`` must be in the module's argument order. Raises ``ParityError`` naming ``graph`` and the output
    when a difference exceeds ``tolerance`` (or is NaN) or the shapes differ.
    """
    device = next(module.parameters(), torch.empty(0)).device
    with torch.no_grad():
        expected = module(*(torch.from_numpy(np.asarray(value)).to(device) for value in inputs.values()))
    expected = (expected,) if isinstance(expected, Tensor) else tuple(expected)
    names = [output.name for output in session.get_outputs()]
    actual = session.run(names, dict(inputs))
    if len(expected) != len(names):
        raise ParityError(f"{graph}: the graph has {len(names)} outputs ({', '.join(names)}), PyTorch gave {len(expected)}")
    diffs = {}
    for name, torch_out, onnx_out in zip(names, expected, actual):
        reference = torch_out.detach().float().cpu().numpy()
        if reference.shape != onnx_out.shape:
            raise ParityError(f"{graph}: output {name} has shape {onnx_out.shape} in ONNX, {reference.shape} in PyTorch")
        diffs[name] = float(np.abs(reference - onnx_out.astype(np.float32)).max()) if reference.size else 0.0
        if not diffs[name] <= tolerance:
            raise ParityError(
                f"{graph}: output {name} differs from PyTorch by {diffs[name]:.3g} (max abs) > tolerance {tolerance:g}"
            )
    return diffs


def _plain(dynamic_axes: DynamicAxes | None) -> dict[str, dict[int, str]] | None:
    return None if dynamic_axes is None else {name: dict(axes) for name, axes in dynamic_axes.items()}


def _dynamic_shapes(input_names: Sequence[str], dynamic_axes: DynamicAxes | None) -> tuple | None:
    """``torch.export`` form of the input axes: one ``Dim`` per axis name, so inputs sharing a name share a size."""
    if not dynamic_axes:
        return None
    dims: dict[str, torch.export.Dim] = {}
    return tuple(
        {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in dynamic_axes.get(name, {}).items()}
        or None
        for name in input_names
    )
