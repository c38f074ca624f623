"""Official SAM 2 state dicts ⇄ Hugging Face ``Sam2Model`` / ``Sam2VideoModel`` state dicts, and checkpoint conversion.

The mapping is pure renaming, written once as a table of ``(official, hf)`` key templates and used in both
directions, plus two tensor operations: the four official ``point_embeddings`` rows are stacked into HF's
``point_embed``, and the single official Fourier matrix is held twice by HF (prompt encoder and image grid).
The table covers the whole official model: image path and video-memory modules. Video-only tensors (memory
attention/encoder, object pointers) have no place in ``Sam2Model`` and are dropped when converting for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from segfit.models.sam2.build import HIERA, build_sam2, build_sam2_video

Tensor = torch.Tensor

PLACEHOLDERS = {
    "i": r"\d+",
    "p": r"weight|bias",
    "head": r"iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+",
    "rest": r".+",
}
"""What each ``{name}`` in a template matches. ``head`` = the three-layer MLPs of the mask decoder."""

RULES: tuple[tuple[str, str], ...] = (
    # Hiera trunk (official MLP.layers[0], [1] → HF proj_in, proj_out) and FPN neck
    ("image_encoder.trunk.patch_embed.proj.{p}", "vision_encoder.backbone.patch_embed.projection.{p}"),
    ("image_encoder.trunk.blocks.{i}.norm{i}.{p}", "vision_encoder.backbone.blocks.{i}.layer_norm{i}.{p}"),
    ("image_encoder.trunk.blocks.{i}.mlp.layers.0.{p}", "vision_encoder.backbone.blocks.{i}.mlp.proj_in.{p}"),
    ("image_encoder.trunk.blocks.{i}.mlp.layers.1.{p}", "vision_encoder.backbone.blocks.{i}.mlp.proj_out.{p}"),
    ("image_encoder.trunk.{rest}", "vision_encoder.backbone.{rest}"),
    ("image_encoder.neck.convs.{i}.conv.{p}", "vision_encoder.neck.convs.{i}.{p}"),
    ("no_mem_embed", "no_memory_embedding"),
    # prompt encoder (point_embeddings.{0..3} are stacked by _stack_point_embeddings)
    ("sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "prompt_encoder.shared_embedding.positional_embedding"),
    ("sam_prompt_encoder.mask_downscaling.0.{p}", "prompt_encoder.mask_embed.conv1.{p}"),
    ("sam_prompt_encoder.mask_downscaling.1.{p}", "prompt_encoder.mask_embed.layer_norm1.{p}"),
    ("sam_prompt_encoder.mask_downscaling.3.{p}", "prompt_encoder.mask_embed.conv2.{p}"),
    ("sam_prompt_encoder.mask_downscaling.4.{p}", "prompt_encoder.mask_embed.layer_norm2.{p}"),
    ("sam_prompt_encoder.mask_downscaling.6.{p}", "prompt_encoder.mask_embed.conv3.{p}"),
    ("sam_prompt_encoder.{rest}", "prompt_encoder.{rest}"),
    # mask decoder
    ("sam_mask_decoder.output_upscaling.0.{p}", "mask_decoder.upscale_conv1.{p}"),
    ("sam_mask_decoder.output_upscaling.1.{p}", "mask_decoder.upscale_layer_norm.{p}"),
    ("sam_mask_decoder.output_upscaling.3.{p}", "mask_decoder.upscale_conv2.{p}"),
    ("sam_mask_decoder.transformer.layers.{i}.norm{i}.{p}", "mask_decoder.transformer.layers.{i}.layer_norm{i}.{p}"),
    ("sam_mask_decoder.transformer.layers.{i}.mlp.layers.0.{p}", "mask_decoder.transformer.layers.{i}.mlp.proj_in.{p}"),
    ("sam_mask_decoder.transformer.layers.{i}.mlp.layers.1.{p}", "mask_decoder.transformer.layers.{i}.mlp.proj_out.{p}"),
    ("sam_mask_decoder.transformer.norm_final_attn.{p}", "mask_decoder.transformer.layer_norm_final_attn.{p}"),
    ("sam_mask_decoder.transformer.{rest}.out_proj.{p}", "mask_decoder.transformer.{rest}.o_proj.{p}"),
    ("sam_mask_decoder.{head}.layers.0.{p}", "mask_decoder.{head}.proj_in.{p}"),
    ("sam_mask_decoder.{head}.layers.1.{p}", "mask_decoder.{head}.layers.0.{p}"),
    ("sam_mask_decoder.{head}.layers.2.{p}", "mask_decoder.{head}.proj_out.{p}"),
    ("sam_mask_decoder.{rest}", "mask_decoder.{rest}"),
    # --- video model only ---
    # memory attention (q/k/v_proj, linear1/2 keep their names)
    ("memory_attention.norm.{p}", "memory_attention.layer_norm.{p}"),
    ("memory_attention.layers.{i}.norm{i}.{p}", "memory_attention.layers.{i}.layer_norm{i}.{p}"),
    ("memory_attention.{rest}.out_proj.{p}", "memory_attention.{rest}.o_proj.{p}"),
    ("memory_attention.{rest}", "memory_attention.{rest}"),
    # memory encoder: mask downsampler (official Sequential: conv, norm, GELU per stride-2 step; 1×1 conv last), fuser
    *(
        (f"memory_encoder.mask_downsampler.encoder.{3 * k + offset}.{{p}}", f"memory_encoder.mask_downsampler.layers.{k}.{name}.{{p}}")
        for k in range(4)
        for offset, name in ((0, "conv"), (1, "layer_norm"))
    ),
    ("memory_encoder.mask_downsampler.encoder.12.{p}", "memory_encoder.mask_downsampler.final_conv.{p}"),
    ("memory_encoder.pix_feat_proj.{p}", "memory_encoder.feature_projection.{p}"),
    ("memory_encoder.fuser.layers.{i}.dwconv.{p}", "memory_encoder.memory_fuser.layers.{i}.depthwise_conv.{p}"),
    ("memory_encoder.fuser.layers.{i}.pwconv1.{p}", "memory_encoder.memory_fuser.layers.{i}.pointwise_conv1.{p}"),
    ("memory_encoder.fuser.layers.{i}.pwconv2.{p}", "memory_encoder.memory_fuser.layers.{i}.pointwise_conv2.{p}"),
    ("memory_encoder.fuser.layers.{i}.norm.{p}", "memory_encoder.memory_fuser.layers.{i}.layer_norm.{p}"),
    ("memory_encoder.fuser.layers.{i}.gamma", "memory_encoder.memory_fuser.layers.{i}.scale"),
    ("memory_encoder.out_proj.{p}", "memory_encoder.projection.{p}"),
    # object pointers (three-layer MLP as the decoder heads), memory positional encodings, occlusion embedding
    ("obj_ptr_proj.layers.0.{p}", "object_pointer_proj.proj_in.{p}"),
    ("obj_ptr_proj.layers.1.{p}", "object_pointer_proj.layers.0.{p}"),
    ("obj_ptr_proj.layers.2.{p}", "object_pointer_proj.proj_out.{p}"),
    ("obj_ptr_tpos_proj.{p}", "temporal_positional_encoding_projection_layer.{p}"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("mask_downsample.{p}", "mask_downsample.{p}"),
)
"""Official key template → HF key template; the first rule whose template matches the whole key applies."""

POINT_EMBEDDINGS = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
HF_POINT_EMBED = "prompt_encoder.point_embed.weight"
HF_PROMPT_FOURIER = "prompt_encoder.shared_embedding.positional_embedding"
HF_IMAGE_FOURIER = "shared_image_embedding.positional_embedding"

OFFICIAL_VIDEO_ONLY = re.compile(
    r"(memory_attention|memory_encoder|mask_downsample|obj_ptr_proj|obj_ptr_tpos_proj)\..*"
    r"|maskmem_tpos_enc|no_mem_pos_enc|no_obj_ptr|no_obj_embed_spatial"
)
HF_VIDEO_ONLY = re.compile(
    r"(memory_|mask_downsample|object_pointer_proj|temporal_positional_encoding_projection_layer).*"
    r"|no_memory_positional_encoding|no_object_pointer|occlusion_spatial_embedding_parameter"
)
"""The video model's tensors (``Sam2PreTrainedModel`` ignores the same HF names when loading)."""

TRUNK_KEYS = {
    True: ("image_encoder.trunk.", "patch_embed.proj.weight"),
    False: ("vision_encoder.backbone.", "patch_embed.projection.weight"),
}
"""Per layout (official?): the trunk prefix and its patch-embedding weight, whose first dimension is the width."""

VERSION_2_1_KEYS = ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter")
"""Present in SAM 2.1 checkpoints only (official and HF name); image-only weights carry no version mark."""


def _compile(template: str) -> tuple[re.Pattern[str], str, list[str]]:
    """A template's full-match regex, its ``str.format`` output form (``{0}``, ``{1}``…) and its placeholders."""
    names = re.findall(r"\{(\w+)\}", template)
    literals = re.split(r"\{\w+\}", template)
    pattern = re.escape(literals[0]) + "".join(f"({PLACEHOLDERS[n]})" + re.escape(lit) for n, lit in zip(names, literals[1:]))
    output = literals[0] + "".join(f"{{{index}}}" + lit for index, lit in enumerate(literals[1:]))
    return re.compile(pattern), output, names


def _direction(source_side: int) -> list[tuple[re.Pattern[str], str]]:
    """The rules as (source regex, target output), reading each pair from ``source_side`` (0 official, 1 HF)."""
    compiled = []
    for rule in RULES:
        pattern, _, source_names = _compile(rule[source_side])
        _, output, target_names = _compile(rule[1 - source_side])
        if source_names != target_names:
            raise ValueError(f"rule {rule}: both sides must use the same placeholders in the same order")
        compiled.append((pattern, output))
    return compiled


_TO_HF = _direction(0)
_TO_OFFICIAL = _direction(1)


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]], layout: str) -> str:
    for pattern, output in rules:
        match = pattern.fullmatch(key)
        if match:
            return output.format(*match.groups())
    raise KeyError(f"{key!r} is not a SAM 2 key of the {layout} layout")


def official_to_hf(state_dict: dict[str, Tensor], video: bool = False) -> dict[str, Tensor]:
    """Official (``SAM2Base``) state dict → ``Sam2Model`` state dict, or ``Sam2VideoModel`` one with ``video``.

    Without ``video`` the video-only tensors are dropped; with it they are renamed too.
    """
    kept = state_dict if video else {k: v for k, v in state_dict.items() if not OFFICIAL_VIDEO_ONLY.fullmatch(k)}
    kept = dict(kept)
    point_rows = {int(m.group(1)): kept.pop(k) for k in list(kept) if (m := POINT_EMBEDDINGS.fullmatch(k))}
    converted = {_rename(k, _TO_HF, "official"): v for k, v in kept.items()}
    if point_rows:
        if sorted(point_rows) != list(range(len(point_rows))):
            raise KeyError(f"point_embeddings rows {sorted(point_rows)} are not numbered 0..{len(point_rows) - 1}")
        converted[HF_POINT_EMBED] = torch.cat([point_rows[i] for i in range(len(point_rows))], dim=0)
    if HF_PROMPT_FOURIER in converted:
        converted[HF_IMAGE_FOURIER] = converted[HF_PROMPT_FOURIER].clone()
    return converted


def hf_to_official(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``Sam2Model`` or ``Sam2VideoModel`` state dict → official keys, every tensor given (video ones included).

    From a ``Sam2VideoModel`` the result is the complete official model, which the reference ``build_sam2``
    loads strictly. From a ``Sam2Model`` it is the image path only: load it with ``strict=False``, and the
    ``missing_keys`` are exactly the video-only ones (``segfit.models.sam2.export`` writes complete files).
    """
    converted = dict(state_dict)
    image_fourier = converted.pop(HF_IMAGE_FOURIER, None)
    prompt_fourier = converted.get(HF_PROMPT_FOURIER)
    if image_fourier is not None and prompt_fourier is not None and not torch.equal(image_fourier, prompt_fourier):
        raise ValueError(
            f"{HF_IMAGE_FOURIER} differs from {HF_PROMPT_FOURIER}: the official model has one Fourier matrix for both"
        )
    point_embed = converted.pop(HF_POINT_EMBED, None)
    converted = {_rename(k, _TO_OFFICIAL, "Hugging Face"): v for k, v in converted.items()}
    if point_embed is not None:
        for row in range(point_embed.shape[0]):
            converted[f"sam_prompt_encoder.point_embeddings.{row}.weight"] = point_embed[row : row + 1].clone()
    return converted


def video_tensors(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The video-only tensors of a state dict in either layout, keys as given."""
    video = OFFICIAL_VIDEO_ONLY if is_official_layout(state_dict) else HF_VIDEO_ONLY
    return {k: v for k, v in state_dict.items() if video.fullmatch(k)}


def is_official_layout(state_dict: dict[str, Tensor]) -> bool:
    """True for official key names, False for HF ones; an error for anything else."""
    if any(k.startswith("image_encoder.trunk.") for k in state_dict):
        return True
    if any(k.startswith("vision_encoder.backbone.") for k in state_dict):
        return False
    raise ValueError(
        f"not a SAM 2 state dict: no image_encoder.trunk.* (official) or vision_encoder.backbone.* (Hugging Face) "
        f"keys; first keys: {list(state_dict)[:5]}"
    )


def infer_size_version(state_dict: dict[str, Tensor]) -> tuple[str, str]:
    """(size, version) of a SAM 2 state dict in either layout, from the trunk width and block count.

    Image-only weights (no video tensors) are the same for 2.0 and 2.1 and are reported as ``2.1``.
    """
    prefix, patch = TRUNK_KEYS[is_official_layout(state_dict)]
    patch_key = prefix + patch
    if patch_key not in state_dict:
        raise ValueError(f"not a SAM 2 state dict: {patch_key} is missing")
    width = state_dict[patch_key].shape[0]
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k))}
    found = (width, len(blocks))
    known = {(arch["hidden_size"], sum(arch["blocks_per_stage"])): size for size, arch in HIERA.items()}
    if found not in known:
        raise ValueError(
            f"unknown SAM 2 trunk: width {width} with {len(blocks)} blocks; known (width, blocks): "
            + ", ".join(f"{size} {key}" for key, size in known.items())
        )
    return known[found], checkpoint_version(state_dict) or "2.1"


def checkpoint_version(state_dict: dict[str, Tensor]) -> str | None:
    """``2.1`` or ``2.0`` when the video tensors tell (2.1 added ``no_obj_embed_spatial``), None for image-only weights."""
    if any(k in state_dict for k in VERSION_2_1_KEYS):
        return "2.1"
    return "2.0" if video_tensors(state_dict) else None


def convert_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Official ``.pt`` → Hugging Face directory at ``dst``; HF directory or ``.safetensors`` → official ``.pt``.

    The direction follows the key layout found in ``src``; size and version come from the weights. A file with
    video tensors goes through a ``Sam2VideoModel`` (the complete model is written), an image-only file through a
    ``Sam2Model``. The weights are loaded strictly into that model first, so a converted file always loads back.
    """
    # weights imports this module for the key table, so it is imported at use.
    from segfit.models.sam2.weights import apply_state_dict, read_state_dict, save_hf_dir, save_official_pt

    state_dict = read_state_dict(src)
    try:
        size, version = infer_size_version(state_dict)
        to_hf = is_official_layout(state_dict)
    except ValueError as error:
        raise ValueError(f"{src}: {error}") from error
    if not to_hf and Path(dst).suffix not in (".pt", ".pth"):
        raise ValueError(f"{dst}: the official checkpoint written from {src} must be a .pt or .pth file")
    build = build_sam2_video if video_tensors(state_dict) else build_sam2
    model = build(size, version)
    apply_state_dict(model, state_dict, src)
    return save_hf_dir(model, dst) if to_hf else save_official_pt(model, dst)
