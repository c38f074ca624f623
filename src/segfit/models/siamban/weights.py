"""Backbone weights from a file the user provides (torchvision ``resnet50-*.pth``, pysot's ``resnet50.model``
converted to torchvision shapes, or a state dict saved from a wrapper); nothing is downloaded.

Keys are matched after stripping wrapper prefixes (``module.``, ``backbone.``, ``features.``, ``model.``); missing
keys (the model keeps its initialisation) and unused ones (e.g. torchvision's ``fc``) are reported, a shape
mismatch is an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

PREFIXES = ("module.", "backbone.", "features.", "model.")


@dataclass
class LoadReport:
    used: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Model keys the file lacks (BatchNorm's ``num_batches_tracked`` is never reported)."""
    unused: list[str] = field(default_factory=list)
    """File keys the model has no place for."""

    def summary(self) -> str:
        lines = [f"backbone weights: {len(self.used)} tensors loaded, {len(self.missing)} missing, "
                 f"{len(self.unused)} unused"]
        lines += [f"  missing: {', '.join(self.missing[:8])}{' ...' if len(self.missing) > 8 else ''}"] * bool(self.missing)
        lines += [f"  unused: {', '.join(self.unused[:8])}{' ...' if len(self.unused) > 8 else ''}"] * bool(self.unused)
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or a torch file (weights only: nothing is unpickled), unwrapped from
    ``{"state_dict": ...}`` / ``{"model": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        state = (safetensors.torch.load_file(str(path)) if path.suffix == ".safetensors" else
                 torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # safetensors, pickle and zip each raise their own kinds for a damaged file
        raise ValueError(f"{path}: not a weights file that loads without unpickling code ({err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no state dict (a mapping of names to tensors)")
    return state


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key[next(len(p) for p in PREFIXES if key.startswith(p)):]
        stripped[key] = value
    return stripped


def load_backbone(module: nn.Module, path: str | Path) -> LoadReport:
    """Copy the matching tensors of ``path`` into ``module`` (the backbone); at least one must match."""
    state = strip_prefixes(read_state_dict(path))
    own = module.state_dict()
    report = LoadReport(
        used=[k for k in state if k in own],
        missing=[k for k in own if k not in state and not k.endswith("num_batches_tracked")],
        unused=[k for k in state if k not in own],
    )
    wrong = [f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}" for k in report.used
             if state[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} tensor(s) do not fit the backbone: {'; '.join(wrong[:5])}")
    if not report.used:
        raise ValueError(f"{path}: no tensor fits the backbone (keys such as {list(state)[:3]}); is it a ResNet-50?")
    module.load_state_dict({k: state[k] for k in report.used}, strict=False)
    return report
