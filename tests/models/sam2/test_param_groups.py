"""SAM 2 learning rates: vision/base split and layer-wise decay as the official trainer computes them."""

import math
from types import SimpleNamespace

import pytest

from segfit.engine.optim import build_optimizer, takes_weight_decay
from segfit.models.sam2.build import HIERA, build_sam2
from segfit.models.sam2.param_groups import param_groups
from segfit.models.sam2.peft import add_lora
from segfit.models.sam2.spec import Sam2LoraSpec, Sam2OptimSpec

OPTIM = Sam2OptimSpec(base_lr=5e-6, vision_lr=3e-6, layer_decay=0.9)


def trainable_model(size: str):
    model = build_sam2(size, image_size=256)
    model.requires_grad_(True)
    return model


def lr_by_name(groups) -> dict[str, float]:
    return {name: group["lr"] for group in groups for name, _ in group["params"]}


@pytest.fixture(scope="module")
def test_model():
    return trainable_model("test")


def expected_lr(name: str, num_blocks: int) -> float:
    """The formula written out: patch embedding layer 0, block i layer i+1, rest of the trunk N+1 (pos_embed forced)."""
    if not name.startswith("vision_encoder."):
        return OPTIM.base_lr
    trunk = name.removeprefix("vision_encoder.backbone.")
    if trunk == name or "pos_embed" in trunk:
        return OPTIM.vision_lr
    layer = 0 if trunk.startswith("patch_embed.") else int(trunk.split(".")[1]) + 1
    return OPTIM.vision_lr * 0.9 ** (num_blocks + 1 - layer)


def test_test_size_lrs_follow_the_formula(test_model):
    num_blocks = sum(HIERA["test"]["blocks_per_stage"])
    lrs = lr_by_name(param_groups(test_model, OPTIM))
    assert lrs == pytest.approx({n: expected_lr(n, num_blocks) for n in lrs}, rel=1e-12)
    # spot values: first and last block, patch embedding, neck, position embeddings, decoder projections
    assert lrs["vision_encoder.backbone.blocks.0.attn.qkv.weight"] == pytest.approx(3e-6 * 0.9**5)
    assert lrs["vision_encoder.backbone.blocks.4.mlp.proj_out.bias"] == pytest.approx(3e-6 * 0.9)
    assert lrs["vision_encoder.backbone.patch_embed.projection.weight"] == pytest.approx(3e-6 * 0.9**6)
    assert lrs["vision_encoder.neck.convs.0.weight"] == lrs["vision_encoder.backbone.pos_embed"] == 3e-6
    assert lrs["vision_encoder.backbone.pos_embed_window"] == 3e-6
    assert lrs["mask_decoder.conv_s0.weight"] == lrs["no_memory_embedding"] == 5e-6  # official: outside image_encoder


@pytest.mark.reference
def test_tiny_matches_the_official_layer_decay_modifier():
    """Our multipliers equal those of ``training.optimizer.layer_decay_param_modifier`` on the official Hiera."""
    pytest.importorskip("sam2")
    from sam2.modeling.backbones.hieradet import Hiera
    from training.optimizer import layer_decay_param_modifier

    tiny = HIERA["tiny"]
    official = Hiera(embed_dim=96, num_heads=1, stages=tuple(tiny["blocks_per_stage"]),
                     global_att_blocks=tuple(tiny["global_attention_blocks"]), window_pos_embed_bkg_spatial_size=(7, 7))
    names = {f"image_encoder.trunk.{n}" for n, _ in official.named_parameters()}
    names.add("image_encoder.neck.convs.0.conv.weight")
    cfgs = [[{"option": "lr", "scheduler": lambda **_: 1.0, "parameter_names": names}]]
    reference_model = SimpleNamespace(image_encoder=SimpleNamespace(trunk=official))
    out = layer_decay_param_modifier(cfgs, reference_model, 0.9, apply_to="image_encoder.trunk",
                                     overrides=[{"pattern": "*pos_embed*", "value": 1.0}])
    official_scale = {n: cfg["scheduler"].mult_val for cfg in out[0] for n in cfg["parameter_names"]}

    model = trainable_model("tiny")
    lrs = lr_by_name(param_groups(model, OPTIM))
    ours = {n: lr / OPTIM.vision_lr for n, lr in lrs.items() if n.startswith("vision_encoder.")}
    renamed = {_official_to_hf(n): s for n, s in official_scale.items()}
    assert renamed.keys() <= ours.keys() and len(renamed) == len(official_scale)  # the renaming covers every tensor
    assert {n: ours[n] for n in renamed} == pytest.approx(renamed, rel=1e-12)
    assert min(renamed.values()) == pytest.approx(0.9**13)  # patch embedding of 12 blocks


def _official_to_hf(name: str) -> str:
    for old, new in (("image_encoder.trunk.", "vision_encoder.backbone."), ("image_encoder.neck.convs.0.conv.",
                     "vision_encoder.neck.convs.0."), ("patch_embed.proj.", "patch_embed.projection."),
                     (".norm1.", ".layer_norm1."), (".norm2.", ".layer_norm2."), ("mlp.layers.0.", "mlp.proj_in."),
                     ("mlp.layers.1.", "mlp.proj_out.")):
        name = name.replace(old, new)
    return name


def test_every_trainable_parameter_is_in_exactly_one_group_and_frozen_ones_in_none():
    model = build_sam2("test", image_size=256)
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith("prompt_encoder."))
    groups = param_groups(model, OPTIM)
    grouped = [name for group in groups for name, _ in group["params"]]
    assert sorted(grouped) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert len({g["name"] for g in groups}) == len(groups)
    # group names say where they are: 5 blocks + patch embedding decayed, the rest at vision_lr or base_lr
    blocks = {f"vision.block{i}" for i in range(5)}
    assert {g["name"] for g in groups} == {"base", "vision", "vision.patch_embed", *blocks}


def test_engine_still_applies_its_weight_decay_rule(test_model):
    optimizer = build_optimizer(param_groups(test_model, OPTIM), OPTIM)
    names = {id(p): n for n, p in test_model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            seen.append(name)
            assert group["weight_decay"] == (OPTIM.weight_decay if takes_weight_decay(name, param) else 0.0), name
            assert group["lr"] == pytest.approx(expected_lr(name, 5))
    assert sorted(seen) == sorted(names.values())
    decay = {names[id(p)]: g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay["vision_encoder.backbone.pos_embed"] == decay["vision_encoder.backbone.blocks.0.attn.qkv.bias"] == 0.0
    assert decay["vision_encoder.backbone.blocks.0.attn.qkv.weight"] == 0.1


def test_lora_parameters_follow_their_host_layer():
    model = build_sam2("test", image_size=256)
    add_lora(model, Sam2LoraSpec(rank=2, targets=["image_encoder", "mask_decoder"]), trainable=[])
    lrs = lr_by_name(param_groups(model, OPTIM))
    adapters = [n for n in lrs if ".lora_" in n]
    assert len(adapters) == len(lrs) == 2 * (2 * 5 + 4 * 7)  # A and B of qkv/proj per block, q/k/v/o of 7 attentions
    assert lrs["vision_encoder.backbone.blocks.3.attn.qkv.lora_A.default.weight"] == pytest.approx(3e-6 * 0.9**2)
    assert lrs["mask_decoder.transformer.layers.1.self_attn.v_proj.lora_B.default.weight"] == 5e-6


def test_decay_1_gives_two_groups_and_bad_values_are_named(test_model):
    groups = param_groups(test_model, Sam2OptimSpec(base_lr=1e-4, vision_lr=2e-4, layer_decay=1.0))
    assert {g["name"]: g["lr"] for g in groups} == {"vision": 2e-4, "base": 1e-4} and len(groups) == 2
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"train\.optim\.layer_decay"):
            param_groups(test_model, Sam2OptimSpec(layer_decay=bad))


def test_frozen_encoder_has_no_vision_group():
    model = build_sam2("test", image_size=256)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("mask_decoder.") and ".conv_s" not in name)
    groups = param_groups(model, OPTIM)
    assert [g["name"] for g in groups] == ["base"]
    assert len(groups[0]["params"]) == sum(p.requires_grad for p in model.parameters())
