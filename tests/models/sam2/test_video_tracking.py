"""segfit's batched, differentiable clip forward (``video.py``) against transformers' own video inference, and the
clip training episode built on it (``video_episode.py``)."""

from copy import deepcopy

import pytest
import torch
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from segfit.models.sam2 import video_episode
from segfit.models.sam2.build import build_sam2_video
from segfit.models.sam2.peft import enable_activation_checkpointing
from segfit.models.sam2.spec import Sam2LossSpec, Sam2PromptSpec
from segfit.models.sam2.video import FramePrompts, Memory, clip_features, remember, track_clip, track_frame

SIZE, FRAMES = 256, 4


@pytest.fixture(scope="module")
def model():
    """The ``test`` video model with every tensor perturbed (zero-initialised ones cannot hide a wrong path)."""
    model = build_sam2_video("test", image_size=SIZE)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def frames():
    """A clip whose frames change smoothly (a drifting pattern), (T, 3, S, S)."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 3, 8, 8, generator=gen)
    clip = [torch.nn.functional.interpolate(torch.roll(coarse, t, dims=-1), size=SIZE, mode="bilinear")[0]
            for t in range(FRAMES)]
    return torch.stack(clip)


@pytest.fixture(scope="module")
def masks():
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, 40:120, 60:150] = True
    masks[1, 150:230, 20:90] = True
    return masks


def transformers_logits(model, frames, points, labels) -> list[torch.Tensor]:
    """Per-frame low-res logits (N, 1, h, w) of ``Sam2VideoModel``'s inference, clicks on frame 0."""
    session = Sam2VideoInferenceSession(video=frames, video_height=SIZE, video_width=SIZE, dtype=torch.float32)
    num_objects = len(points)
    for i in range(num_objects):
        index = session.obj_id_to_idx(i + 1)
        session.add_point_inputs(index, 0, {"point_coords": points[i][None, None], "point_labels": labels[i][None, None]})
    session.obj_with_new_inputs = list(range(1, num_objects + 1))
    with torch.no_grad():
        return [model(inference_session=session, frame_idx=t).pred_masks.reshape(num_objects, 1, *([SIZE // 4] * 2))
                for t in range(FRAMES)]


def segfit_outputs(model, frames, prompts: FramePrompts):
    """Per-frame outputs of segfit's forward for all objects at once (memories made as at inference)."""
    features = clip_features(model, frames[:, None], encoder_grad=False)
    num_objects = len(prompts.points if prompts.points is not None else prompts.masks)
    return track_clip(model, features, torch.zeros(num_objects, dtype=torch.long), prompts)


POINTS = torch.tensor([[[100.0, 80.0]], [[50.0, 190.0]]])
LABELS = torch.ones(2, 1, dtype=torch.long)


def test_clicked_objects_track_as_transformers_infers(model, frames):
    """Mask prompts: transformers departs from Meta's predictor there; test_video_reference_parity.py compares
    segfit's tracking with Meta's for every prompt kind."""
    theirs = transformers_logits(model, frames, points=POINTS, labels=LABELS)
    with torch.no_grad():
        ours = segfit_outputs(model, frames, FramePrompts(points=POINTS, labels=LABELS))
        features = clip_features(model, frames[:, None], encoder_grad=False)
        no_memory = [track_frame(model, features, t, torch.zeros(2, dtype=torch.long), Memory(), FRAMES, initial=True)
                     for t in range(1, FRAMES)]
    for t, (mine, reference) in enumerate(zip(ours, theirs)):
        # the same maths batched over objects instead of one by one: float rounding (seen ≤ 2e-7; leaving out the
        # object pointers moved these logits by 1e-4 in a check)
        torch.testing.assert_close(mine.low_res, reference, rtol=0, atol=1e-5, msg=f"frame {t}")
    assert all((a.low_res - b.low_res).abs().max() > 1e-3 for a, b in zip(ours[1:], no_memory))  # memory is read


def test_memories_and_pointers_carry_gradients_across_frames(model, frames):
    """In train mode a loss on the last frame reaches the memory modules, the pointer projection and the first
    frame's click embedding."""
    model.train()
    try:
        features = clip_features(model, frames[:, None], encoder_grad=False)
        clip_index, memory = torch.zeros(2, dtype=torch.long), Memory()
        for t in range(FRAMES):
            prompts = FramePrompts(points=POINTS, labels=LABELS) if t == 0 else None
            out = track_frame(model, features, t, clip_index, memory, FRAMES, prompts, initial=t == 0)
            remember(model, features, t, clip_index, memory, out, conditioning=t == 0)
        out.multimasks.float().pow(2).mean().backward()
        for name in ("memory_attention.layers.0.cross_attn_image.k_proj.weight", "memory_encoder.projection.weight",
                     "object_pointer_proj.proj_in.weight", "memory_temporal_positional_encoding",
                     "prompt_encoder.point_embed.weight"):
            grad = model.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    finally:
        model.zero_grad()
        model.eval()


def test_objects_of_several_clips_gather_their_own_frames(model, frames, masks):
    """Two clips in one batch (the second a shifted copy) give each clip's objects what that clip alone gives."""
    clips = torch.stack((frames, frames.roll(17, dims=-1)), dim=1)  # (T, 2, 3, S, S)
    clip_index = torch.tensor([0, 1, 1])
    prompts = FramePrompts(masks=torch.stack((masks[0], masks[1], masks[0])))
    with torch.no_grad():
        batched, alone = track_clip(model, clip_features(model, clips, False), clip_index, prompts), []
        for clip in (0, 1):
            rows = clip_index == clip
            features = clip_features(model, clips[:, clip : clip + 1], False)
            alone.append(track_clip(model, features, torch.zeros(int(rows.sum()), dtype=torch.long),
                                    FramePrompts(masks=prompts.masks[rows])))
    for t in range(FRAMES):
        expected = torch.cat([alone[0][t].low_res, alone[1][t].low_res])
        # batched vs one clip: other matmul shapes, float rounding only
        torch.testing.assert_close(batched[t].low_res, expected, rtol=0, atol=1e-5, msg=f"frame {t}")


@pytest.mark.parametrize("kind", ["click", "box", "mask"])
def test_clip_episode_trains_every_frame_and_step(model, frames, masks, monkeypatch, kind):
    """One episode on two clips: decoder calls as planned, finite losses, gradients into the memory modules."""
    prompts = Sam2PromptSpec(**{f"prob_{k}": float(k == kind) for k in ("click", "box", "mask")},
                             num_correction_clicks=2)
    clips = torch.stack((frames, frames.flip(-1)), dim=1)
    gt = torch.stack([masks.roll(4 * t, dims=-1) for t in range(FRAMES)])[:, [0, 1, 0]]  # (T, 3, S, S)
    gt[2, 2] = False  # an object that leaves the third frame
    planned = []
    plan = video_episode.plan_frames
    monkeypatch.setattr(video_episode, "plan_frames", lambda *a: planned.append(plan(*a)) or planned[-1])
    calls, memories = [], []
    handles = [model.mask_decoder.register_forward_hook(lambda *_: calls.append(1)),
               model.memory_encoder.register_forward_hook(lambda *_: memories.append(1))]
    model.train()
    try:
        torch.manual_seed(3)
        valid = torch.ones(FRAMES, 2, SIZE, SIZE, dtype=torch.bool)
        valid[:, 1, :, :30] = False  # an ignored band in the second clip
        terms = video_episode.clip_episode(model, clip_features(model, clips, False), gt, torch.tensor([0, 0, 1]),
                                           valid, prompts, Sam2LossSpec())
        terms["loss"].backward()
        (init, to_correct), = planned
        # a decoder call per frame and correction step for all objects (mask-prompted frames: one for the pointer)
        assert len(calls) == FRAMES + 2 * len(to_correct)
        assert len(memories) == FRAMES - 1  # no frame reads the last frame's memory
        assert (kind == "mask") == (to_correct == []) and init[0] == 0 and set(init) <= set(to_correct or init)
        assert all(torch.isfinite(v) for v in terms.values())
        assert model.get_parameter("memory_encoder.projection.weight").grad.abs().sum() > 0
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad()
        model.eval()


def test_activation_checkpointing_recomputes_the_memory_attention_with_equal_gradients(model, frames, masks):
    """Same loss and gradients (≤1e-6) with and without; the memory attention (dropout on) runs twice per tracked
    frame with checkpointing: forward and recompute."""
    prompts = Sam2PromptSpec(prob_click=1.0, prob_box=0.0, prob_mask=0.0, num_correction_clicks=1)
    gt = torch.stack([masks.roll(4 * t, dims=-1) for t in range(FRAMES)])
    results = []
    for checkpointing in (False, True):
        copy = deepcopy(model).train()
        if checkpointing:
            enable_activation_checkpointing(copy)
        calls = []
        copy.memory_attention.register_forward_pre_hook(lambda *_: calls.append(1))  # recomputing stops early
        torch.manual_seed(3)
        terms = video_episode.clip_episode(copy, clip_features(copy, frames[:, None], True), gt,
                                           torch.zeros(2, dtype=torch.long), None, prompts, Sam2LossSpec())
        terms["loss"].backward()
        results.append((terms["loss"], {n: p.grad for n, p in copy.named_parameters()}, len(calls)))
    (loss, grads, calls), (loss_ckpt, grads_ckpt, calls_ckpt) = results
    assert calls_ckpt == 2 * calls > 0
    assert torch.equal(loss_ckpt, loss)  # the forward pass is the same code on the same numbers
    assert grads["memory_attention.layers.0.linear1.weight"].abs().sum() > 0
    for name, grad in grads.items():  # recomputing runs the same kernels (equal so far; gradients up to 3)
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=0, atol=1e-6, msg=name)


def test_a_two_frame_clip_given_whole_as_masks_has_nothing_to_train(model, frames, masks, monkeypatch):
    """Both frames prompted by their masks: the outputs are the masks themselves, the loss is finite and has no
    gradient (the engine steps over it; Meta's step crashes in backward on such clips)."""
    monkeypatch.setattr(video_episode, "plan_frames", lambda *args: ([0, 1], []))
    prompts = Sam2PromptSpec(prob_click=0.0, prob_box=0.0, prob_mask=1.0)
    gt = masks[None].expand(2, -1, -1, -1)
    model.train()
    try:
        terms = video_episode.clip_episode(model, clip_features(model, frames[:2, None], False), gt,
                                           torch.zeros(2, dtype=torch.long), None, prompts, Sam2LossSpec())
    finally:
        model.eval()
    assert torch.isfinite(terms["loss"]) and not terms["loss"].requires_grad


def test_variable_shape_attention_runs_without_cudnn_kernels(model, frames):
    """The decoder and the memory attention change shape with every object and memory count; cuDNN's attention
    builds a graph per shape (seconds per step on an H100), so their SDPA calls run with its kernels off."""
    seen = []
    hooks = [module.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
             for module in (model.mask_decoder, model.memory_attention)]
    try:
        with torch.no_grad():
            segfit_outputs(model, frames, FramePrompts(points=POINTS, labels=LABELS))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 2 * FRAMES - 1 and not any(seen)  # a decoder call per frame, memory attention after frame 0
    assert torch.backends.cuda.cudnn_sdp_enabled()  # the fixed-shape image encoder keeps PyTorch's choice
