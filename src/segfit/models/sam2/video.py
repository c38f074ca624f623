"""SAM 2 on clips with memory, differentiable and batched: segfit's tracking forward from ``Sam2VideoModel``'s parts.

transformers' video forward runs under ``inference_mode``, one object at a time, and keeps memories in bfloat16, so
it cannot train. This module runs the official ``SAM2Base.track_step`` flow frame by frame for the N objects of
all clips of a batch at once, each gathering its clip's frame features by index (as the image episode does):

- a frame prompted with a mask outputs that mask as logits (±10) and decodes an object pointer from it;
- a frame prompted with clicks or a box decodes without memory (``no_memory_embedding`` added), as the first
  frame of a track;
- every other frame attends to the memories of the conditioning frames and of the ``num_maskmem - 1`` frames
  before it, and to the object pointers of up to ``max_object_pointers_in_encoder`` frames, then decodes;
- each frame's chosen mask is encoded into a memory (sigmoid of its logits), float32 unless asked otherwise.

Gradients flow through memories and object pointers across frames. In eval mode only past conditioning frames
give object pointers, as at inference; ``track_clip`` makes and stores memories as Meta's video predictor does, which
the tests compare this forward with (and with transformers' video inference).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from transformers import Sam2VideoModel

from segfit.models.sam2.attention import variable_shape_attention

MASK_AS_OUTPUT = (20.0, -10.0)
"""Scale and bias turning a prompted mask into logits (−10 outside, +10 inside), as the official model does."""

NO_OBJECT_LOGIT = -1024.0
"""Mask logits of an object scored absent: the official model's hard choice, which the memory relies on."""


@dataclass
class ClipFeatures:
    """Image-path outputs of T frames of B clips: what decoding and memory encoding read, per frame."""

    high_res: list[tuple[Tensor, Tensor]]
    """Per frame: the decoder-projected stride-4 and stride-8 features, ``(B, C0, 4h, 4w)``, ``(B, C1, 2h, 2w)``."""
    top: list[Tensor]
    """Per frame: the stride-16 features ``(B, C, h, w)`` (no memory embedding added)."""
    top_pos: list[Tensor]
    """Per frame: their position encoding ``(B, C, h, w)``."""

    def of_objects(self, frame: int, clip_index: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """One frame's features for N objects: views for a single clip, gathered by ``clip_index`` for several."""
        levels = [*self.high_res[frame], self.top[frame], self.top_pos[frame]]
        if levels[0].shape[0] == 1:
            levels = [level.expand(len(clip_index), -1, -1, -1) for level in levels]
        else:
            levels = [level.index_select(0, clip_index) for level in levels]
        return levels[:2], levels[2], levels[3]


def clip_features(model: Sam2VideoModel, frames: Tensor, encoder_grad: bool,
                  frames_per_call: int | None = None) -> ClipFeatures:
    """``frames`` ``(T, B, 3, S, S)`` normalised pixels → per-frame features: the T·B images in one encoder call,
    or ``frames_per_call`` frames at a time (long videos at evaluation)."""
    chunk = frames_per_call or len(frames)
    features = ClipFeatures([], [], [])
    for start in range(0, len(frames), chunk):
        part = frames[start : start + chunk]
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            out = model.vision_encoder(part.flatten(0, 1), return_dict=True)
            stride4, stride8, top = out.fpn_hidden_states
            levels = [model.mask_decoder.conv_s0(stride4), model.mask_decoder.conv_s1(stride8), top,
                      out.fpn_position_encoding[-1]]
        per_frame = [level.unflatten(0, (len(part), -1)).unbind(0) for level in levels]
        features.high_res.extend(zip(per_frame[0], per_frame[1]))
        features.top.extend(per_frame[2])
        features.top_pos.extend(per_frame[3])
    return features


@dataclass
class FramePrompts:
    """The prompts of a conditioning frame, one kind for all N objects: clicks / box corners, or masks."""

    points: Tensor | None = None
    """(N, k, 2) in the model input frame, with ``labels`` (N, k) (1, 0, -1, and 2 / 3 for box corners)."""
    labels: Tensor | None = None
    masks: Tensor | None = None
    """(N, S, S) bool or [0, 1] float at the model resolution: output as they are."""
    mask_input: Tensor | None = None
    """(N, 1, h, w) low-res logits fed back with correction clicks."""


@dataclass
class FrameOutput:
    """One frame's outputs for N objects."""

    multimasks: Tensor
    """(N, M, h, w) low-res logits of every predicted mask (M = 3 with multimask output), for the losses."""
    ious: Tensor
    """(N, M) predicted IoUs."""
    object_score_logits: Tensor
    """(N, 1)."""
    low_res: Tensor
    """(N, 1, h, w) the chosen mask's low-res logits (the highest predicted IoU)."""
    high_res: Tensor
    """(N, 1, S, S) those logits upsampled to the model resolution: what the memory encodes."""
    pointer: Tensor
    """(N, C) the object pointer."""
    conditioned: Tensor
    """(N, C, h, w) the stride-16 features the decoder read (after the memory attention, on tracked frames)."""


@dataclass
class Memory:
    """What the frames tracked so far leave to the next ones, for N objects."""

    features: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    """frame → (memory (N, Cm, h, w), its position encoding)."""
    pointers: dict[int, Tensor] = field(default_factory=dict)
    """frame → object pointers (N, C)."""
    conditioning: set[int] = field(default_factory=set)
    """Frames whose outputs came from prompts (their memories are always attended to)."""


def track_frame(model: Sam2VideoModel, features: ClipFeatures, frame: int, clip_index: Tensor, memory: Memory,
                num_frames: int, prompts: FramePrompts | None = None, initial: bool = False,
                conditioned: Tensor | None = None) -> FrameOutput:
    """Predict one frame for N objects. ``initial``: a prompted frame that starts the track (no memory read);
    a prompted frame that is not initial (e.g. a corrected one) still reads the memory. ``conditioned``: the
    frame's features as an earlier call conditioned them (``FrameOutput.conditioned``; correction steps reuse them)."""
    high_res, top, top_pos = features.of_objects(frame, clip_index)
    if prompts is not None and prompts.masks is not None:
        return _mask_as_output(model, high_res, top, prompts.masks)
    if conditioned is not None:
        pix_feat = conditioned
    elif initial:
        pix_feat = top + model.no_memory_embedding.reshape(1, -1, 1, 1)
    else:
        pix_feat = _condition_on_memory(model, top, top_pos, memory, frame, num_frames)
    points = labels = mask_input = None
    if prompts is not None:
        points, labels, mask_input = prompts.points, prompts.labels, prompts.mask_input
    return _decode(model, high_res, pix_feat, points, labels, mask_input, _multimask(model, initial, labels))


def remember(model: Sam2VideoModel, features: ClipFeatures, frame: int, clip_index: Tensor, memory: Memory,
             output: FrameOutput, conditioning: bool, binarize: bool = False,
             memory_dtype: torch.dtype = torch.float32) -> None:
    """Encode ``output``'s mask into ``frame``'s memory and keep its object pointer (``conditioning``: a prompted
    frame, whose memory every later frame reads). ``binarize`` encodes ``logits > 0`` instead of their sigmoid, as
    inference does for masks predicted from clicks (training never binarises)."""
    _, top, _ = features.of_objects(frame, clip_index)
    cfg = model.config
    masks = output.high_res.float()
    mask_size = tuple(4 * s for s in model.prompt_encoder.mask_input_size)
    if masks.shape[-2:] != mask_size:
        masks = F.interpolate(masks, size=mask_size, mode="bilinear", align_corners=False, antialias=True)
    weights = (masks > 0).float() if binarize else masks.sigmoid()
    weights = weights * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
    memory_features, position = model.memory_encoder(top, weights.to(top.dtype))
    if model.occlusion_spatial_embedding_parameter is not None:  # marks the memory of a frame the object is absent in
        absent = (output.object_score_logits <= 0).to(memory_features.dtype)[:, :, None, None]
        memory_features = memory_features + absent * model.occlusion_spatial_embedding_parameter[..., None, None]
    memory.features[frame] = (memory_features.to(memory_dtype), position)
    memory.pointers[frame] = output.pointer
    if conditioning:
        memory.conditioning.add(frame)


def track_clip(model: Sam2VideoModel, features: ClipFeatures, clip_index: Tensor, first: FramePrompts) -> list[FrameOutput]:
    """Prompts on the first frame, every other frame tracked in order from memory: the semi-supervised protocol of
    evaluation and inference, with memories made as Meta's ``SAM2VideoPredictor`` makes them (the prompted frame's
    mask binarised, and for a mask prompt taken from its low-resolution logits; memories stored in bfloat16)."""
    num_frames = len(features.top)
    memory, outputs = Memory(), []
    for frame in range(num_frames):
        out = track_frame(model, features, frame, clip_index, memory, num_frames, first if frame == 0 else None,
                          initial=frame == 0)
        outputs.append(out)
        if frame == num_frames - 1:
            break
        if frame == 0 and first.masks is not None:
            out = replace(out, high_res=_upsample(model, out.low_res))
        remember(model, features, frame, clip_index, memory, out, conditioning=frame == 0, binarize=frame == 0,
                 memory_dtype=torch.bfloat16)
    return outputs


def _multimask(model: Sam2VideoModel, initial: bool, labels: Tensor | None) -> bool:
    """The official rule: several masks for 0 or 1 prompt point, on initial frames (or tracking ones if asked)."""
    cfg = model.config
    num_points = 0 if labels is None else labels.shape[1]
    return (cfg.multimask_output_in_sam and (initial or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num)


@variable_shape_attention()
def _decode(model: Sam2VideoModel, high_res: list[Tensor], pix_feat: Tensor, points: Tensor | None,
            labels: Tensor | None, mask_input: Tensor | None, multimask: bool) -> FrameOutput:
    """Prompt encoder + mask decoder for N objects (the batch dimension), masks of absent objects set to −1024,
    the best mask by predicted IoU chosen, its output token turned into the object pointer."""
    n = len(pix_feat)
    if points is None:  # no prompt: one "not a point" token, as the official model pads
        points = pix_feat.new_zeros(n, 1, 2)
        labels = torch.full((n, 1), -1, dtype=torch.long, device=pix_feat.device)
    sparse, dense = model.prompt_encoder(input_points=points[:, None], input_labels=labels[:, None], input_boxes=None,
                                         input_masks=mask_input)
    multimasks, ious, tokens, object_score_logits = model.mask_decoder(
        image_embeddings=pix_feat, image_positional_embeddings=model.get_image_wide_positional_embeddings().expand(n, -1, -1, -1),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        high_resolution_features=high_res,
    )
    multimasks, ious, tokens, object_score_logits = multimasks[:, 0], ious[:, 0], tokens[:, 0], object_score_logits[:, 0]
    present = object_score_logits > 0
    multimasks = torch.where(present[:, :, None, None], multimasks, NO_OBJECT_LOGIT)
    best = ious.argmax(dim=1)
    rows = torch.arange(n, device=best.device)
    low_res = multimasks[rows, best][:, None]
    token = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]
    pointer = _gate_pointer(model, model.object_pointer_proj(token), present)
    return FrameOutput(multimasks, ious, object_score_logits, low_res, _upsample(model, low_res), pointer, pix_feat)


def _mask_as_output(model: Sam2VideoModel, high_res: list[Tensor], top: Tensor, masks: Tensor) -> FrameOutput:
    """A prompted mask as the frame's output: logits ±10, IoU 1, present where the mask is not empty, and the
    object pointer the decoder gives for that mask as a (downsampled) mask prompt."""
    scale, bias = MASK_AS_OUTPUT
    masks = masks[:, None].to(top.dtype)
    size = (model.image_size, model.image_size)
    if masks.shape[-2:] != size:
        masks = F.interpolate(masks.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    high = masks * scale + bias
    low = F.interpolate(high.float(), size=model.prompt_encoder.mask_input_size, mode="bilinear",
                        align_corners=False, antialias=True).to(top.dtype)
    decoded = _decode(model, high_res, top, None, None, model.mask_downsample(masks), multimask=False)
    present = masks.flatten(1).gt(0).any(dim=1, keepdim=True)
    object_score_logits = scale * present.to(top.dtype) + bias
    pointer = _gate_pointer(model, decoded.pointer, present)
    return FrameOutput(low, torch.ones_like(object_score_logits), object_score_logits, low, high, pointer, top)


def _gate_pointer(model: Sam2VideoModel, pointer: Tensor, present: Tensor) -> Tensor:
    """The pointer of a present object, ``no_object_pointer`` for an absent one (``present`` (N, 1) bool)."""
    weight = present.to(pointer.dtype)
    return weight * pointer + (1 - weight) * model.no_object_pointer


def _upsample(model: Sam2VideoModel, low_res: Tensor) -> Tensor:
    size = (model.image_size, model.image_size)
    return F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False).to(low_res.dtype)


@variable_shape_attention()
def _condition_on_memory(model: Sam2VideoModel, top: Tensor, top_pos: Tensor, memory: Memory, frame: int,
                         num_frames: int) -> Tensor:
    """The frame's stride-16 features after attending to the memories and object pointers of earlier frames."""
    cfg = model.config
    n, channels, h, w = top.shape
    selected, _ = model._select_closest_cond_frames(frame, dict.fromkeys(memory.conditioning), cfg.max_cond_frame_num)
    offsets = [(0, f) for f in selected]  # temporal offset 0: the conditioning frames' own encoding
    for offset in range(model.num_maskmem - 1, 0, -1):
        previous = frame - offset
        if previous in memory.features and previous not in selected:
            offsets.append((offset, previous))
    tokens, positions = [], []
    for offset, f in offsets:
        features, position = memory.features[f]
        tokens.append(_sequence(features.to(top.dtype)))
        positions.append(_sequence(position) + model.memory_temporal_positional_encoding[offset - 1])
    pointer_offsets, pointers, max_pointers = _pointer_inputs(model, memory, frame, num_frames)
    num_pointer_tokens = 0
    if pointers:
        pointer_tokens, pointer_positions = model._process_object_pointers(
            pointer_offsets, pointers, max_pointers, n, channels, top.device)
        tokens.append(pointer_tokens)
        positions.append(pointer_positions)
        num_pointer_tokens = len(pointer_tokens)
    attended = _attend(
        model.memory_attention, current_vision_features=_sequence(top),
        current_vision_position_embeddings=_sequence(top_pos), memory=torch.cat(tokens),
        memory_posision_embeddings=torch.cat(positions), num_object_pointer_tokens=num_pointer_tokens,
    )  # (1, N, h·w, C)
    return attended[0].transpose(1, 2).reshape(n, channels, h, w)


def _attend(attention: torch.nn.Module, **inputs: Tensor | int) -> Tensor:
    """The memory attention, recomputed in the backward pass when its ``gradient_checkpointing`` flag is set
    (``peft.enable_activation_checkpointing``); non-reentrant, so dropout redraws the same masks."""
    if getattr(attention, "gradient_checkpointing", False) and attention.training and torch.is_grad_enabled():
        return checkpoint(attention, use_reentrant=False, **inputs)
    return attention(**inputs)


def _pointer_inputs(model: Sam2VideoModel, memory: Memory, frame: int,
                    num_frames: int) -> tuple[list[int], list[Tensor], int]:
    """Temporal offsets and object pointers of the conditioning frames (in eval mode only those not after this
    one) and of up to ``max_object_pointers_in_encoder - 1`` tracked frames before it. Clips played backwards are
    reversed by the sampler, so tracking always runs forwards."""
    max_pointers = min(num_frames, model.config.max_object_pointers_in_encoder)
    offsets, pointers = [], []
    for f in sorted(memory.conditioning):
        if model.training or f <= frame:
            offsets.append(frame - f)
            pointers.append(memory.pointers[f])
    for distance in range(1, max_pointers):
        previous = frame - distance
        if previous < 0:
            break
        if previous in memory.pointers and previous not in memory.conditioning:
            offsets.append(distance)
            pointers.append(memory.pointers[previous])
    return offsets, pointers, max_pointers


def _sequence(maps: Tensor) -> Tensor:
    """(N, C, h, w) → (h·w, N, C), the memory attention's layout."""
    return maps.flatten(2).permute(2, 0, 1)
