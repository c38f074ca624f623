"""Key conversion both ways, checkpoint files of every kind, and load errors that name the file and the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import Sam2Model, Sam2VideoModel

from segfit.models.sam2.build import SIZES, build_sam2, build_sam2_video
from segfit.models.sam2.convert import (
    HF_VIDEO_ONLY,
    OFFICIAL_VIDEO_ONLY,
    RULES,
    convert_checkpoint,
    hf_to_official,
    infer_size_version,
    official_to_hf,
)
from segfit.models.sam2.weights import load_sam2_weights, read_state_dict, save_hf_dir, save_official_pt

VIDEO_RENAMES = {
    "memory_attention.norm.bias": "memory_attention.layer_norm.bias",
    "memory_attention.layers.1.norm3.weight": "memory_attention.layers.1.layer_norm3.weight",
    "memory_attention.layers.0.cross_attn_image.out_proj.weight": "memory_attention.layers.0.cross_attn_image.o_proj.weight",
    "memory_attention.layers.0.cross_attn_image.k_proj.bias": "memory_attention.layers.0.cross_attn_image.k_proj.bias",
    "memory_attention.layers.1.linear2.weight": "memory_attention.layers.1.linear2.weight",
    "memory_encoder.mask_downsampler.encoder.0.weight": "memory_encoder.mask_downsampler.layers.0.conv.weight",
    "memory_encoder.mask_downsampler.encoder.4.bias": "memory_encoder.mask_downsampler.layers.1.layer_norm.bias",
    "memory_encoder.mask_downsampler.encoder.9.weight": "memory_encoder.mask_downsampler.layers.3.conv.weight",
    "memory_encoder.mask_downsampler.encoder.12.bias": "memory_encoder.mask_downsampler.final_conv.bias",
    "memory_encoder.pix_feat_proj.weight": "memory_encoder.feature_projection.weight",
    "memory_encoder.fuser.layers.1.dwconv.bias": "memory_encoder.memory_fuser.layers.1.depthwise_conv.bias",
    "memory_encoder.fuser.layers.0.pwconv2.weight": "memory_encoder.memory_fuser.layers.0.pointwise_conv2.weight",
    "memory_encoder.fuser.layers.0.norm.weight": "memory_encoder.memory_fuser.layers.0.layer_norm.weight",
    "memory_encoder.fuser.layers.1.gamma": "memory_encoder.memory_fuser.layers.1.scale",
    "memory_encoder.out_proj.bias": "memory_encoder.projection.bias",
    "obj_ptr_proj.layers.0.weight": "object_pointer_proj.proj_in.weight",
    "obj_ptr_proj.layers.1.bias": "object_pointer_proj.layers.0.bias",
    "obj_ptr_proj.layers.2.weight": "object_pointer_proj.proj_out.weight",
    "obj_ptr_tpos_proj.bias": "temporal_positional_encoding_projection_layer.bias",
    "maskmem_tpos_enc": "memory_temporal_positional_encoding",
    "no_mem_pos_enc": "no_memory_positional_encoding",
    "no_obj_ptr": "no_object_pointer",
    "no_obj_embed_spatial": "occlusion_spatial_embedding_parameter",
    "mask_downsample.weight": "mask_downsample.weight",
}
"""Official → HF names of the video modules (probe rules 10–13), written out by hand from the two models' keys."""


def perturbed(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Every tensor moved off its (often zero or shared) initial value, so a wrong mapping cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return model


def perturbed_sam2(model: Sam2Model | Sam2VideoModel) -> Sam2Model | Sam2VideoModel:
    model = perturbed(model)
    with torch.no_grad():  # perturbing touched the two Fourier copies differently; keep them one matrix
        model.shared_image_embedding.positional_embedding.copy_(model.prompt_encoder.shared_embedding.positional_embedding)
    return model


@pytest.fixture(scope="module")
def test_model() -> Sam2Model:
    return perturbed_sam2(build_sam2("test", image_size=256))


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def test_video_model(request) -> Sam2VideoModel:
    return perturbed_sam2(build_sam2_video("test", request.param, image_size=256))


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_rules_use_same_placeholders_on_both_sides():
    for official, hf in RULES:
        assert re.findall(r"\{\w+\}", official) == re.findall(r"\{\w+\}", hf), (official, hf)


def test_hf_official_hf_round_trip_is_identity(test_model):
    state = test_model.state_dict()
    official = hf_to_official(state)
    assert all(k.startswith(("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.", "no_mem_embed")) for k in official)
    assert_same_state(official_to_hf(official), state)


def test_point_embeddings_are_stacked_in_index_order():
    rows = {f"sam_prompt_encoder.point_embeddings.{i}.weight": torch.full((1, 4), float(i)) for i in (2, 0, 3, 1)}
    stacked = official_to_hf(rows)["prompt_encoder.point_embed.weight"]
    assert torch.equal(stacked[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(KeyError, match="not numbered"):
        official_to_hf({"sam_prompt_encoder.point_embeddings.1.weight": torch.zeros(1, 4)})


def test_fourier_matrix_is_copied_and_checked():
    matrix = torch.randn(2, 16)
    hf = official_to_hf({"sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": matrix})
    assert torch.equal(hf["shared_image_embedding.positional_embedding"], matrix)
    assert hf["shared_image_embedding.positional_embedding"].data_ptr() != matrix.data_ptr()
    hf["shared_image_embedding.positional_embedding"] += 1
    with pytest.raises(ValueError, match="one Fourier matrix"):
        hf_to_official(hf)


@pytest.mark.parametrize(("official", "hf"), list(VIDEO_RENAMES.items()))
def test_video_key_table(official, hf):
    tensor = torch.randn(3)
    assert official_to_hf({official: tensor}, video=True) == {hf: tensor}
    assert hf_to_official({hf: tensor}) == {official: tensor}
    assert official_to_hf({official: tensor}) == {}  # the image model has no place for it


def test_video_key_table_covers_the_video_model(test_video_model):
    """Every tensor of a video model survives HF → official → HF, renamed only; the official side is complete."""
    state = test_video_model.state_dict()
    official = hf_to_official(state)
    assert {k for k in official if OFFICIAL_VIDEO_ONLY.fullmatch(k)} == {
        hf_to_official({k: torch.zeros(1)}).popitem()[0] for k in state if HF_VIDEO_ONLY.fullmatch(k)
    }
    assert len(official) == len(state) - 1 + 3  # one Fourier matrix instead of two; four point rows instead of one
    assert_same_state(official_to_hf(official, video=True), state)
    assert all(official[hf_to_official({k: v}).popitem()[0]] is v for k, v in state.items() if HF_VIDEO_ONLY.fullmatch(k))


def test_video_keys_are_dropped_and_unknown_keys_rejected():
    kept = official_to_hf({"no_mem_embed": torch.zeros(1, 1, 4), "memory_encoder.out_proj.weight": torch.zeros(1)})
    assert list(kept) == ["no_memory_embedding"]
    with pytest.raises(KeyError, match="rogue.weight"):
        official_to_hf({"rogue.weight": torch.zeros(1)})


@pytest.mark.parametrize("size", SIZES)
def test_infer_size_in_both_layouts(size):
    with torch.device("meta"):  # shapes only: meta tensors cannot be compared, so the Fourier check is skipped
        state = build_sam2(size).state_dict()
    state.pop("shared_image_embedding.positional_embedding")
    assert infer_size_version(state) == (size, "2.1")
    assert infer_size_version(hf_to_official(state)) == (size, "2.1")


def test_infer_version_from_video_keys(test_model):
    official = hf_to_official(test_model.state_dict())
    assert infer_size_version({**official, "maskmem_tpos_enc": torch.zeros(1)}) == ("test", "2.0")
    assert infer_size_version({**official, "maskmem_tpos_enc": torch.zeros(1), "no_obj_embed_spatial": torch.zeros(1)}) == (
        "test",
        "2.1",
    )
    hf = test_model.state_dict()
    assert infer_size_version({**hf, "no_object_pointer": torch.zeros(1)}) == ("test", "2.0")
    with pytest.raises(ValueError, match="not a SAM 2 state dict"):
        infer_size_version({"backbone.conv.weight": torch.zeros(1)})


def test_hf_dir_and_official_pt_round_trip(test_model, tmp_path):
    hf_dir = save_hf_dir(test_model, tmp_path / "hf")
    reloaded = Sam2Model.from_pretrained(hf_dir)
    assert_same_state(reloaded.state_dict(), test_model.state_dict())
    assert (reloaded.config.sam2_size, reloaded.config.sam2_version) == ("test", "2.1")

    official_pt = save_official_pt(test_model, tmp_path / "out" / "official.pt")
    assert not list(official_pt.parent.glob("*.partial"))
    stored = torch.load(official_pt, map_location="cpu", weights_only=True)
    assert set(stored) == {"model"}
    assert_same_state(stored["model"], hf_to_official(test_model.state_dict()))

    for path in (hf_dir, hf_dir / "model.safetensors", official_pt):
        model = build_sam2("test", image_size=256, checkpoint=path)
        assert_same_state(model.state_dict(), test_model.state_dict())


def test_convert_checkpoint_both_directions(test_model, tmp_path):
    official_pt = save_official_pt(test_model, tmp_path / "official.pt")
    hf_dir = convert_checkpoint(official_pt, tmp_path / "converted_hf")
    assert_same_state(Sam2Model.from_pretrained(hf_dir).state_dict(), test_model.state_dict())
    back = convert_checkpoint(hf_dir, tmp_path / "back.pt")
    assert_same_state(read_state_dict(back), read_state_dict(official_pt))


def test_wrapped_and_bare_torch_checkpoints_load(test_model, tmp_path):
    official = hf_to_official(test_model.state_dict())
    torch.save({f"module.{k}": v for k, v in official.items()}, tmp_path / "ddp.pth")
    torch.save(test_model.state_dict(), tmp_path / "hf_layout.pt")
    for name in ("ddp.pth", "hf_layout.pt"):
        model = build_sam2("test", image_size=256, checkpoint=tmp_path / name)
        assert_same_state(model.state_dict(), test_model.state_dict())


def test_video_checkpoint_loads_into_image_model(test_model, tmp_path):
    official = hf_to_official(test_model.state_dict())
    official["memory_attention.layers.0.self_attn.q_proj.weight"] = torch.zeros(4, 4)
    official["no_obj_embed_spatial"] = torch.zeros(1, 32)
    torch.save({"model": official}, tmp_path / "video.pt")
    model = build_sam2("test", image_size=256, checkpoint=tmp_path / "video.pt")
    assert_same_state(model.state_dict(), test_model.state_dict())


def test_version_mismatch_is_named(test_model, tmp_path):
    official = hf_to_official(test_model.state_dict())
    official["maskmem_tpos_enc"] = torch.zeros(7, 1, 1, 8)  # video tensors without the 2.1-only ones: SAM 2.0
    path = tmp_path / "sam2_hiera_test.pt"
    torch.save({"model": official}, path)
    with pytest.raises(ValueError, match=r"sam2_hiera_test\.pt: this is a SAM 2\.0 checkpoint .* set model\.version: 2\.0"):
        build_sam2("test", "2.1", image_size=256, checkpoint=path)
    model = build_sam2("test", "2.0", image_size=256, checkpoint=path)
    assert_same_state(model.state_dict(), test_model.state_dict())


# --- the video model: every loader, strictly, and conversion of complete checkpoints ---


def test_video_model_loads_every_kind(test_video_model, tmp_path):
    version = test_video_model.config.sam2_version
    hf_dir = save_hf_dir(test_video_model, tmp_path / "hf")
    official_pt = save_official_pt(test_video_model, tmp_path / "official.pt")
    stored = torch.load(official_pt, map_location="cpu", weights_only=True)["model"]
    assert_same_state(stored, hf_to_official(test_video_model.state_dict()))
    assert ("no_obj_embed_spatial" in stored) == (version == "2.1")
    torch.save({f"module.{k}": v for k, v in stored.items()}, tmp_path / "ddp.pth")
    for path in (hf_dir, hf_dir / "model.safetensors", official_pt, tmp_path / "ddp.pth"):
        model = build_sam2_video("test", version, image_size=256, checkpoint=path)
        assert_same_state(model.state_dict(), test_video_model.state_dict())
        assert model.starting_checkpoint == path
    reloaded = Sam2VideoModel.from_pretrained(hf_dir)
    assert_same_state(reloaded.state_dict(), test_video_model.state_dict())
    assert (reloaded.config.sam2_size, reloaded.config.sam2_version) == ("test", version)


def test_convert_complete_checkpoint_both_directions(test_video_model, tmp_path):
    """A file with video tensors converts through a Sam2VideoModel: nothing is dropped either way."""
    official_pt = save_official_pt(test_video_model, tmp_path / "official.pt")
    hf_dir = convert_checkpoint(official_pt, tmp_path / "hf")
    assert json.loads((hf_dir / "config.json").read_text())["model_type"] == "sam2_video"
    reloaded = Sam2VideoModel.from_pretrained(hf_dir)
    assert_same_state(reloaded.state_dict(), test_video_model.state_dict())
    assert reloaded.config.sam2_version == test_video_model.config.sam2_version
    back = convert_checkpoint(hf_dir, tmp_path / "back.pt")
    assert_same_state(read_state_dict(back), read_state_dict(official_pt))


def test_video_version_mismatch_is_named(test_video_model, tmp_path):
    version = test_video_model.config.sam2_version
    other = "2.0" if version == "2.1" else "2.1"
    path = save_official_pt(test_video_model, tmp_path / "video.pt")
    with pytest.raises(ValueError, match=rf"video\.pt: this is a SAM {version} checkpoint .* set model\.version: {version}"):
        build_sam2_video("test", other, image_size=256, checkpoint=path)


def test_image_checkpoint_into_video_model_is_named(test_video_model, tmp_path):
    """An image-only file (same widths: the video model's image part) lacks the memory modules."""
    image_only = {k: v for k, v in hf_to_official(test_video_model.state_dict()).items() if not OFFICIAL_VIDEO_ONLY.fullmatch(k)}
    torch.save({"model": image_only}, tmp_path / "image.pt")
    with pytest.raises(ValueError, match=r"image\.pt: holds no video-memory tensors .* a video model needs the complete model"):
        build_sam2_video("test", test_video_model.config.sam2_version, image_size=256, checkpoint=tmp_path / "image.pt")


# --- load errors: each names the file, and the key or the likely cause ---


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build_sam2("test", image_size=256, checkpoint=path)


def test_directory_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        build_sam2("test", image_size=256, checkpoint=tmp_path)


def test_unknown_file_kind(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"123")
    with pytest.raises(ValueError, match=r"weights\.bin: unknown checkpoint kind"):
        build_sam2("test", image_size=256, checkpoint=path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.pt: not a readable PyTorch checkpoint"):
        build_sam2("test", image_size=256, checkpoint=path)


def test_not_sam2_weights(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match=r"other\.pt: not a SAM 2 state dict"):
        build_sam2("test", image_size=256, checkpoint=path)


def test_truncated_files(test_model, tmp_path):
    official_pt = save_official_pt(test_model, tmp_path / "full.pt")
    cut_pt = tmp_path / "cut.pt"
    cut_pt.write_bytes(official_pt.read_bytes()[: official_pt.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.pt: not a readable PyTorch checkpoint"):
        build_sam2("test", image_size=256, checkpoint=cut_pt)
    full_st = save_hf_dir(test_model, tmp_path / "hf") / "model.safetensors"
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(full_st.read_bytes()[: full_st.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors: not a readable safetensors file"):
        build_sam2("test", image_size=256, checkpoint=cut_st)


def test_unexpected_and_missing_keys_are_named(test_model, tmp_path):
    state = dict(test_model.state_dict())
    state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "odd.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError) as error:
        build_sam2("test", image_size=256, checkpoint=path)
    message = str(error.value)
    assert str(path) in message and "mask_decoder.extra_head.weight" in message and "mask_decoder.iou_token.weight" in message


def test_wrong_size_gives_hint(test_model, tmp_path):
    path = save_official_pt(test_model, tmp_path / "test_size.pt")
    model = build_sam2("tiny")
    with pytest.raises(ValueError) as error:
        load_sam2_weights(model, path)
    message = str(error.value)
    assert str(path) in message and "looks like size test but the model is tiny" in message
    assert "set model.size: test" in message


def test_shape_mismatch_names_key_and_shapes(test_model, tmp_path):
    state = dict(test_model.state_dict())
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    path = tmp_path / "reshaped.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError, match=r"reshaped\.safetensors: mask_decoder\.iou_token\.weight has shape \(1, 7\) .* \(1, 32\)"):
        build_sam2("test", image_size=256, checkpoint=path)


@pytest.mark.reference
@pytest.mark.slow
@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_official_round_trip_on_reference_state_dict(version, tmp_path):
    """official → HF video model (strict) → official is the identity on every tensor of a reference-built model;
    official → HF image model → official on every image tensor."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2 as build_reference

    yaml = "configs/sam2/sam2_hiera_t.yaml" if version == "2.0" else "configs/sam2.1/sam2.1_hiera_t.yaml"
    reference = perturbed(build_reference(yaml, ckpt_path=None, device="cpu"))
    state = reference.state_dict()
    image_state = {k: v for k, v in state.items() if not OFFICIAL_VIDEO_ONLY.fullmatch(k)}
    assert_same_state(hf_to_official(official_to_hf(state)), image_state)
    assert_same_state(hf_to_official(official_to_hf(state, video=True)), state)

    name = "sam2_hiera_tiny.pt" if version == "2.0" else "sam2.1_hiera_tiny.pt"
    torch.save({"model": state}, tmp_path / name)
    video_model = build_sam2_video("tiny", version, checkpoint=tmp_path / name)
    assert_same_state(video_model.state_dict(), official_to_hf(state, video=True))
    exported = read_state_dict(save_official_pt(video_model, tmp_path / "exported.pt"))
    assert_same_state(exported, state)
    reference.load_state_dict(exported, strict=True)

    hf_dir = convert_checkpoint(tmp_path / name, tmp_path / "hf")
    assert_same_state(Sam2VideoModel.from_pretrained(hf_dir).state_dict(), official_to_hf(state, video=True))
    assert_same_state(Sam2Model.from_pretrained(hf_dir).state_dict(), official_to_hf(state))
    assert_same_state(read_state_dict(convert_checkpoint(hf_dir, tmp_path / "back.pt")), state)

    image_only = read_state_dict(save_official_pt(build_sam2("tiny", version, checkpoint=tmp_path / name), tmp_path / "image.pt"))
    result = reference.load_state_dict(image_only, strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == sorted(k for k in state if OFFICIAL_VIDEO_ONLY.fullmatch(k))
