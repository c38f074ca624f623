"""Backbone-only Swin weights: official (microsoft/Swin-Transformer, timm, Mask2Former's D2 backbone) or transformers
key names, read from ``.pth``/``.pt`` (never unpickling objects) or ``.safetensors``, renamed to the transformers
``SwinBackbone`` inside Mask2Former."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

BACKBONE_PREFIX = "model.pixel_level_module.encoder."

_RENAMES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "swin.embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "swin.embeddings.norm."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.norm1\.", r"swin.encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.norm2\.", r"swin.encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", r"swin.encoder.layers.\1.blocks.\2.attention.o_proj."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$",
     r"swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"swin.encoder.layers.\1.blocks.\2.mlp."),
    (r"^layers\.(\d+)\.downsample\.", r"swin.encoder.layers.\1.downsample."),
    (r"^norm\.", "swin.layernorm."),
]
_QKV = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_STAGE_NORM = re.compile(r"^norm([0-3])\.(weight|bias)$")


def read_backbone_weights(path: str) -> dict[str, torch.Tensor]:
    """Tensors named as in the transformers ``SwinBackbone`` (names the mapping does not know are kept as they
    are, so the loader reports them as unused)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model.backbone.pretrained_weights: {path} not found")
    state = load_file(str(file)) if file.suffix == ".safetensors" else torch.load(file, map_location="cpu",
                                                                                  weights_only=True)
    for wrapper in ("model", "state_dict"):  # official and timm checkpoints nest the tensors
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix(BACKBONE_PREFIX).removeprefix("backbone.")
        renamed.update(_rename(name, tensor))
    return renamed


def _rename(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    if match := _QKV.match(name):
        layer, block, kind = match.groups()
        base = f"swin.encoder.layers.{layer}.blocks.{block}.attention"
        return {f"{base}.{part}_proj.{kind}": chunk for part, chunk in zip("qkv", tensor.chunk(3))}
    if match := _STAGE_NORM.match(name):
        return {f"hidden_states_norms.stage{int(match[1]) + 1}.{match[2]}": tensor}
    for pattern, replacement in _RENAMES:
        if re.match(pattern, name):
            return {re.sub(pattern, replacement, name): tensor}
    return {name: tensor}
