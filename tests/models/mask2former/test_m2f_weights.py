"""Weights: a transformers model directory, a safetensors file, and backbone-only Swin files in official / timm
key names (written here from a model with known weights), each with its report of what did not load."""

import re

import pytest
import torch
from safetensors.torch import save_file

from m2f_tiny import TINY_MODEL
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.models.mask2former.swin_weights import BACKBONE_PREFIX
from segfit.spec import SpecError, load_spec


def _recipe(*overrides):
    return Mask2FormerRecipe(load_spec(None, [*TINY_MODEL, "model.mode=semantic", *overrides]))


def _official_names(backbone: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers SwinBackbone tensors renamed as the official Swin checkpoint names them (qkv fused)."""
    out = {}
    for name, tensor in backbone.items():
        name = name.removeprefix("swin.")
        if match := re.match(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.q_proj\.(\w+)", name):
            layer, block, kind = match.groups()
            parts = [backbone[f"swin.encoder.layers.{layer}.blocks.{block}.attention.{p}_proj.{kind}"] for p in "qkv"]
            out[f"layers.{layer}.blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts)
            continue
        if re.search(r"\.(k|v)_proj\.", name):
            continue
        for pattern, official in ((r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
                                  (r"^embeddings\.norm\.", "patch_embed.norm."),
                                  (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.", r"layers.\1.blocks.\2.norm1."),
                                  (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.", r"layers.\1.blocks.\2.norm2."),
                                  (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.o_proj\.", r"layers.\1.blocks.\2.attn.proj."),
                                  (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\.",
                                   r"layers.\1.blocks.\2.attn."),
                                  (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"layers.\1.blocks.\2.mlp."),
                                  (r"^encoder\.layers\.(\d+)\.downsample\.", r"layers.\1.downsample."),
                                  (r"^layernorm\.", "norm."), (r"^hidden_states_norms\.stage(\d)\.", None)):
            if re.match(pattern, name):
                if official is None:  # D2 backbones name the stage norms norm0..norm3
                    stage = int(re.match(pattern, name)[1]) - 1
                    out[re.sub(pattern, f"norm{stage}.", name)] = tensor
                else:
                    out[re.sub(pattern, official, name)] = tensor
                break
        else:
            raise AssertionError(f"no official name for {name}")
    return out


def test_official_swin_backbone_weights(tmp_path, capsys):
    source = _recipe().build_model()
    backbone = source.model.pixel_level_module.encoder.state_dict()
    official = _official_names(backbone)
    torch.save({"model": {**official, "head.weight": torch.zeros(10, 192)}}, tmp_path / "swin.pth")
    recipe = _recipe(f"model.backbone.pretrained_weights={tmp_path / 'swin.pth'}")
    model = recipe.build_model()  # the file is read only by a fresh training start (below), never for evaluation
    assert not all(torch.equal(model.model.pixel_level_module.encoder.state_dict()[name], tensor)
                   for name, tensor in backbone.items())
    recipe.initial_weights(model)
    loaded = model.model.pixel_level_module.encoder.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in backbone.items())
    assert "1 unused (in the file, not in the model): head.weight" in capsys.readouterr().out


def test_transformers_directory_and_safetensors_file(tmp_path, capsys):
    source = _recipe().build_model()
    source.save_pretrained(tmp_path / "hf")
    from_dir = _recipe(f"model.checkpoint={tmp_path / 'hf'}").build_model()
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), from_dir.state_dict().values()))
    # a model of other classes: everything but the class head loads, and the report says so
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "m.safetensors"))
    overrides = [o for o in TINY_MODEL if "num_classes" not in o] + ["model.sem_seg_head.num_classes=3"]
    other = Mask2FormerRecipe(load_spec(None, overrides + [f"model.checkpoint={tmp_path / 'm.safetensors'}"])).build_model()
    assert ("3 other_shape (another shape in the file, left as initialised): class_predictor.bias, "
            "class_predictor.weight, criterion.empty_weight") in capsys.readouterr().out
    assert torch.equal(other.state_dict()[BACKBONE_PREFIX + "swin.layernorm.weight"], source.state_dict()[BACKBONE_PREFIX + "swin.layernorm.weight"])


def test_a_file_of_another_model_is_refused(tmp_path):
    save_file({"decoder.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no tensor of the file fits the model"):
        _recipe(f"model.checkpoint={tmp_path / 'other.safetensors'}").build_model()


def test_backbone_weights_and_a_whole_model_are_exclusive(tmp_path):
    with pytest.raises(SpecError, match="backbone.pretrained_weights and checkpoint: give one"):
        _recipe(f"model.backbone.pretrained_weights={tmp_path / 'swin.pth'}", f"model.checkpoint={tmp_path / 'hf'}")
