"""Reading SAM 2 weights of every kind into a ``Sam2Model`` or ``Sam2VideoModel``, and writing them in either layout.

Accepted: a Hugging Face model directory (``model.safetensors``), a ``.safetensors`` file, or a ``.pt``/``.pth``
(``{"model": state_dict}`` as official and official-trainer checkpoints are, or a bare state dict). The key
layout (official or HF) is recognised from the keys, not the file kind. Loading is strict: every tensor of the
model must come from the file with the same shape, so a wrong size fails loudly instead of half-loading. The
image model skips the video tensors of a file; the video model needs them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import Sam2Model, Sam2VideoModel

from segfit.models.sam2.convert import (
    HF_VIDEO_ONLY,
    checkpoint_version,
    hf_to_official,
    infer_size_version,
    is_official_layout,
    official_to_hf,
    video_tensors,
)

WRAPPER_PREFIXES = ("module.", "sam2_model.")
"""Prefixes that training wrappers (DDP, fine-tuning scripts) put in front of every key."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors stored at ``path``, keys as written (wrapper prefixes removed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.is_dir():
        weights_file = path / "model.safetensors"
        if not weights_file.is_file():
            raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no model.safetensors)")
        return _read_safetensors(weights_file)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".pt", ".pth"):
        return _read_torch(path)
    raise ValueError(f"{path}: unknown checkpoint kind; expected a directory, .safetensors, .pt or .pth")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return _strip_prefixes(load_file(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from error


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    state_dict = content["model"] if isinstance(content, dict) and "model" in content else content
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}, found {type(content).__name__}")
    return _strip_prefixes(state_dict)


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def load_sam2_weights(model: Sam2Model | Sam2VideoModel, path: str | Path) -> None:
    """Load any accepted checkpoint kind into ``model``, strictly, with messages that name the file and keys."""
    apply_state_dict(model, read_state_dict(path), path)


def apply_state_dict(model: Sam2Model | Sam2VideoModel, stored: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a state dict read from ``path`` (either layout) into ``model``, strictly; messages name ``path``."""
    weights = _as_hf_weights(stored, path, video=isinstance(model, Sam2VideoModel))
    _check_version(stored, model, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if isinstance(model, Sam2VideoModel) and not video_tensors(stored):
        raise ValueError(
            f"{path}: holds no video-memory tensors ({len(missing)} missing, e.g. {missing[:3]}): it is an image-model "
            "checkpoint, and a video model needs the complete model: an official release checkpoint, a Hugging Face "
            "Sam2VideoModel directory, or a .pt written by segfit export (see docs/checkpoints.md)"
        )
    if missing or unexpected:
        raise ValueError(
            f"{path}: keys do not match the model ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}){_size_hint(weights, expected)}"
        )
    for key, tensor in weights.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(tensor.shape)} in the checkpoint but {tuple(expected[key].shape)} "
                f"in the model{_size_hint(weights, expected)}"
            )
    model.load_state_dict(weights, strict=True)


def _as_hf_weights(stored: dict[str, torch.Tensor], path: str | Path, video: bool) -> dict[str, torch.Tensor]:
    """The HF-named tensors of a state dict in either layout; without ``video`` the video-only ones are dropped."""
    try:
        if is_official_layout(stored):
            return official_to_hf(stored, video=video)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: {error.args[0]}") from error
    return dict(stored) if video else {k: v for k, v in stored.items() if not HF_VIDEO_ONLY.fullmatch(k)}


def _check_version(stored: dict[str, torch.Tensor], model: Sam2Model | Sam2VideoModel, path: str | Path) -> None:
    """A checkpoint with video tensors says its version; it must be the one the model was built as.

    The image weights of 2.0 and 2.1 are interchangeable, but the version is recorded in exports, so it must
    not be wrong (and the video models of the two versions differ). Models not built by segfit carry no version
    and are not checked.
    """
    found = checkpoint_version(stored)
    declared = getattr(model.config, "sam2_version", None)
    if found and declared and found != declared:
        raise ValueError(f"{path}: this is a SAM {found} checkpoint but the model is SAM {declared}: set model.version: {found}")


def _size_hint(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """``; the checkpoint looks like …`` when both sides are recognisable SAM 2 sizes that differ."""
    try:
        stored_size, _ = infer_size_version(weights)
        model_size, _ = infer_size_version(expected)
    except ValueError:
        return ""
    if stored_size == model_size:
        return ""
    return (
        f"; the checkpoint looks like size {stored_size} but the model is {model_size}: "
        f"set model.size: {stored_size}"
    )


def save_hf_dir(model: Sam2Model | Sam2VideoModel, out_dir: str | Path) -> Path:
    """``out_dir`` with ``config.json`` + ``model.safetensors``, loadable by the model class's ``from_pretrained``."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def save_official_pt(model: Sam2Model | Sam2VideoModel, path: str | Path) -> Path:
    """``{"model": state_dict}`` in official key names: exactly the model's tensors (see ``hf_to_official``).

    Complete for a ``Sam2VideoModel``, the image path only for a ``Sam2Model`` (``export_official_pt`` in
    ``segfit.models.sam2.export`` completes an image model). Written to a temporary file and renamed, so an
    interrupted export never leaves a truncated checkpoint.
    """
    return write_official_pt(hf_to_official(model.state_dict()), path)


def write_official_pt(official: dict[str, torch.Tensor], path: str | Path) -> Path:
    """``{"model": official}`` at ``path``, contiguous CPU tensors, through a temporary file."""
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in official.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"model": state_dict}, partial)
    os.replace(partial, path)
    return path
