"""Built models must have the official shapes in every size, any multiple-of-32 resolution, and a fast test size."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Sam2VideoInferenceSession

from segfit.models.sam2.build import SIZES, VERSIONS, build_sam2, build_sam2_video, sam2_config, sam2_video_config
from segfit.models.sam2.convert import HF_VIDEO_ONLY, OFFICIAL_VIDEO_ONLY, official_to_hf

IMAGE_PARAMETERS = {"tiny": 31_440_721, "small": 38_538_577, "base_plus": 73_328_401, "large": 216_924_865}
"""Parameters of the official image path (reference model minus its video-only modules), counted once."""

VIDEO_PARAMETERS = {
    ("tiny", "2.0"): 38_945_986,
    ("tiny", "2.1"): 38_962_498,
    ("small", "2.0"): 46_043_842,
    ("small", "2.1"): 46_060_354,
    ("base_plus", "2.0"): 80_833_666,
    ("base_plus", "2.1"): 80_850_178,
    ("large", "2.0"): 224_430_130,
    ("large", "2.1"): 224_446_642,
}
"""Parameters of the complete official models (image path and video-memory modules), counted once from the reference."""

VERSION_2_1_ONLY = {
    "occlusion_spatial_embedding_parameter",
    "temporal_positional_encoding_projection_layer.weight",
    "temporal_positional_encoding_projection_layer.bias",
}

REFERENCE_YAML = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
OFFICIAL_SIZES = ["tiny", "small"] + [pytest.param(s, marks=pytest.mark.slow) for s in ("base_plus", "large")]


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_official_parameter_counts(size):
    assert parameter_count(build_sam2(size)) == IMAGE_PARAMETERS[size]


@pytest.mark.slow
@pytest.mark.parametrize("size", ["base_plus", "large"])
def test_official_parameter_counts_large_sizes(size):
    with torch.device("meta"):
        model = build_sam2(size)
    assert parameter_count(model) == IMAGE_PARAMETERS[size]


def test_test_size_trains_fast_at_256():
    model = build_sam2("test", image_size=256).train()
    pixels = torch.randn(2, 3, 256, 256)
    points = torch.rand(2, 3, 1, 2) * 256
    labels = torch.ones(2, 3, 1, dtype=torch.long)
    out = model(pixel_values=pixels, input_points=points, input_labels=labels, multimask_output=True)
    assert out.pred_masks.shape == (2, 3, 3, 64, 64)
    assert out.iou_scores.shape == (2, 3, 3)
    out.pred_masks.float().pow(2).mean().backward()
    trunk_grad = model.vision_encoder.backbone.patch_embed.projection.weight.grad
    decoder_grad = model.mask_decoder.output_hypernetworks_mlps[1].proj_out.weight.grad
    assert trunk_grad is not None and trunk_grad.abs().sum() > 0
    assert decoder_grad is not None and decoder_grad.abs().sum() > 0
    assert parameter_count(model) < 1_000_000


def test_reference_random_init_draws_as_the_reference_does():
    """PyTorch's defaults (the reference adds no initialisation of its own), not Hugging Face's N(0, 0.02): from those
    small weights the demo's decoder learned one mask for every click (README, "The demo")."""
    model = build_sam2("test", image_size=256, random_init="reference")
    tokens = model.mask_decoder.mask_tokens.weight  # N(0, 1): 128 draws give a std within ±0.2 of 1
    assert 0.8 < tokens.std().item() < 1.2
    linear = model.mask_decoder.transformer.layers[0].self_attn.q_proj.weight  # uniform(±1/√fan_in): std 0.58/√fan_in
    bound = 1 / math.sqrt(linear.shape[1])
    assert linear.abs().max().item() <= bound and linear.std().item() > 0.5 * bound


@pytest.mark.parametrize("image_size", [256, 288, 512])
def test_other_resolutions(image_size):
    config = sam2_config("test", image_size=image_size)
    assert config.vision_config.backbone_feature_sizes == [[image_size // s] * 2 for s in (4, 8, 16)]
    assert config.prompt_encoder_config.image_size == image_size
    assert config.vision_config.backbone_config.image_size == [image_size, image_size]
    model = build_sam2("test", image_size=image_size).eval()
    with torch.no_grad():
        out = model(
            pixel_values=torch.randn(1, 3, image_size, image_size),
            input_points=torch.tensor([[[[10.0, 20.0]]]]),
            input_labels=torch.tensor([[[1]]]),
        )
    assert out.pred_masks.shape[-2:] == (image_size // 4, image_size // 4)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_official_video_parameter_counts(size, version):
    with torch.device("meta"):
        model = build_sam2_video(size, version)
    assert parameter_count(model) == VIDEO_PARAMETERS[size, version]


@pytest.mark.parametrize("size", SIZES)
def test_video_model_is_the_image_model_plus_memory(size):
    """One set of sub-configs: the image and video configs agree on every image part (``test`` heads aside)."""
    image, video = sam2_config(size, "2.1", 512), sam2_video_config(size, "2.1", 512)
    wider = {  # the test video model's heads (see VIDEO_TEST_HEAD_DIMS)
        "vision_config": {"fpn_hidden_size"},
        "prompt_encoder_config": {"hidden_size"},
        "mask_decoder_config": {"hidden_size", "mlp_dim"},
    }
    for part in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
        image_part, video_part = getattr(image, part).to_dict(), getattr(video, part).to_dict()
        different = {k for k in image_part if image_part[k] != video_part[k]} - {"model_type"}
        assert different == (wider[part] if size == "test" else set())
    if size != "test":
        with torch.device("meta"):
            image_keys = {k: v.shape for k, v in build_sam2(size, image_size=512).state_dict().items()}
            video_keys = {k: v.shape for k, v in build_sam2_video(size, image_size=512).state_dict().items()}
        assert {k: v for k, v in video_keys.items() if not HF_VIDEO_ONLY.fullmatch(k)} == image_keys


def test_video_versions_differ_in_two_modules():
    with torch.device("meta"):
        keys = {version: set(build_sam2_video("tiny", version).state_dict()) for version in VERSIONS}
    assert keys["2.1"] - keys["2.0"] == VERSION_2_1_ONLY and not keys["2.0"] - keys["2.1"]
    config = sam2_video_config("tiny", "2.0")
    assert not config.enable_occlusion_spatial_embedding and not config.enable_temporal_pos_encoding_for_object_pointers
    assert (config.sam2_size, config.sam2_version) == ("tiny", "2.0")


@pytest.mark.parametrize("image_size", [256, 512, 1024])
def test_video_config_follows_resolution(image_size):
    config = sam2_video_config("tiny", image_size=image_size)
    assert config.image_size == config.prompt_encoder_config.image_size == image_size
    assert config.vision_config.backbone_config.image_size == [image_size, image_size]
    assert config.vision_config.backbone_feature_sizes == [[image_size // s] * 2 for s in (4, 8, 16)]
    assert config.memory_attention_rope_feat_sizes == [image_size // 16] * 2


def test_test_size_video_model_tracks_a_clip():
    """Two clicked objects tracked through three 256² frames by transformers' own inference, in a blink."""
    model = build_sam2_video("test", image_size=256).eval()
    assert parameter_count(model) < 2_000_000
    session = Sam2VideoInferenceSession(video=torch.randn(3, 3, 256, 256), video_height=120, video_width=160, dtype=torch.float32)
    for obj_id, point in ((1, [40.0, 50.0]), (2, [150.0, 200.0])):
        session.add_point_inputs(
            session.obj_id_to_idx(obj_id), 0, {"point_coords": torch.tensor([[[point]]]), "point_labels": torch.tensor([[[1]]])}
        )
    session.obj_with_new_inputs = [1, 2]
    outputs = list(model.propagate_in_video_iterator(session, start_frame_idx=0))
    assert [out.frame_idx for out in outputs] == [0, 1, 2]
    for out in outputs:
        assert out.pred_masks.shape == (2, 1, 64, 64) and out.pred_masks.isfinite().all()
    assert all(len(session.output_dict_per_obj[i]["non_cond_frame_outputs"]) == 2 for i in (0, 1))


def test_config_records_size_and_version():
    config = sam2_config("small", "2.0")
    assert (config.sam2_size, config.sam2_version) == ("small", "2.0")
    assert config.vision_config.backbone_config.blocks_per_stage == [1, 2, 11, 2]
    assert config.vision_config.backbone_channel_list == [768, 384, 192, 96]


def test_random_model_has_one_fourier_matrix():
    model = build_sam2("test", image_size=256)
    assert torch.equal(
        model.shared_image_embedding.positional_embedding, model.prompt_encoder.shared_embedding.positional_embedding
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(size="huge"), "model.size: unknown value 'huge'; valid: test, tiny, small, base_plus, large"),
        (dict(size="tiny", version="3.0"), "model.version: unknown value '3.0'; valid: 2.0, 2.1"),
        (dict(size="tiny", image_size=272), "model.image_size must be a multiple of 32"),
        (dict(size="tiny", image_size=128), "model.image_size must be a multiple of 32 and at least 256"),
    ],
)
def test_invalid_choices_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        sam2_config(**kwargs)


@pytest.mark.reference
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", OFFICIAL_SIZES)
def test_shapes_match_reference_yaml(size, version):
    """Key-by-key shapes of the image and video models against the reference built from its packaged yaml."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2 as build_reference

    folder = "sam2" if version == "2.0" else "sam2.1"
    yaml = f"configs/{folder}/{folder}_hiera_{REFERENCE_YAML[size]}.yaml"
    reference = build_reference(yaml, ckpt_path=None, device="cpu")
    converted = official_to_hf(reference.state_dict())
    ours = build_sam2(size, version).state_dict()
    assert set(converted) == set(ours)
    mismatched = {k: (tuple(converted[k].shape), tuple(ours[k].shape)) for k in ours if converted[k].shape != ours[k].shape}
    assert not mismatched
    reference_image_parameters = sum(
        p.numel() for name, p in reference.named_parameters() if not OFFICIAL_VIDEO_ONLY.fullmatch(name)
    )
    assert reference_image_parameters == IMAGE_PARAMETERS[size]

    converted = official_to_hf(reference.state_dict(), video=True)
    with torch.device("meta"):
        ours = build_sam2_video(size, version).state_dict()
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.items()}
    assert parameter_count(reference) == VIDEO_PARAMETERS[size, version]
