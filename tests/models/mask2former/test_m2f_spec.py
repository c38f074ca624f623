"""TAO names and segfit names for the same settings; epochs turned into steps by the recipe."""

import pytest

from m2f_tiny import tiny_spec_overrides
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import SpecError, load_spec


def test_tao_and_segfit_names_are_the_same_keys():
    tao = load_spec(None, ["model.name=mask2former", "dataset.train.batch_size=3", "train.optim.lr=0.1",
                           "train.clip_grad_norm=1.0", "train.pretrained_model_path=m.safetensors",
                           "dataset.train.images=imgs"])
    segfit = load_spec(None, ["model.name=mask2former", "data.train.batch_size=3", "train.optim.base_lr=0.1",
                              "train.optim.grad_clip=1.0", "model.checkpoint=m.safetensors",
                              "data.train.img_dir=imgs"])
    assert tao == segfit and tao.data.batch_size == 3


def test_tao_schedule_name_sets_the_schedule():
    spec = load_spec(None, ["model.name=mask2former", "train.optim.lr_scheduler=cosine"])
    assert spec.train.optim.scheduler == "cosine"


def test_one_setting_given_under_both_names_is_an_error():
    with pytest.raises(SpecError, match="train.optim.lr and train.optim.base_lr: the same setting given twice"):
        load_spec(None, ["model.name=mask2former", "train.optim.lr=0.1", "train.optim.base_lr=0.2"])


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(SpecError, match=r"did you mean model\.mask_former\.num_object_queries"):
        load_spec(None, ["model.name=mask2former", "model.mask_former.num_object_query=5"])


def test_model_name_inferred_from_tao_keys():
    assert load_spec(None, ["model.mask_former.num_object_queries=5"]).model.name == "mask2former"
    with pytest.raises(SpecError, match="model.name: missing"):
        load_spec(None, ["results_dir=x"])  # fits every family


def test_epochs_become_steps(synthetic, tmp_path):
    overrides = tiny_spec_overrides("semantic", synthetic("semantic"), tmp_path)
    spec = load_spec(None, overrides + ["data.train.batch_size=3", "train.num_epochs=5", "train.checkpoint_interval=2",
                                        "train.validation_interval=1", "train.optim.milestones=[3,4]"])
    resolved = Mask2FormerRecipe(spec).spec  # 4 images, batch 3: 2 steps per epoch
    assert (resolved.train.max_steps, resolved.train.checkpoint_every, resolved.train.eval_every) == (10, 4, 2)
    assert resolved.train.optim.milestones == [6, 8]


def test_tao_optimizer_and_step_schedule():
    spec = load_spec(None, ["model.name=mask2former", "train.optim.type=SGD", "train.optim.lr_scheduler=StepLR",
                            "train.optim.step_size=3", "train.num_epochs=10"])
    assert spec.train.optim.optimizer == "sgd" and spec.train.optim.scheduler == "multistep"
    assert spec.train.optim.milestones == [3, 6, 9]  # epochs; the recipe turns them into steps
    assert load_spec(None, ["model.name=mask2former", "train.optim.lr_scheduler=WarmupPoly"]).train.optim.scheduler == "poly"
    with pytest.raises(SpecError, match="step_size"):
        load_spec(None, ["model.name=mask2former", "train.optim.lr_scheduler=StepLR"])


def test_a_section_under_both_names_is_one_section():
    spec = load_spec(None, ["model.name=mask2former", "dataset.train.batch_size=3", "data.train.num_workers=0"])
    assert (spec.data.train.batch_size, spec.data.train.num_workers) == (3, 0)
    with pytest.raises(SpecError, match="dataset.train.batch_size and data.train.batch_size: the same setting"):
        load_spec(None, ["model.name=mask2former", "dataset.train.batch_size=3", "data.train.batch_size=2"])


def test_tao_keys_segfit_does_not_use_load_with_a_warning():
    with pytest.warns(UserWarning) as warned:
        spec = load_spec(None, ["model.name=mask2former", "dataset.val.target_size=[1024,1024]", "train.num_gpus=2"])
    assert [str(w.message).split(" (")[0] for w in warned] == ["train.num_gpus: ignored", "data.val.target_size: ignored"]
    assert spec.data.val is not None
