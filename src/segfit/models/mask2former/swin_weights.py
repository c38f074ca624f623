"""Swin weight names → the transformers ``SwinBackbone`` inside Mask2Former, from three conventions: official
(microsoft/Swin-Transformer, timm, Mask2Former's D2 backbone: fused ``qkv``), the transformers checkpoint files
on the Hub (``attention.self.query``, ``intermediate.dense``: what ``save_pretrained`` still writes) and the
current transformers modules. Backbone-only files are read from ``.pth``/``.pt`` (never unpickling objects) or
``.safetensors``."""

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
_HUB_PARTS = [(".attention.self.query.", ".attention.q_proj."), (".attention.self.key.", ".attention.k_proj."),
              (".attention.self.value.", ".attention.v_proj."), (".attention.output.dense.", ".attention.o_proj."),
              (".attention.self.relative_position_bias_table", ".attention.relative_position_bias.relative_position_bias_table"),
              (".intermediate.dense.", ".mlp.fc1."), (".output.dense.", ".mlp.fc2.")]
"""Hub checkpoint name parts → current module names, applied in order (attention's output before the MLP's)."""
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


def current_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A whole model's tensors with its backbone's Hub-file names made current (other names unchanged)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        inner = name.removeprefix(BACKBONE_PREFIX)
        out.update({BACKBONE_PREFIX + k: v for k, v in _rename(inner, tensor).items()} if inner != name else {name: tensor})
    return out


def _rename(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    if name.startswith(("embeddings.", "encoder.")):  # Hub files leave out the Swin model's "swin." level
        name = "swin." + name
    if name.startswith("swin."):
        for old, new in _HUB_PARTS:
            name = name.replace(old, new, 1)
        return {name: tensor}
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
