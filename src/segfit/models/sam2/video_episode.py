"""The training episode of a batch of clips: prompts on the first frames, tracking with memory, correction clicks,
losses on every frame and step (the official ``SAM2Train.forward_tracking``), for every object of every clip at once.

Per batch (host draws from torch's CPU generator, so nothing waits for the device):

1. **Prompt kind**: clicks, a noisy box or the ground-truth masks for all objects, with ``prob_click`` /
   ``prob_box`` / ``prob_mask`` (official video: 0.25 / 0.25 / 0.5).
2. **Initial conditioning frames**: the first frame plus up to ``num_init_cond_frames - 1`` random others (1 to
   ``num_init_cond_frames`` in all, official 2), prompted and decoded without memory, before any other frame.
3. **Frames to correct** (clicks and boxes only): the initial frames plus random others, up to
   ``num_frames_to_correct`` (official 2). On each, ``num_correction_clicks`` clicks are added one step at a time,
   re-predicting with all clicks so far and the previous mask as input; a corrected frame becomes a
   conditioning frame (``add_all_frames_to_correct_as_cond``).
4. **Tracking**: the other frames in time order, each reading the memory (``video.track_frame``).

Every frame's every step is scored with the image losses (``losses.step_terms``), summed and divided by the number
of objects, as the official ``MultiStepMultiMasksAndIous`` reduces.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import Sam2VideoModel

from segfit.models.sam2.losses import LossWeights, MaskTargets, mean_iou, step_terms, total_losses
from segfit.models.sam2.simulate import PROMPT_KINDS, correction_click, first_points
from segfit.models.sam2.spec import Sam2LossSpec, Sam2PromptSpec
from segfit.models.sam2.video import ClipFeatures, FrameOutput, FramePrompts, Memory, remember, track_frame


def plan_frames(num_frames: int, kind: str, num_init_cond_frames: int,
                num_frames_to_correct: int) -> tuple[list[int], list[int]]:
    """Host draws of the initial conditioning frames (frame 0 first) and of the frames to correct."""
    num_init = int(torch.randint(1, min(num_init_cond_frames, num_frames) + 1, ()))
    others = (torch.randperm(num_frames - 1) + 1).tolist()
    init = [0, *sorted(others[: num_init - 1])]
    if kind == "mask":  # no correction clicks with mask prompts (official)
        return init, []
    num_correct = int(torch.randint(num_init, max(num_init, min(num_frames_to_correct, num_frames)) + 1, ()))
    return init, init + sorted(others[num_init - 1 : num_correct - 1])


def clip_episode(model: Sam2VideoModel, features: ClipFeatures, gt: Tensor, clip_index: Tensor, valid: Tensor | None,
                 prompts: Sam2PromptSpec, loss: Sam2LossSpec, num_init_cond_frames: int = 2,
                 num_frames_to_correct: int = 2) -> dict[str, Tensor]:
    """Loss terms of one episode: ``gt`` (T, N, S, S) bool, the masks of N objects in T frames at the model
    resolution; ``clip_index`` (N,) each object's clip in ``features``; ``valid`` (T, B, S, S) bool, False on
    ignored pixels (None: nothing ignored).

    Returns ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` (summed over frames and steps, divided by
    N), their weighted sum ``loss``, and ``iou``: the mean IoU of present objects at each frame's last step."""
    num_frames = len(gt)
    weights = LossWeights(loss.mask, loss.dice, loss.iou, loss.object_score)
    kind = PROMPT_KINDS[int(torch.multinomial(torch.tensor([prompts.prob_click, prompts.prob_box, prompts.prob_mask]), 1))]
    init, to_correct = plan_frames(num_frames, kind, num_init_cond_frames, num_frames_to_correct)
    low_size = tuple(features.high_res[0][0].shape[-2:])
    memory, terms, last_terms = Memory(), [], []
    order = init + [t for t in range(num_frames) if t not in init]
    for frame in order:
        frame_valid = None if valid is None else valid[frame][clip_index]
        targets = MaskTargets(gt[frame], frame_valid, low_size, loss.resolution, loss.num_points,
                              loss.oversample_ratio, loss.importance_sample_ratio)
        frame_prompts = None
        if frame in init:
            frame_prompts = (FramePrompts(masks=gt[frame]) if kind == "mask"
                             else FramePrompts(*first_points(kind, gt[frame], 1, prompts)))
        out = track_frame(model, features, frame, clip_index, memory, num_frames, frame_prompts, initial=frame in init)
        terms.append(_terms(out, targets, weights, loss))
        if frame in to_correct:
            for _ in range(prompts.num_correction_clicks):
                frame_prompts = _with_correction(frame_prompts, out, gt[frame], frame_valid, prompts)
                out = track_frame(model, features, frame, clip_index, memory, num_frames, frame_prompts,
                                  initial=frame in init, conditioned=out.conditioned)
                terms.append(_terms(out, targets, weights, loss))
        last_terms.append(terms[-1])
        if frame != order[-1]:  # no frame reads the last one's memory
            remember(model, features, frame, clip_index, memory, out, conditioning=frame in init or frame in to_correct)
    return {**total_losses(terms, gt.shape[1], weights), "iou": mean_iou(last_terms)}


def _with_correction(prompts: FramePrompts | None, out: FrameOutput, gt: Tensor, valid: Tensor | None,
                     spec: Sam2PromptSpec) -> FramePrompts:
    """The frame's prompts plus one correction click per object, and the chosen mask as the next mask input."""
    point, label, mask_input = correction_click(out.multimasks, out.ious, gt, valid, spec)
    if prompts is None or prompts.points is None:
        return FramePrompts(point, label, mask_input=mask_input)
    return FramePrompts(torch.cat((prompts.points, point), dim=1), torch.cat((prompts.labels, label), dim=1),
                        mask_input=mask_input)


def _terms(out: FrameOutput, targets: MaskTargets, weights: LossWeights, loss: Sam2LossSpec) -> dict[str, Tensor]:
    return step_terms(out.multimasks, out.ious, out.object_score_logits, targets, weights, loss.supervise_all_iou)
