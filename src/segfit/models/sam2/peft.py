"""Parameter- and memory-efficient fine-tuning of ``Sam2Model``: LoRA adapters (through ``peft``) and activation
checkpointing of the image-encoder blocks.

Adapters are injected in place, so the model stays a ``Sam2Model`` whose parameter names keep their part prefixes
(``vision_encoder.``, ``mask_decoder.``): freezing by part, parameter groups and the embedding cache work unchanged.
An adapted ``nn.Linear`` keeps its weights under ``<name>.base_layer.`` and adds ``<name>.lora_A.default.weight``
and ``<name>.lora_B.default.weight``; ``merge_lora`` folds them back into plain ``Sam2Model`` weights for export.
"""

from __future__ import annotations

import copy

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import Sam2Model, Sam2VideoModel

from segfit.models.sam2.spec import Sam2LoraSpec, Sam2ModelSpec

LORA_TARGETS = {
    "image_encoder": r"vision_encoder\.backbone\.blocks\.\d+\.attn\.(qkv|proj)",
    "mask_decoder": r"mask_decoder\.transformer\.(layers\.\d+\.\w+|final_attn_token_to_image)\.[qkvo]_proj",
}
"""Module names (full match) that get adapters, per part: the fused qkv and output projections of every Hiera
block's attention, and the q/k/v/o projections of all attentions of the mask decoder's two-way transformer
(self-attention, token→image, image→token, final token→image)."""

ADAPTER_NAME_PART = ".lora_"
"""Every adapter parameter's name contains this (``….lora_A.default.weight``); no ``Sam2Model`` name does."""


def is_adapter(param_name: str) -> bool:
    return ADAPTER_NAME_PART in param_name


def add_lora(model: Sam2Model, lora: Sam2LoraSpec, trainable: list[str]) -> None:
    """Inject LoRA adapters into ``model`` in place (nothing when ``lora.rank`` is 0).

    Adapters start as the identity (B = 0, A Kaiming-uniform), so the adapted model computes what the base model
    does until it trains; their output is scaled by ``alpha / rank``. peft leaves only the adapters trainable:
    set ``requires_grad`` afterwards (the recipe does: adapters plus the parts in ``model.trainable``).
    """
    if lora.rank == 0:
        return
    _check(lora, trainable)
    pattern = "|".join(f"({LORA_TARGETS[part]})" for part in lora.targets)
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern)
    inject_adapter_in_model(config, model)


def _check(lora: Sam2LoraSpec, trainable: list[str]) -> None:
    if lora.rank < 0:
        raise ValueError(f"model.lora.rank: {lora.rank} must be ≥ 0 (0 disables LoRA)")
    if lora.alpha <= 0:
        raise ValueError(f"model.lora.alpha: {lora.alpha:g} must be > 0 (adapter outputs are scaled by alpha / rank)")
    if not 0 <= lora.dropout < 1:
        raise ValueError(f"model.lora.dropout: {lora.dropout:g} must be in [0, 1)")
    if not lora.targets:
        raise ValueError("model.lora.targets: empty; list image_encoder and/or mask_decoder, or set model.lora.rank: 0")
    both = sorted(set(lora.targets) & set(trainable))
    if both:
        raise ValueError(
            f"model.lora.targets: {', '.join(both)} is also in model.trainable; a part is either fine-tuned fully "
            "(model.trainable) or through adapters (model.lora.targets), not both"
        )


def encoder_trains(model: Sam2ModelSpec) -> bool:
    """Whether training needs gradients through the image encoder: it is fine-tuned fully or has adapters."""
    encoder_lora = model.lora.rank > 0 and "image_encoder" in model.lora.targets
    return "image_encoder" in model.trainable or encoder_lora


def has_lora(model: Sam2Model) -> bool:
    return any(isinstance(module, BaseTunerLayer) for module in model.modules())


def merge_lora(model: Sam2Model) -> Sam2Model:
    """A plain ``Sam2Model`` computing what ``model`` computes: ``model`` itself when it has no adapters, else a
    copy whose adapted layers carry ``W + (alpha / rank)·B·A`` and whose state_dict has the plain HF key names.

    A copy, so the caller's model keeps training or evaluating with its adapters.
    """
    if not has_lora(model):
        return model
    merged = copy.deepcopy(model)
    adapted = [(name, module) for name, module in merged.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in adapted:
        module.merge()
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, module.get_base_layer())
    vars(merged).pop("peft_config", None)  # the record peft leaves on the model it adapted
    return merged


def enable_activation_checkpointing(model: Sam2Model | Sam2VideoModel) -> None:
    """Recompute each Hiera block's activations in the backward pass instead of keeping them, and in a video model
    the memory attention's too.

    The blocks are transformers ``GradientCheckpointingLayer``s, but ``Sam2PreTrainedModel`` does not declare
    ``supports_gradient_checkpointing``, so the flag is set on the backbone alone: this checkpoints the image-encoder
    blocks (not the mask decoder's, which are cheap). The memory attention's attention maps and feed-forward
    activations, with their dropout masks, are a video step's largest after the encoder's (``docs/video.md``); its
    flag is read by ``video.py``, which calls it. Non-reentrant checkpointing restores the RNG state, so dropout
    (LoRA dropout included) draws the same masks when recomputing, and gradients equal those without it.
    Active only in training mode with gradients on; a frozen encoder without adapters has nothing to recompute.
    """
    backbone = model.vision_encoder.backbone
    backbone.supports_gradient_checkpointing = True
    backbone.activation_checkpointing_enable({"use_reentrant": False})
    if isinstance(model, Sam2VideoModel):
        model.memory_attention.gradient_checkpointing = True
