"""The SAM 2 recipe: frozen parts, parameter groups, the training step's gradients, evaluation, exact resume."""

import json
from pathlib import Path

import pytest
import torch

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.evaluation import Shard
from segfit.engine.trainer import train
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.predict import predict_low_res
from segfit.models.sam2.recipe import PART_PREFIXES, Sam2Recipe, part_of
from segfit.registry import recipe_for
from segfit.spec import load_spec


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_images(out, num_train=6, num_val=2, size=(120, 160), max_objects=4, seed=1)
    return out


def make_spec(data_dir: Path, run_dir: Path, *overrides: str):
    return load_spec(None, [
        "model.name=sam2", "model.size=test", "model.image_size=256", f"results_dir={run_dir}",
        f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
        f"data.val.images={data_dir}/val/images", f"data.val.annotations={data_dir}/val/masks",
        "data.batch_size=2", "train.optim.base_lr=1e-3", "train.optim.vision_lr=1e-3",
        "train.prompts.num_correction_clicks=1", *overrides,
    ])


def test_every_parameter_belongs_to_a_part(data_dir, tmp_path):
    model = Sam2Recipe(make_spec(data_dir, tmp_path)).build_model()
    parts = {part_of(name) for name, _ in model.named_parameters()}
    assert parts == set(PART_PREFIXES) - {"memory"}  # the image model has no memory (test_video_recipe.py)


@pytest.mark.parametrize("trainable", [["mask_decoder"], ["prompt_encoder", "mask_decoder"], ["image_encoder", "mask_decoder"]])
def test_only_trainable_parts_get_gradients(data_dir, tmp_path, trainable):
    recipe = recipe_for(make_spec(data_dir, tmp_path, f"model.trainable=[{','.join(trainable)}]"))
    model = recipe.build_model()
    batch = recipe.collate([recipe.train_dataset().sources[0].dataset[(i, i)] for i in range(2)])
    terms = recipe.training_step(model, batch)
    assert set(terms) >= {"loss", "loss_mask", "loss_dice", "loss_iou", "loss_class", "iou"}
    terms["loss"].backward()
    for name, param in model.named_parameters():
        if part_of(name) in trainable:
            assert param.requires_grad
        else:
            assert not param.requires_grad and param.grad is None, name
    assert model.mask_decoder.iou_prediction_head.proj_out.weight.grad.abs().sum() > 0
    if "image_encoder" in trainable:  # the decoder's high-res projections run in the image path
        assert model.vision_encoder.backbone.patch_embed.projection.weight.grad.abs().sum() > 0
        assert model.mask_decoder.conv_s0.weight.grad.abs().sum() > 0
    groups = {g["name"]: g["lr"] for g in recipe.param_groups(model)}
    assert ("vision" in groups) == ("image_encoder" in trainable)


def test_split_embeddings_equal_hf(data_dir, tmp_path):
    model = Sam2Recipe(make_spec(data_dir, tmp_path)).build_model().eval()
    with torch.no_grad():
        model.no_memory_embedding.normal_()
    pixels = torch.randn(2, 3, 256, 256)
    for ours, theirs in zip(image_embeddings(model, pixels, False), model.get_image_embeddings(pixels)):
        assert torch.equal(ours, theirs)


def test_dataset_items_are_a_function_of_the_seed(data_dir, tmp_path):
    dataset = recipe_for(make_spec(data_dir, tmp_path, "data.max_num_objects=2")).train_dataset().sources[0].dataset
    a, b, c = dataset[(3, 7)], dataset[(3, 7)], dataset[(3, 8)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])
    assert a["image"].shape == (3, 256, 256) and a["masks"].dtype == torch.bool and len(a["masks"]) <= 2
    assert a["source"] == c["source"]


def test_evaluate_reports_click_and_box_metrics(data_dir, tmp_path):
    recipe = recipe_for(make_spec(data_dir, tmp_path, "evaluate.max_clicks=3"))
    metrics = recipe.evaluate(recipe.build_model().eval(), "val", samples_dir=tmp_path / "samples")
    assert {"miou@1", "miou@3", "noc@85", "noc@90", "box_miou"} <= set(metrics)
    assert metrics["num_images"] == 2 and 0 <= metrics["miou@1"] <= 1 and 1 <= metrics["noc@85"] <= 3
    assert len(list((tmp_path / "samples").glob("*.png"))) == 2
    assert (tmp_path / "samples" / "per_image.csv").read_text().count("\n") == 3


def test_evaluation_shards_merge_to_the_whole_split(data_dir, tmp_path):
    """Sharded evaluation (engine/evaluation.py): the two halves' states merged give the whole split's metrics."""
    recipe = recipe_for(make_spec(data_dir, tmp_path, "evaluate.max_clicks=3"))
    model = recipe.build_model().eval()
    whole = recipe.evaluate(model, "val", samples_dir=tmp_path / "whole")
    halves = [recipe.evaluate_shard(model, "val", Shard(rank, 2), None) for rank in (0, 1)]
    assert [len(half["rows"]) for half in halves] == [1, 1]
    merged = recipe.merge_evaluation(halves, "val", tmp_path / "merged")
    # the same images through the same code in this process; only the order of the float64 sums differs
    assert merged == pytest.approx(whole, rel=1e-12) and merged["num_objects"] == whole["num_objects"]
    assert (tmp_path / "merged" / "per_image.csv").read_text() == (tmp_path / "whole" / "per_image.csv").read_text()


@pytest.mark.slow
def test_resumed_run_repeats_the_uninterrupted_losses(data_dir, tmp_path):
    """4 steps in one go vs 2 steps, stop, resume to 4: the same loss at every step (CPU)."""
    common = ("train.log_every=1", "train.eval_every=0", "train.checkpoint_every=2", "train.optim.warmup_steps=1",
              "train.embedding_cache.mode=off")  # a fresh cache on resume would encode other batch shapes
    full = make_spec(data_dir, tmp_path / "full", "train.max_steps=4", *common)
    train(recipe_for(full), full)
    part = make_spec(data_dir, tmp_path / "part", "train.max_steps=2", *common)
    train(recipe_for(part), part)
    resumed = make_spec(data_dir, tmp_path / "part", "train.max_steps=4", *common)
    train(recipe_for(resumed), resumed)

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]

    assert losses(tmp_path / "full") == losses(tmp_path / "part")
    assert len(losses(tmp_path / "full")) == 4


@pytest.mark.slow
def test_fine_tuning_learns(data_dir, tmp_path):
    """A few dozen steps on the synthetic shapes lower the training loss of the test-size model."""
    spec = make_spec(data_dir, tmp_path, "train.max_steps=30", "train.log_every=10", "train.eval_every=0",
                     "train.checkpoint_every=100", "train.optim.base_lr=3e-3", "train.optim.scheduler=constant")
    train(recipe_for(spec), spec)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < 0.8 * records[0]["loss"]


def test_stability_fallback_off_keeps_mask_token_0(data_dir, tmp_path):
    """``model.stability_fallback: false``: eval-mode single masks are mask token 0's (as in training), never one
    of the multimask outputs, and the config says so (exports carry it); on, an unstable random mask falls back."""
    points, labels = torch.tensor([[[60.0, 80.0]], [[200.0, 30.0]]]), torch.ones(2, 1, dtype=torch.long)
    pixels, masks = torch.rand(1, 3, 256, 256), {}
    for fallback in (True, False):
        torch.manual_seed(0)
        model = Sam2Recipe(make_spec(data_dir, tmp_path, "model.random_init=reference",
                                     f"model.stability_fallback={str(fallback).lower()}")).build_model()
        assert model.config.mask_decoder_config.dynamic_multimask_via_stability is fallback
        embeddings = image_embeddings(model, pixels, False)
        with torch.no_grad():
            token_0 = predict_low_res(model.train(), embeddings, points, labels)[0]
            masks[fallback] = predict_low_res(model.eval(), embeddings, points, labels)[0]
        if not fallback:
            assert torch.equal(masks[fallback], token_0)
    assert not torch.equal(masks[True], masks[False])  # same seed, same weights: only the fallback differs
