"""SiamBAN through the shared engine: loss terms, exact auto-resume across the backbone unfreeze, the lr groups,
pair counts per dataset, backbone weights read only for a fresh start, evaluation outputs, and the spec (reference
defaults, keys in docs/spec.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from siamban_specs import tiny_spec

from segfit.engine.checkpoint import load_model_weights, seed_everything
from segfit.engine.evaluation import Shard
from segfit.engine.logging import read_records
from segfit.engine.trainer import train
from segfit.models.siamban.model import SiamBAN
from segfit.models.siamban.spec import EPOCH_STEPS, SiambanSpec
from segfit.registry import recipe_for
from segfit.spec.describe import markdown
from segfit.spec.load import SpecError, key_paths
from segfit.tasks import evaluate, export


def _losses(results_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_records(results_dir / "metrics.jsonl") if r["split"] == "train"}


def test_resume_repeats_the_uninterrupted_run_across_the_unfreeze(tracking_data, tmp_path):
    whole = tiny_spec(tracking_data, tmp_path / "whole")
    summary = train(recipe_for(whole), whole)
    records = [r for r in read_records(Path(summary["metrics"])) if r["split"] == "train"]
    assert {"loss", "cls", "loc", "lr/backbone", "lr/head"} <= set(records[0])
    assert records[0]["lr/head"] == pytest.approx(0.005 * 0.2)  # log warm-up starts at 0.2 × base_lr
    assert records[-1]["lr/backbone"] == pytest.approx(0.1 * records[-1]["lr/head"])
    part = tiny_spec(tracking_data, tmp_path / "part", "train.max_steps=2")
    train(recipe_for(part), part)
    resumed = tiny_spec(tracking_data, tmp_path / "part")
    train(recipe_for(resumed), resumed)
    assert _losses(tmp_path / "part") == _losses(tmp_path / "whole")  # same code, shapes and data: exact


def test_backbone_trains_only_from_the_unfreeze_step(tracking_data, tmp_path):
    spec = tiny_spec(tracking_data, tmp_path, "train.max_steps=2", "train.unfreeze_step=1",
                     "train.backbone_layers=[layer3, layer4]")
    recipe = recipe_for(spec)
    seed_everything(spec.train.seed)
    start = {k: v.clone() for k, v in recipe.build_model().state_dict().items()}
    train(recipe, spec)
    end = recipe.build_model()
    load_model_weights(end, tmp_path / "checkpoints" / "last")
    after = end.state_dict()
    assert torch.equal(after["backbone.layer2.0.weight"], start["backbone.layer2.0.weight"])
    assert torch.equal(after["backbone.layer2.1.running_mean"], start["backbone.layer2.1.running_mean"])
    assert not torch.equal(after["backbone.layer4.0.weight"], start["backbone.layer4.0.weight"])
    assert not torch.equal(after["neck.0.0.weight"], start["neck.0.0.weight"])


def test_pairs_are_counted_per_dataset_in_the_log(tracking_data, tmp_path):
    images = tracking_data["train_images"]
    datasets = (f"data.train.datasets=[{{name: near, format: got10k, images: '{images}', frame_range: 1, num_use: 3}},"
                f" {{format: got10k, images: '{images}', num_use: 5}}]")
    spec = tiny_spec(tracking_data, tmp_path, datasets, "train.max_steps=3")
    train(recipe_for(spec), spec)
    records = [r for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert all(r.get("samples/near", 0) + r.get("samples/train1", 0) == 4 for r in records)  # a batch of 4 per step
    assert sum(r.get("samples/near", 0) for r in records) > 0 and sum(r.get("samples/train1", 0) for r in records) > 0


def test_backbone_weights_are_read_only_when_training_starts_from_scratch(tracking_data, tmp_path):
    start = tmp_path / "imagenet.safetensors"
    safetensors.torch.save_file(SiamBAN("tiny", 16).backbone.state_dict(), str(start))
    spec = tiny_spec(tracking_data, tmp_path / "run", f"model.backbone_weights={start}", "train.max_steps=2",
                     "train.unfreeze_step=100")
    train(recipe_for(spec), spec)
    trained = SiamBAN("tiny", 16)
    load_model_weights(trained, tmp_path / "run" / "checkpoints" / "last")
    for key, value in safetensors.torch.load_file(str(start)).items():
        assert torch.equal(trained.backbone.state_dict()[key], value), key  # frozen: still the file's
    start.unlink()  # the trained checkpoint holds every weight: nothing below needs the file
    assert 0 <= evaluate.run(spec, "val")["ao"] <= 1
    assert {p.name for p in export.run(spec)} >= {"siamban_template.onnx", "siamban_track.onnx"}
    longer = tiny_spec(tracking_data, tmp_path / "run", f"model.backbone_weights={start}", "train.max_steps=3",
                       "train.unfreeze_step=100")
    assert train(recipe_for(longer), longer)["step"] == 3  # a resume, not a fresh start
    with pytest.raises(SpecError, match="backbone_weights and checkpoint"):
        tiny_spec(tracking_data, tmp_path, f"model.backbone_weights={start}", f"model.checkpoint={start}")


def test_evaluate_writes_metrics_plots_and_overlays(tracking_data, tmp_path):
    spec = tiny_spec(tracking_data, tmp_path, "evaluate.num_samples=1")
    metrics = evaluate.run(spec, "val")
    assert {"success_auc", "precision", "norm_precision", "ao", "sr50", "sr75"} <= set(metrics)
    assert metrics["num_sequences"] == 2 and 0 <= metrics["ao"] <= 1
    samples = tmp_path / "eval" / "samples"
    assert {p.name for p in samples.iterdir()} == {"per_sequence.csv", "success.png", "precision.png", "seq_000.mp4"}


def test_evaluation_shards_merge_to_the_whole_split(tracking_data, tmp_path):
    """Sharded evaluation (engine/evaluation.py): each half of the sequences tracked alone, merged, as the whole."""
    recipe = recipe_for(tiny_spec(tracking_data, tmp_path))
    model = recipe.build_model().eval()
    whole = recipe.evaluate(model, "val")
    halves = [recipe.evaluate_shard(model, "val", Shard(rank, 2), None) for rank in (0, 1)]
    assert [len(half.sequences) for half in halves] == [1, 1]
    # the same sequences through the same code in this process, merged in order: the same arrays, the same means
    assert recipe.merge_evaluation(halves, "val", None) == whole


def test_spec_defaults_are_the_reference_config():
    spec = SiambanSpec()
    optim = spec.train.optim
    assert (optim.optimizer, optim.base_lr, optim.momentum, optim.weight_decay, optim.grad_clip) == ("sgd", 0.005, 0.9,
                                                                                                    1e-4, 10.0)
    assert spec.train.max_steps == 20 * EPOCH_STEPS and spec.train.unfreeze_step == 10 * EPOCH_STEPS
    assert spec.data.batch_size == 28 and spec.data.train.neg == 0.2
    assert spec.data.train.search_augment.shift == 64 and spec.data.train.search_augment.blur == 0.2
    text = markdown()
    for key in key_paths(SiambanSpec):
        assert f"| `{key}` |" in text, key
    assert "| `data.train.datasets[].frame_range` |" in text
    assert "| `data.train.search_augment.shift` | float | `64.0` |" in text  # the section's own default, not the class's


def test_bad_crop_sizes_are_spec_errors(tracking_data, tmp_path):
    with pytest.raises(SpecError, match="search_size"):
        tiny_spec(tracking_data, tmp_path, "data.search_size=130")
