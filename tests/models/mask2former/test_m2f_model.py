"""Model options: frozen modules get no gradient, activation checkpointing gives the same gradients, the backbone
gets its own learning rate, and deep supervision adds the decoder layers' losses."""

import pytest
import torch

from m2f_tiny import tiny_spec_overrides
from segfit.engine.nonfinite import batch_files
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.models.mask2former.swin_weights import BACKBONE_PREFIX
from segfit.spec import SpecError, load_spec


@pytest.fixture
def recipe_for(synthetic, tmp_path):
    paths = synthetic("panoptic")
    return lambda *more: Mask2FormerRecipe(load_spec(None, tiny_spec_overrides("panoptic", paths, tmp_path) + [
        "data.train.batch_size=2", "model.backbone.swin.drop_path_rate=0.0", *more]))


def _step(recipe, model):
    dataset = recipe.train_dataset()
    terms = recipe.training_step(model, recipe.collate([dataset[(0, 1)], dataset[(1, 2)]]))
    terms["loss"].backward()
    return {key: float(value.detach()) for key, value in terms.items()}


def test_batches_name_their_files(recipe_for):
    """A non-finite loss names the batch's images (the engine reads the batch's ``source`` list)."""
    recipe = recipe_for()
    dataset = recipe.train_dataset()
    batch = recipe.collate([dataset[(0, 1)], dataset[(1, 2)]])
    assert batch_files(batch) == [dataset.reader.source(0), dataset.reader.source(1)]


def test_freeze_and_param_groups(recipe_for):
    recipe = recipe_for("train.freeze=[backbone]", "train.optim.base_lr=1e-3")  # TAO's name
    model = recipe.build_model()
    _step(recipe, model)
    for name, param in model.named_parameters():
        assert (param.grad is None) == name.startswith(BACKBONE_PREFIX), name
    groups = {g["name"]: g for g in recipe.param_groups(model)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["heads"]["lr"] == 1e-3
    assert all(n.startswith(BACKBONE_PREFIX) for n, _ in groups["backbone"]["params"])


def test_activation_checkpointing_gives_the_same_gradients(recipe_for):
    plain, checkpointed = recipe_for(), recipe_for("train.activation_checkpoint=true")
    torch.manual_seed(0)
    model = plain.build_model()
    torch.manual_seed(0)
    model_ckpt = checkpointed.build_model()
    torch.manual_seed(1)
    _step(plain, model)
    torch.manual_seed(1)
    _step(checkpointed, model_ckpt)
    name = BACKBONE_PREFIX + "swin.embeddings.patch_embeddings.projection.weight"
    grads = dict(model.named_parameters())[name].grad, dict(model_ckpt.named_parameters())[name].grad
    # recomputation repeats the same float operations on the same inputs; only summation order may differ
    assert torch.allclose(*grads, rtol=1e-4, atol=1e-6)


def test_deep_supervision_adds_layer_losses(recipe_for):
    deep, last_only = recipe_for(), recipe_for("model.mask_former.deep_supervision=false")
    torch.manual_seed(0)
    model = deep.build_model()
    torch.manual_seed(2)
    with_aux = _step(deep, model)
    torch.manual_seed(2)
    without = _step(last_only, model)
    assert without["loss"] == pytest.approx(without["loss_ce"] + without["loss_mask"] + without["loss_dice"], rel=1e-5)
    assert with_aux["loss"] > without["loss"]


def test_freezing_nothing_is_an_error(recipe_for):
    with pytest.raises(SpecError, match="train.freeze: 'backbone.swin' names no module of the model; use one of backbone"):
        recipe_for("train.freeze=[backbone.swin]").build_model()


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fsdp_units_keep_layer_drop_in_the_root(recipe_for, dropout):
    """transformers drops whole decoder layers with probability ``dropout``, per process: as FSDP units they would
    leave the processes waiting on different collectives, so with dropout they stay in the root unit."""
    recipe = recipe_for(f"model.mask_former.dropout={dropout}")
    model = recipe.build_model()
    decoder_layers = set(model.model.transformer_module.decoder.layers)
    units = recipe.fsdp_blocks(model)
    assert bool(decoder_layers & set(units)) == (dropout == 0.0)
    assert len(units) > len(decoder_layers)  # the Swin blocks and pixel-decoder layers stay units
