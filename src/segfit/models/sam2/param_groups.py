"""Learning rates of the SAM 2 recipe, as the official trainer sets them (``sam2.1_hiera_b+_MOSE_finetune.yaml``).

- ``vision_lr`` for the image encoder (official ``image_encoder.*``: the Hiera trunk and the FPN neck), ``base_lr``
  for everything else — the prompt encoder, the mask decoder, and also the decoder's high-resolution projections
  (``conv_s0``/``conv_s1``) and ``no_memory_embedding``, which the official model holds outside ``image_encoder``
  even though segfit trains them with the image path.
- Layer-wise decay in the trunk (official ``layer_decay_param_modifier``, ``apply_to: image_encoder.trunk``): with
  N blocks, layer ids are 0 for the patch embedding, i + 1 for block i and N + 1 for anything else; layer id l gets
  ``vision_lr · layer_decay^(N + 1 - l)``. So the patch embedding gets ``layer_decay^(N+1)``, block i
  ``layer_decay^(N - i)`` (the last block 0.9 at the default), and the neck the full ``vision_lr``. The position
  embeddings (``pos_embed``, ``pos_embed_window``) are overridden to the full ``vision_lr`` (official override
  ``'*pos_embed*': 1.0``).
- LoRA adapters follow the layer they adapt (``blocks.3.attn.qkv.lora_A…`` is in block 3's group).

Each layer with its own lr is one group (``vision.patch_embed``, ``vision.block<i>``); parameters at the full
``vision_lr`` form ``vision`` and the rest ``base``. The engine splits every group again by weight decay.
"""

from __future__ import annotations

import re

from torch import nn

from segfit.engine.recipe import ParamGroup
from segfit.models.sam2.spec import Sam2OptimSpec

VISION_PREFIX = "vision_encoder."
"""HF names of the official ``image_encoder.*``: trunk (``vision_encoder.backbone.``) and neck."""
TRUNK_PREFIX = "vision_encoder.backbone."
BLOCK = re.compile(r"blocks\.(\d+)\.")


def param_groups(model: nn.Module, optim: Sam2OptimSpec) -> list[ParamGroup]:
    """The trainable parameters of a ``Sam2Model`` grouped by learning rate, in parameter order."""
    if not 0 < optim.layer_decay <= 1:
        raise ValueError(
            f"train.optim.layer_decay: {optim.layer_decay:g} must be in (0, 1] (1 disables the decay; to freeze the "
            "image encoder leave image_encoder out of model.trainable)"
        )
    num_blocks = len(model.vision_encoder.backbone.blocks)
    groups: dict[str, ParamGroup] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group, lr = _group_of(name, num_blocks, optim)
        groups.setdefault(group, ParamGroup(name=group, params=[], lr=lr))["params"].append((name, param))
    return list(groups.values())


def _group_of(name: str, num_blocks: int, optim: Sam2OptimSpec) -> tuple[str, float]:
    if not name.startswith(VISION_PREFIX):
        return "base", optim.base_lr
    label, scale = _trunk_scale(name, num_blocks, optim.layer_decay) if name.startswith(TRUNK_PREFIX) else ("", 1.0)
    return ("vision", optim.vision_lr) if scale == 1.0 else (f"vision.{label}", optim.vision_lr * scale)


def _trunk_scale(name: str, num_blocks: int, decay: float) -> tuple[str, float]:
    """Group label and lr multiplier ``decay^(N + 1 - layer id)`` of a Hiera trunk parameter."""
    local = name[len(TRUNK_PREFIX) :]
    if "pos_embed" in local:  # official override of layer id 0
        return "", 1.0
    if local.startswith("patch_embed."):
        return "patch_embed", decay ** (num_blocks + 1)
    block = BLOCK.match(local)
    if block:
        return f"block{block[1]}", decay ** (num_blocks - int(block[1]))
    return "", 1.0  # layer id N + 1
