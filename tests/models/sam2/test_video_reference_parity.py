"""segfit's complete SAM 2 checkpoints in Meta's video predictor, and ``Sam2VideoModel`` tracking as it does.

Random reference weights, every tensor perturbed so zero-initialised or duplicated parameters cannot hide a wrong
mapping. The reference video model is saved as an official ``.pt``, loaded through segfit's ``build_sam2_video``,
exported again with segfit's ``export_official_pt`` and loaded (strictly) by ``build_sam2_video_predictor``;
that predictor and transformers' own video inference (``Sam2VideoModel`` + ``Sam2VideoInferenceSession``) then
track the same clip: one object prompted by a first-frame mask, one by a positive and a negative click, one by a
single click (multimask output). Both get the same preprocessed frames: the reference loads the JPEG frames
(PIL resize to the model size), and that tensor is handed to the session (the HF video processor resizes
differently, by about one grey level, which would move the logits by ~1e-2).

Clicked objects match as transformers ships. A mask-prompted object does not: transformers (5.24) departs from
Meta's predictor twice on the mask path (``official_mask_path`` below), by up to ~5e-4 in the logits of the
frames after the mask. With those two steps done as Meta does them, every object matches to ≤1e-6.

segfit's own tracking forward is compared with the predictor on that clip, on an 18-frame one that passes both
memory windows, and after exporting a "fine-tuned" video model that the predictor loads.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    Sam2ImageProcessor,
    Sam2VideoInferenceSession,
    Sam2VideoModel,
    Sam2VideoProcessor,
    Sam2VideoVideoProcessor,
)

from segfit.models.sam2.build import build_sam2, build_sam2_video
from segfit.models.sam2.export import export_official_pt
from segfit.models.sam2.preprocess import points_to_model
from segfit.models.sam2.video import FramePrompts, clip_features, track_clip
from segfit.models.sam2.video_inference import mask_prompts

pytestmark = [pytest.mark.reference, pytest.mark.slow]

REFERENCE_YAML = {"2.0": "configs/sam2/sam2_hiera_t.yaml", "2.1": "configs/sam2.1/sam2.1_hiera_t.yaml"}
SIZE = 256
"""Model input: the smallest segfit allows, so a 4-frame clip tracks in seconds on a CPU."""
FRAMES, HEIGHT, WIDTH = 4, 96, 128
MASK_OBJECT, CLICKS_OBJECT, CLICK_OBJECT = 1, 2, 3
CLICKS = (np.array([[40.0, 30.0], [90.0, 70.0]]), np.array([1, 0]))
CLICK = (np.array([[100.0, 20.0]]), np.array([1]))
LOGIT_TOLERANCE = 1e-4
LONG_FRAMES = 18
"""Past both memory windows of SAM 2: the last frame reads the memories of the prompted frame and the 6 frames
before it (``num_maskmem`` 7) and the object pointers of the prompted frame and the 15 frames before it
(``max_object_pointers_in_encoder`` 16): frame 17 is the first that leaves a frame's pointer out."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """``clip(frames)``: a smooth random clip drifting right by 3 px a frame, as JPEG frames ``0.jpg``…, and a
    first-frame mask."""
    made = {}

    def make(frames: int = FRAMES):
        if frames not in made:
            coarse = np.random.default_rng(5).integers(0, 256, (6, 12, 3), dtype=np.uint8)
            wide = np.array(Image.fromarray(coarse).resize((WIDTH + 3 * frames, HEIGHT), Image.BICUBIC))
            folder = tmp_path_factory.mktemp(f"clip_{frames}")
            for t in range(frames):
                shift = 3 * (frames - t)
                Image.fromarray(wide[:, shift : shift + WIDTH]).save(folder / f"{t}.jpg", quality=95)
            rows, cols = np.mgrid[:HEIGHT, :WIDTH]
            made[frames] = folder, ((rows - 50) / 20) ** 2 + ((cols - 60) / 30) ** 2 <= 1
        return made[frames]

    return make


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """``official(version)``: Meta's tiny video predictor at ``SIZE`` with perturbed random weights, and its ``.pt``."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2_video_predictor

    built = {}

    def make(version: str):
        if version not in built:
            predictor = build_sam2_video_predictor(
                REFERENCE_YAML[version], ckpt_path=None, device="cpu", hydra_overrides_extra=[f"++model.image_size={SIZE}"]
            )
            predictor.fill_hole_area = 0  # needs Meta's CUDA extension; transformers' model has no hole filling either
            generator = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for tensor in predictor.state_dict().values():
                    tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
                # random weights score every object as absent (masks all -1024): make them present so masks are compared
                predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(5.0)
            path = tmp_path_factory.mktemp(f"official_{version}") / ("sam2_hiera_tiny.pt" if version == "2.0" else "sam2.1_hiera_tiny.pt")
            torch.save({"model": predictor.state_dict()}, path)
            built[version] = predictor, path
        return built[version]

    return make


def load_reference(yaml: str, checkpoint):
    """Meta's video predictor loading ``checkpoint`` strictly; hole filling off (it needs Meta's CUDA extension)."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        yaml, ckpt_path=str(checkpoint), device="cpu", hydra_overrides_extra=[f"++model.image_size={SIZE}"]
    )
    predictor.fill_hole_area = 0  # needs Meta's CUDA extension; transformers' model has no hole filling either
    return predictor


def reference_track(predictor, folder, mask) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The preprocessed frames, and per frame the low-res logits of every object (object order as added)."""
    state = predictor.init_state(video_path=str(folder))
    with torch.no_grad():
        predictor.add_new_mask(state, frame_idx=0, obj_id=MASK_OBJECT, mask=mask)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=CLICKS_OBJECT, points=CLICKS[0], labels=CLICKS[1])
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=CLICK_OBJECT, points=CLICK[0], labels=CLICK[1])
        for _ in predictor.propagate_in_video(state):
            pass
    logits = {}
    for t in range(state["num_frames"]):
        per_object = []
        for obj_idx in range(len(state["obj_ids"])):
            outputs = state["output_dict_per_obj"][obj_idx]
            stored = outputs["cond_frame_outputs"].get(t) or outputs["non_cond_frame_outputs"][t]
            per_object.append(stored["pred_masks"])
        logits[t] = torch.cat(per_object)
    return state["images"], logits


def transformers_track(model, frames: torch.Tensor, mask) -> dict[int, torch.Tensor]:
    """transformers' own video inference: processor for the prompts, one forward per prompted object, then propagation."""
    processor = Sam2VideoProcessor(Sam2ImageProcessor(), Sam2VideoVideoProcessor(), target_size=SIZE)
    session = Sam2VideoInferenceSession(video=frames, video_height=HEIGHT, video_width=WIDTH, dtype=torch.float32)
    prompts = [
        dict(obj_ids=[MASK_OBJECT], input_masks=[torch.from_numpy(mask)]),
        dict(obj_ids=[CLICKS_OBJECT], input_points=[[CLICKS[0].tolist()]], input_labels=[[CLICKS[1].tolist()]]),
        dict(obj_ids=[CLICK_OBJECT], input_points=[[CLICK[0].tolist()]], input_labels=[[CLICK[1].tolist()]]),
    ]
    for prompt in prompts:  # the session keeps only the last call's objects as "new", so each is run at once
        processor.add_inputs_to_inference_session(session, frame_idx=0, **prompt)
        model(inference_session=session, frame_idx=0)
    return {out.frame_idx: out.pred_masks for out in model.propagate_in_video_iterator(session, start_frame_idx=0)}


def official_mask_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``Sam2VideoModel`` treat a mask prompt as Meta's ``SAM2VideoPredictor`` does.

    1. The object pointer of a mask prompt: Meta's ``_use_mask_as_output`` runs the decoder with one output mask
       (token 0); transformers' leaves ``multimask_output`` at its default True and takes the best of three.
    2. The memory of a prompted frame: Meta encodes the low-resolution mask upsampled back to the model size
       (``propagate_in_video_preflight``); transformers encodes the full-size input mask, so the boundary differs.
    """
    single_frame_forward = Sam2VideoModel._single_frame_forward
    use_mask_as_output = Sam2VideoModel._use_mask_as_output

    def pointer_from_one_mask(self, *args, **kwargs):
        kwargs.setdefault("multimask_output", False)  # only _use_mask_as_output leaves it unset
        return single_frame_forward(self, *args, **kwargs)

    def memory_from_low_res(self, *args, **kwargs):
        out = use_mask_as_output(self, *args, **kwargs)
        out.high_res_masks = F.interpolate(out.pred_masks, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        return out

    monkeypatch.setattr(Sam2VideoModel, "_single_frame_forward", pointer_from_one_mask)
    monkeypatch.setattr(Sam2VideoModel, "_use_mask_as_output", memory_from_low_res)


def assert_tracked(logits: dict[int, torch.Tensor]) -> None:
    """Every object tracked after the prompted frame, none scored "absent" (logits -1024), so masks are compared."""
    tracked = torch.stack([logits[t] for t in range(1, len(logits))])
    assert (tracked > 0).any() and (tracked < 0).any() and (tracked > -1000).all()


def max_difference(got: dict[int, torch.Tensor], expected: dict[int, torch.Tensor], objects: slice,
                   frames: int = FRAMES) -> float:
    assert sorted(got) == sorted(expected) == list(range(frames))
    for t in range(frames):
        assert got[t].shape == expected[t].shape == (3, 1, SIZE // 4, SIZE // 4)
    return max((got[t][objects] - expected[t][objects]).abs().max().item() for t in range(frames))


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_video_tracking_matches_reference(version, official, clip, tmp_path, monkeypatch):
    folder, mask = clip()
    predictor, checkpoint = official(version)
    model = build_sam2_video("tiny", version, SIZE, checkpoint=checkpoint).eval()
    exported = torch.load(export_official_pt(model, tmp_path / "exported.pt"), weights_only=True)["model"]
    reference = predictor.state_dict()
    assert sorted(exported) == sorted(reference) and all(torch.equal(exported[k], v) for k, v in reference.items())

    frames, expected = reference_track(predictor, folder, mask)
    assert_tracked(expected)

    as_shipped = transformers_track(model, frames, mask)
    assert max_difference(as_shipped, expected, slice(1, 3)) <= LOGIT_TOLERANCE  # the clicked objects
    with monkeypatch.context() as patch:
        official_mask_path(patch)
        assert max_difference(transformers_track(model, frames, mask), expected, slice(0, 3)) <= LOGIT_TOLERANCE


def test_completed_image_model_loads_in_reference_video_predictor(official, tmp_path):
    """A fine-tuned image model's export: its image tensors on the starting checkpoint's video modules.

    ``build_sam2_video_predictor`` loads it strictly (as it loads a release checkpoint).
    """
    predictor, checkpoint = official("2.1")
    start = predictor.state_dict()
    model = build_sam2("tiny", "2.1", SIZE, checkpoint=checkpoint)
    with torch.no_grad():  # "fine-tuning"
        model.mask_decoder.iou_token.weight.add_(1.0)
        model.vision_encoder.backbone.patch_embed.projection.bias.add_(1.0)

    loaded = load_reference(REFERENCE_YAML["2.1"], export_official_pt(model, tmp_path / "exported.pt")).state_dict()
    assert sorted(loaded) == sorted(start)
    changed = sorted(k for k in start if not torch.equal(loaded[k], start[k]))
    assert changed == ["image_encoder.trunk.patch_embed.proj.bias", "sam_mask_decoder.iou_token.weight"]


def segfit_track(model, frames: torch.Tensor, mask) -> dict[int, torch.Tensor]:
    """segfit's own tracking forward (``video.track_clip``) for the three objects, one prompt kind per call."""
    features = clip_features(model, frames[:, None], encoder_grad=False)
    one = torch.zeros(1, dtype=torch.long)
    prompts = [FramePrompts(masks=mask_prompts(mask[None], SIZE))]
    for points, labels in (CLICKS, CLICK):
        model_points = points_to_model(torch.tensor(points[None], dtype=torch.float32), (HEIGHT, WIDTH), SIZE)
        prompts.append(FramePrompts(model_points, torch.tensor(labels[None])))
    with torch.no_grad():
        per_object = [track_clip(model, features, one, p) for p in prompts]
    return {t: torch.cat([outputs[t].low_res for outputs in per_object]) for t in range(len(frames))}


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_segfit_tracking_matches_reference(version, official, clip):
    """segfit's batched, differentiable forward tracks as Meta's predictor, for a mask, clicks and one click."""
    folder, mask = clip()
    predictor, checkpoint = official(version)
    model = build_sam2_video("tiny", version, SIZE, checkpoint=checkpoint).eval()
    frames, expected = reference_track(predictor, folder, mask)
    # same weights, same preprocessed frames, other code: float rounding (bf16 memories rounded alike on both sides)
    assert max_difference(segfit_track(model, frames, mask), expected, slice(0, 3)) <= LOGIT_TOLERANCE


@contextmanager
def memory_reads(attention: torch.nn.Module):
    """The (memory tokens, object pointer tokens) of every call of a memory attention, Meta's or transformers'."""
    reads = []

    def record(module, args, kwargs):
        pointers = kwargs["num_obj_ptr_tokens" if "num_obj_ptr_tokens" in kwargs else "num_object_pointer_tokens"]
        reads.append((kwargs["memory"].shape[0], pointers))  # sequence first on both sides

    handle = attention.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield reads
    finally:
        handle.remove()


def test_segfit_tracking_matches_reference_past_memory_windows(official, clip):
    """On a clip longer than both memory windows, segfit drops the same old memories and pointers as Meta does."""
    folder, mask = clip(LONG_FRAMES)
    predictor, checkpoint = official("2.1")
    model = build_sam2_video("tiny", "2.1", SIZE, checkpoint=checkpoint).eval()
    with memory_reads(predictor.memory_attention) as reference_reads:
        frames, expected = reference_track(predictor, folder, mask)
    with memory_reads(model.memory_attention) as reads:
        got = segfit_track(model, frames, mask)
    # frame t reads min(t, 7) memories of (SIZE/16)² tokens and min(t, 16) pointers of 4 tokens (256 channels / 64)
    windows = [(min(t, 7) * (SIZE // 16) ** 2 + 4 * min(t, 16), 4 * min(t, 16)) for t in range(1, LONG_FRAMES)]
    assert windows[-1] == (7 * 256 + 64, 64)  # the last frame reaches both limits
    assert reads == 3 * windows  # object after object
    assert sorted(reference_reads) == sorted(reads)  # Meta: frame after frame, each object on its own
    assert_tracked(expected)
    # same weights and frames, other code: float rounding, ≤8e-7 seen (no growth over the 17 tracked frames)
    assert max_difference(got, expected, slice(0, 3), LONG_FRAMES) <= LOGIT_TOLERANCE


FINE_TUNED = {
    "vision_encoder.backbone.blocks.0.mlp.proj_out.weight": "image_encoder.trunk.blocks.0.mlp.layers.1.weight",
    "memory_attention.layers.2.cross_attn_image.o_proj.weight": "memory_attention.layers.2.cross_attn_image.out_proj.weight",
    "memory_encoder.mask_downsampler.layers.1.conv.weight": "memory_encoder.mask_downsampler.encoder.3.weight",
    "memory_encoder.memory_fuser.layers.0.scale": "memory_encoder.fuser.layers.0.gamma",
    "object_pointer_proj.layers.0.weight": "obj_ptr_proj.layers.1.weight",
}
"""The tensors a "fine-tuning" changes in a video model (transformers name → official name): image encoder, memory
attention, memory encoder (downsampler and fuser) and object-pointer projection. Each of these changes alone moves
the tracked logits of the 4-frame clip by 1e-2 (the pointer projection) to 3 (the image encoder), far above the
tolerance, so the tracking comparison checks that every one was written where Meta's model reads it."""


def test_finetuned_video_model_tracks_in_reference_video_predictor(official, clip, tmp_path):
    """A fine-tuned video model's export carries its own memory modules, not the starting checkpoint's.

    ``build_sam2_video_predictor`` loads it strictly, finds exactly the fine-tuned tensors changed, and tracks the
    clip as segfit's forward does on the fine-tuned model.
    """
    folder, mask = clip()
    predictor, checkpoint = official("2.1")
    start = predictor.state_dict()
    model = build_sam2_video("tiny", "2.1", SIZE, checkpoint=checkpoint).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # "fine-tuning"
        for name in FINE_TUNED:
            parameter = model.get_parameter(name)
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))

    loaded = load_reference(REFERENCE_YAML["2.1"], export_official_pt(model, tmp_path / "exported.pt"))
    tensors = loaded.state_dict()
    assert sorted(tensors) == sorted(start)
    assert sorted(k for k in start if not torch.equal(tensors[k], start[k])) == sorted(FINE_TUNED.values())

    frames, expected = reference_track(loaded, folder, mask)
    assert_tracked(expected)
    # same weights and frames, other code: float rounding, ≤3.4e-6 seen
    assert max_difference(segfit_track(model, frames, mask), expected, slice(0, 3)) <= LOGIT_TOLERANCE
