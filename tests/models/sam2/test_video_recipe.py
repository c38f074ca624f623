"""SAM 2 on videos through the recipe: clips (dataset, collate, training through the engine), J&F validation and
inference on a frame folder or a video file."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from segfit.data.formats import open_video_split
from segfit.data.image_io import read_index_map
from segfit.data.synthetic import write_synthetic_images, write_synthetic_videos
from segfit.engine.logging import read_records
from segfit.engine.trainer import train
from segfit.models.sam2.recipe import part_of
from segfit.models.sam2.video_recipe import Sam2VideoRecipe
from segfit.registry import recipe_for
from segfit.spec import load_spec

SIZE = 256


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    return write_synthetic_videos(tmp_path_factory.mktemp("videos"), num_train=3, num_val=2, num_frames=5)


def make_spec(videos: dict[str, Path], run_dir: Path, *overrides: str):
    return load_spec(None, [
        "model.name=sam2", "model.size=test", f"model.image_size={SIZE}", f"results_dir={run_dir}",
        "data.train.format=davis", f"data.train.images={videos['train_images']}",
        f"data.train.annotations={videos['train_annotations']}", "data.batch_size=2", "data.num_workers=0",
        "data.video.num_frames=3", "data.video.max_num_objects=2", "train.video.prompts.num_correction_clicks=1",
        "train.device=cpu", "train.optim.base_lr=1e-3", "train.eval_every=0", *overrides,
    ])


def test_video_data_picks_the_video_recipe_and_model(videos, tmp_path):
    recipe = recipe_for(make_spec(videos, tmp_path))
    assert isinstance(recipe, Sam2VideoRecipe)
    model = recipe.build_model()
    trainable = {part_of(name) for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_encoder", "mask_decoder", "memory"}


def test_memory_attention_dropout_is_set_everywhere_it_is_drawn(videos, tmp_path):
    """Its layers' outputs and its RoPE attention maps, and the config (exports carry it)."""
    model = recipe_for(make_spec(videos, tmp_path, "model.memory_attention_dropout=0.25")).build_model()
    layers = [m for m in model.memory_attention.modules() if isinstance(m, torch.nn.Dropout)]
    maps = [m for m in model.memory_attention.modules() if hasattr(m, "dropout_p")]
    assert len(layers) == 4 * len(model.memory_attention.layers) and len(maps) == 2 * len(model.memory_attention.layers)
    assert {m.p for m in layers} == {m.dropout_p for m in maps} == {0.25}
    assert model.config.memory_attention_dropout == model.config.memory_attention_rope_dropout == 0.25
    with pytest.raises(ValueError, match="memory_attention_dropout"):
        make_spec(videos, tmp_path, "model.memory_attention_dropout=1")


def test_a_batch_of_clips_flattens_its_objects(videos, tmp_path):
    recipe = recipe_for(make_spec(videos, tmp_path))
    dataset = recipe.train_dataset().sources[0].dataset
    batch = recipe.collate([dataset[(0, 1)], dataset[(1, 2)]])
    frames, masks, clip_index = batch["frames"], batch["masks"], batch["clip_index"]
    assert frames.shape[:3] == (3, 2, 3) and frames.shape[-2:] == (SIZE, SIZE)
    assert masks.shape[0] == 3 and masks.shape[1] == len(clip_index) and masks.dtype == torch.bool
    assert clip_index.tolist() == sorted(clip_index.tolist()) and set(clip_index.tolist()) == {0, 1}
    assert masks[0].flatten(1).any(dim=1).all()  # every object is visible in its clip's first frame


def test_training_on_clips_validates_with_j_and_f_and_resumes(videos, tmp_path):
    val = ("data.val.format=davis", f"data.val.images={videos['val_images']}",
           f"data.val.annotations={videos['val_annotations']}", "train.eval_every=2")
    spec = make_spec(videos, tmp_path, "train.max_steps=2", "train.log_every=1", "train.checkpoint_every=1", *val)
    summary = train(recipe_for(spec), spec)
    records = read_records(Path(summary["metrics"]))
    train_records = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2] and all(r["loss"] > 0 for r in train_records)
    assert {"loss_mask", "loss_dice", "loss_iou", "loss_class", "iou"} <= set(train_records[0])
    (val_record,) = [r for r in records if r["split"] == "val"]
    assert 0 <= val_record["j&f"] <= 1 and val_record["num_videos"] == 2 and summary["best_metric"] == "j&f"
    assert (tmp_path / "samples" / "step_000002" / "per_object.csv").is_file()
    more = make_spec(videos, tmp_path, "train.max_steps=3", "train.log_every=1", "train.checkpoint_every=1")
    assert train(recipe_for(more), more)["step"] == 3


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # a skipped first step
def test_two_frame_clips_given_whole_as_masks_are_stepped_over(videos, tmp_path, monkeypatch):
    """Meta's trainer crashes in backward on a 2-frame clip whose both frames are mask prompts (nothing is
    predicted, so the loss has no gradient); segfit's engine steps over such batches (no optimizer step, grad_norm 0)
    and trains on the others (1 initial frame: frame 1 is tracked from memory)."""
    spec = make_spec(videos, tmp_path, "data.batch_size=1", "data.video.num_frames=2",
                     "train.video.prompts.prob_click=0", "train.video.prompts.prob_box=0",
                     "train.video.prompts.prob_mask=1",
                     "train.video.num_init_cond_frames=2",  # 1 or 2 initial frames, drawn per batch
                     "train.max_steps=6", "train.log_every=1")
    recipe = recipe_for(spec)
    trains, before = [], []  # per step: whether its loss has a gradient, the trainable weights it started from
    step = recipe.training_step

    def recorded(model, batch):
        before.append({name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad})
        terms = step(model, batch)
        trains.append(terms["loss"].requires_grad)
        return terms

    monkeypatch.setattr(recipe, "training_step", recorded)
    assert train(recipe, spec)["step"] == 6
    assert json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())["step"] == 6
    assert len(trains) == 6 and 0 < trains.count(False) < 6, trains  # both kinds of step (seeded draws)
    records = [r for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert [r["grad_norm"] > 0 for r in records] == trains  # no gradient at all where nothing trains
    last = safetensors.torch.load_file(tmp_path / "checkpoints" / "last" / "model.safetensors")
    after = [*before[1:], {name: last[name] for name in before[0]}]
    for trained, start, end in zip(trains, before, after):  # weights move exactly on the steps that train
        assert any(not torch.equal(start[name], end[name]) for name in start) == trained


def test_images_and_videos_train_together_each_batch_from_one_dataset(videos, tmp_path, monkeypatch):
    """A training mix written as in a spec file: clips at batch 1, images as one-frame clips at batch 3."""
    images = write_synthetic_images(tmp_path / "images", num_train=4, num_val=0, size=(96, 128), max_objects=3)
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text(f"""
data:
  train_mix:
    - {{name: clips, format: davis, images: {videos['train_images']}, annotations: {videos['train_annotations']},
       batch_size: 1, num_frames: 2}}
    - {{name: photos, images: {images['train_images']}, annotations: {images['train_annotations']}, batch_size: 3,
       repeat_factor: 2}}
""")
    spec = load_spec(spec_file, [
        "model.name=sam2", "model.size=test", f"model.image_size={SIZE}", f"results_dir={tmp_path / 'run'}",
        "data.num_workers=0", "data.video.max_num_objects=2", "train.video.prompts.num_correction_clicks=1",
        "train.device=cpu", "train.eval_every=0", "train.max_steps=4", "train.log_every=4",
    ])
    recipe = recipe_for(spec)
    assert isinstance(recipe, Sam2VideoRecipe)  # a mix with any video dataset trains the video model
    shapes = []
    step = recipe.training_step
    monkeypatch.setattr(recipe, "training_step", lambda model, batch: shapes.append(batch["frames"].shape[:2]) or
                        step(model, batch))
    train(recipe, spec)
    (record,) = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert sorted(set(shapes)) == [(1, 3), (2, 1)]  # (frames, clips): photos as 3 one-frame clips, 1 clip of 2
    assert record["samples/photos"] == 3 * shapes.count((1, 3)) and record["samples/clips"] == shapes.count((2, 1))


def test_evaluation_of_a_perfect_tracker_is_one(videos, tmp_path, monkeypatch):
    """The protocol around the model: a tracker that returns the ground truth scores J = F = 1."""
    spec = make_spec(videos, tmp_path, "data.val.format=davis", f"data.val.images={videos['val_images']}",
                     f"data.val.annotations={videos['val_annotations']}")
    recipe = recipe_for(spec)
    reader, truth = open_video_split(spec.data.val), []
    for i in range(len(reader)):
        masks = reader.load(i).masks
        truth.append(torch.from_numpy(masks[:, masks[0].reshape(masks.shape[1], -1).any(1)]))  # first-frame objects
    monkeypatch.setattr(recipe, "_track", lambda *args: truth.pop(0))
    metrics = recipe.evaluate(recipe.build_model(), "val")
    assert metrics["j&f"] == pytest.approx(1.0) and metrics["num_videos"] == 2


@pytest.mark.parametrize("prompt", ["first_masks", "boxes", "points", "video_file"])
def test_inference_tracks_the_first_frames_objects_through_a_video(videos, tmp_path, prompt):
    video = videos["val_images"] / "video_000"
    first = videos["val_annotations"] / "video_000" / "00000.png"
    ids = read_index_map(first, None)
    ys, xs = np.nonzero(ids == ids.max())
    given = {"first_masks": [f"inference.first_masks={first}"],
             "boxes": [f"inference.boxes=[[{xs.min()},{ys.min()},{xs.max()},{ys.max()}]]"],
             "points": [f"inference.points=[[{xs.mean():.0f},{ys.mean():.0f}]]"],
             "video_file": [f"inference.first_masks={first}"]}[prompt]
    source = video
    if prompt == "video_file":  # an mp4 of the frames: extracted first
        frames = [cv2.imread(str(p)) for p in sorted(video.glob("*.jpg"))]
        source = tmp_path / "clip.mp4"
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
        for frame in frames:
            writer.write(frame)
        writer.release()
    spec = make_spec(videos, tmp_path, f"inference.input={source}", *given)
    recipe = recipe_for(spec)
    written = recipe.run_inference(recipe.build_model, tmp_path / "out")
    masks = [p for p in written if p.suffix == ".png"]
    assert len(masks) == 5 and written[-1].name == "overlay.gif" and written[-1].is_file()
    objects = int(ids.max()) if prompt in ("first_masks", "video_file") else 1
    for path in masks:
        index = read_index_map(path, None)
        assert index.shape == ids.shape and set(np.unique(index)) <= set(range(objects + 1))


def test_inference_needs_the_first_frames_objects(videos, tmp_path):
    spec = make_spec(videos, tmp_path, f"inference.input={videos['val_images'] / 'video_000'}")
    recipe = recipe_for(spec)
    with pytest.raises(ValueError, match="first_masks"):
        recipe.run_inference(recipe.build_model, tmp_path / "out")
