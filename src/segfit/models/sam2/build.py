"""SAM 2 image models (``transformers.Sam2Model``) and video models (``Sam2VideoModel``) in the official sizes.

The shapes reproduce the official ``configs/sam2*/sam2*_hiera_{t,s,b+,l}.yaml``: the sizes differ only in the
Hiera trunk; the FPN neck, prompt encoder, mask decoder and the video-memory modules are the same everywhere.
SAM 2.0 and 2.1 differ only in video-memory parts (2.1 adds ``no_obj_embed_spatial`` and a projected temporal
encoding of the object pointers), so both versions give identical image models; the version is kept in the config
(``sam2_version``) so exports and messages can name it. ``test`` is a deliberately tiny variant with the same
code paths (windowed + global attention, q-pooling, FPN, two-way decoder, memory attention) for fast CPU tests.

Both models come from one set of sub-configs (``_sub_configs``): the video model is the image model plus memory
attention, memory encoder and object pointers, at any multiple-of-32 resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2PromptEncoderConfig,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VisionConfig,
)

RandomInit = Literal["transformers", "reference"]
"""How random weights are drawn: Hugging Face's ``_init_weights``, or ``init_like_reference``."""

SIZES = ("test", "tiny", "small", "base_plus", "large")
VERSIONS = ("2.0", "2.1")

HIERA: dict[str, dict] = {
    "test": dict(
        hidden_size=16,
        num_attention_heads=1,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 8, 4],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    ),
    "tiny": dict(
        hidden_size=96,
        num_attention_heads=1,
        blocks_per_stage=[1, 2, 7, 2],
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        window_size_per_stage=[8, 4, 14, 7],
        global_attention_blocks=[5, 7, 9],
        window_positional_embedding_background_size=[7, 7],
    ),
    "small": dict(
        hidden_size=96,
        num_attention_heads=1,
        blocks_per_stage=[1, 2, 11, 2],
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        window_size_per_stage=[8, 4, 14, 7],
        global_attention_blocks=[7, 10, 13],
        window_positional_embedding_background_size=[7, 7],
    ),
    "base_plus": dict(
        hidden_size=112,
        num_attention_heads=2,
        blocks_per_stage=[2, 3, 16, 3],
        embed_dim_per_stage=[112, 224, 448, 896],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        window_size_per_stage=[8, 4, 14, 7],
        global_attention_blocks=[12, 16, 20],
        window_positional_embedding_background_size=[14, 14],
    ),
    "large": dict(
        hidden_size=144,
        num_attention_heads=2,
        blocks_per_stage=[2, 6, 36, 4],
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        window_size_per_stage=[8, 4, 16, 8],
        global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7],
    ),
}
"""Hiera trunk per size: the official yaml values (heads double at each q-pool stage), and the tiny ``test`` one."""

HEAD_DIMS: dict[str, dict] = {
    "test": dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    "official": dict(hidden_size=256, mlp_dim=2048, num_attention_heads=8, iou_head_hidden_dim=256),
}
"""Neck / prompt encoder / mask decoder widths: one set for every official size, a small one for ``test``."""

VIDEO_TEST_HEAD_DIMS = dict(hidden_size=128, mlp_dim=128, num_attention_heads=2, iou_head_hidden_dim=32)
"""``test`` heads of the video model: 128 wide, not 32, so a ``test`` image checkpoint does not fit the ``test`` video
model. transformers' memory attention reads 64-channel memories (``kv_in_dim=64`` is fixed) and object pointers
are cut into 64-channel tokens; only that cut works (with 64-wide heads the uncut pointers keep an extra dimension
and ``torch.cat`` fails), so the heads must be a multiple of 64 above 64, as the official 256 is."""

MEMORY_DIMS: dict[str, dict] = {
    "test": dict(memory_attention_num_layers=2, memory_attention_feed_forward_hidden_size=128, memory_fuser_intermediate_dim=256),
    "official": dict(memory_attention_num_layers=4, memory_attention_feed_forward_hidden_size=2048, memory_fuser_intermediate_dim=1024),
}
"""Depth and inner widths of the memory modules; the official values are the yaml's (and ``Sam2VideoConfig``'s)."""

MEMORY_CHANNELS = 64
"""Channels of the stored memories (official ``memory_encoder.out_dim``; fixed by transformers' memory attention)."""


def sam2_config(size: str, version: str = "2.1", image_size: int = 1024) -> Sam2Config:
    """The ``Sam2Config`` of an official size (or ``test``) at a square input of ``image_size`` pixels."""
    heads = HEAD_DIMS["test" if size == "test" else "official"]
    return Sam2Config(**_sub_configs(size, version, image_size, heads), sam2_size=size, sam2_version=version)


def sam2_video_config(size: str, version: str = "2.1", image_size: int = 1024) -> Sam2VideoConfig:
    """The ``Sam2VideoConfig`` of an official size (or ``test``): the image model's sub-configs plus the memory modules.

    SAM 2.0 has neither the occlusion embedding nor the temporal encoding of object pointers (its yaml sets
    ``add_tpos_enc_to_obj_ptrs: false`` and omits ``no_obj_embed_spatial``); every other video setting is the
    same in both versions and equals ``Sam2VideoConfig``'s defaults. The memory attention's RoPE grid is the
    stride-16 feature grid, so it follows ``image_size``.
    """
    heads = VIDEO_TEST_HEAD_DIMS if size == "test" else HEAD_DIMS["official"]
    width = heads["hidden_size"]
    return Sam2VideoConfig(
        **_sub_configs(size, version, image_size, heads),
        image_size=image_size,
        memory_attention_rope_feat_sizes=[image_size // 16] * 2,
        enable_occlusion_spatial_embedding=version == "2.1",
        enable_temporal_pos_encoding_for_object_pointers=version == "2.1",
        memory_attention_hidden_size=width,
        memory_encoder_hidden_size=width,
        mask_downsampler_embed_dim=width,
        memory_fuser_embed_dim=width,
        memory_encoder_output_channels=MEMORY_CHANNELS,
        **MEMORY_DIMS["test" if size == "test" else "official"],
        sam2_size=size,
        sam2_version=version,
    )


def _sub_configs(size: str, version: str, image_size: int, heads: dict) -> dict:
    """Vision, prompt-encoder and mask-decoder configs shared by the image and the video model.

    The prompt encoder and mask decoder go as plain dicts: each model turns them into its own config class.
    """
    _check_choice("model.size", size, SIZES)
    _check_choice("model.version", version, VERSIONS)
    if image_size < 256 or image_size % 32:
        raise ValueError(
            f"model.image_size must be a multiple of 32 and at least 256, got {image_size}: the Hiera trunk has a "
            "stride-32 stage whose features the FPN upsamples ×2 and adds to the stride-16 ones"
        )
    hiera = Sam2HieraDetConfig(image_size=[image_size, image_size], **HIERA[size])
    vision = Sam2VisionConfig(
        backbone_config=hiera,
        backbone_channel_list=list(reversed(hiera.embed_dim_per_stage)),
        backbone_feature_sizes=[[image_size // stride] * 2 for stride in (4, 8, 16)],
        fpn_hidden_size=heads["hidden_size"],
    )
    prompt = dict(hidden_size=heads["hidden_size"], image_size=image_size, patch_size=16)
    return dict(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=dict(heads))


def build_sam2(
    size: str, version: str = "2.1", image_size: int = 1024, checkpoint: str | Path | None = None,
    random_init: RandomInit = "transformers",
) -> Sam2Model:
    """A ``Sam2Model`` with random weights (drawn as ``random_init`` says), or with ``checkpoint`` (any kind
    ``load_sam2_weights`` reads).

    Video tensors in ``checkpoint`` are skipped. The model remembers ``checkpoint`` as ``starting_checkpoint``:
    the official export takes the video modules from it (see ``segfit.models.sam2.export``).
    """
    return _build(Sam2Model(sam2_config(size, version, image_size)), checkpoint, random_init)


def build_sam2_video(
    size: str, version: str = "2.1", image_size: int = 1024, checkpoint: str | Path | None = None,
    random_init: RandomInit = "transformers",
) -> Sam2VideoModel:
    """A ``Sam2VideoModel`` with random weights (drawn as ``random_init`` says), or with a complete ``checkpoint``
    (image and video tensors)."""
    return _build(Sam2VideoModel(sam2_video_config(size, version, image_size)), checkpoint, random_init)


def _build(model, checkpoint: str | Path | None, random_init: RandomInit):
    # weights → convert → this module (for the size table), so weights is imported at use.
    from segfit.models.sam2.weights import load_sam2_weights

    if checkpoint is None:
        if random_init == "reference":
            init_like_reference(model)
        share_fourier_matrix(model)
    else:
        load_sam2_weights(model, checkpoint)
    model.starting_checkpoint = None if checkpoint is None else Path(checkpoint)
    return model


def set_stability_fallback(model: Sam2Model | Sam2VideoModel, enabled: bool) -> None:
    """Whether single-mask output falls back to the best multimask output when mask token 0 is unstable (eval mode
    only, as HF's ``dynamic_multimask_via_stability``); kept in the config too, so exports carry it."""
    model.mask_decoder.dynamic_multimask_via_stability = enabled
    model.config.mask_decoder_config.dynamic_multimask_via_stability = enabled


def set_memory_attention_dropout(model: Sam2VideoModel, p: float) -> None:
    """Dropout of the memory attention in training (official 0.1): on its layers' outputs and on its attention
    maps; kept in the config too, so exports carry it."""
    for module in model.memory_attention.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif hasattr(module, "dropout_p"):  # the RoPE attention's maps
            module.dropout_p = p
    model.config.memory_attention_dropout = model.config.memory_attention_rope_dropout = p


REFERENCE_INIT_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)
"""Layers whose random weights the reference leaves to PyTorch's defaults (it adds no initialisation of its own)."""


def init_like_reference(model: Sam2Model | Sam2VideoModel) -> None:
    """Redraw the random weights as Meta's reference model draws them: PyTorch's default initialisation (uniform
    linear and convolution weights of scale 1/√fan_in, N(0, 1) embeddings), not Hugging Face's N(0, 0.02).

    The scale decides whether a model trained from random weights learns to use its prompts: from Hugging Face's
    small weights the ``test`` size's decoder settled on one mask for every click of an image, even when given
    features that tell every object apart, and was still there after 600–800 steps; from the reference's it
    followed the click within a few hundred (README, "The demo"). Hugging Face's stays the default: tests pin
    behaviours of random models drawn that way.
    """
    for module in model.modules():
        if isinstance(module, REFERENCE_INIT_LAYERS):
            module.reset_parameters()


def share_fourier_matrix(model: Sam2Model | Sam2VideoModel) -> None:
    """Give both copies of the prompt/image positional-encoding matrix the same values.

    The reference has one matrix used for prompts and for the image grid; ``Sam2Model`` holds two buffers
    that random initialisation fills differently, which would make a random model unlike any SAM 2.
    """
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding
        )


def _check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{key}: unknown value {value!r}; valid: {', '.join(valid)}")
