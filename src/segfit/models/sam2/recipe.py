"""SAM 2 promptable segmentation on images: the recipe the engine and the tasks drive.

Flow of a training step: images → image features (the encoder runs without gradients when frozen, or they come
from the embedding cache) → the objects of all images flattened → first prompts and correction clicks simulated
from each object's mask, one mask-decoder call per prompt kind and step (``simulate.py``) → focal + dice + IoU +
object-score loss on the low-res logits (upsampled to the model resolution by default; best of the three masks for
single clicks).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from transformers import Sam2Model

from segfit.data.check import CheckReport, VideoCheckReport, check_splits
from segfit.data.formats import VIDEO_FORMATS, open_split
from segfit.data.safe import SafeReader
from segfit.engine.evaluation import Shard
from segfit.engine.recipe import ParamGroup
from segfit.engine.sampler import MixedDataset, Source
from segfit.metrics.interactive import ClickMetrics, click_protocol
from segfit.metrics.masks import MeanIoU, mask_iou
from segfit.models.sam2 import dataset as sam2_dataset
from segfit.models.sam2 import param_groups as sam2_param_groups
from segfit.models.sam2.build import build_sam2, set_stability_fallback
from segfit.models.sam2.cache import embedding_cache, pixel_digest, without_color_jitter
from segfit.models.sam2.export import export_model
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.inference import run_inference
from segfit.models.sam2.peft import add_lora, enable_activation_checkpointing, encoder_trains, is_adapter, merge_lora
from segfit.models.sam2.predict import predict_low_res
from segfit.models.sam2.preprocess import boxes_to_model, masks_to_original, points_to_model, preprocess_image
from segfit.models.sam2.simulate import prompt_and_score
from segfit.models.sam2.spec import Sam2Spec
from segfit.prompts import center_points, mask_to_box
from segfit.spec.schema import DataSpec, MixSpec, SplitSpec, eval_split
from segfit.visualize import overlay, save_png, side_by_side

# Which parameters belong to which trainable part (HF Sam2Model names). The decoder's projections of the
# high-resolution features run in the image path (once per image, as in the official model), so they go with
# the image encoder: a frozen encoder's outputs, projections included, can then be cached.
PART_PREFIXES = {
    "image_encoder": ("vision_encoder.", "no_memory_embedding", "mask_decoder.conv_s0.", "mask_decoder.conv_s1."),
    "prompt_encoder": ("prompt_encoder.", "shared_image_embedding."),
    "mask_decoder": ("mask_decoder.",),
    "memory": ("memory_attention.", "memory_encoder.", "memory_temporal_positional_encoding", "mask_downsample.",
               "object_pointer_proj.", "temporal_positional_encoding_projection_layer.", "no_object_pointer",
               "no_memory_positional_encoding", "occlusion_spatial_embedding_parameter"),
}

COMPILE_OPTIONS: dict[str, Any] = {"dynamic": True}
"""``torch.compile`` arguments for ``train.compile``."""


def part_of(param_name: str) -> str:
    for part, prefixes in PART_PREFIXES.items():
        if param_name.startswith(prefixes):
            return part
    raise KeyError(f"parameter {param_name} belongs to no SAM 2 part")


class Sam2Recipe:
    default_best_metric = "miou@1"

    def __init__(self, spec: Sam2Spec):
        self.spec = spec
        self.embedding_cache = embedding_cache(spec, PART_PREFIXES["image_encoder"])

    # ---- model -------------------------------------------------------------------------------------------
    def build_model(self) -> Sam2Model:
        m = self.spec.model
        return self._prepared(build_sam2(m.size, m.version, m.image_size, m.checkpoint, m.random_init))

    def _prepared(self, model: Sam2Model) -> Sam2Model:
        """Adapters, frozen parts, activation checkpointing and the stability fallback as ``model`` asks."""
        m = self.spec.model
        set_stability_fallback(model, m.stability_fallback)
        add_lora(model, m.lora, m.trainable)  # before freezing: peft leaves only the adapters trainable
        for name, param in model.named_parameters():
            param.requires_grad_(part_of(name) in m.trainable or is_adapter(name))
        if m.activation_checkpointing:
            enable_activation_checkpointing(model)
        return model

    def compile(self, model: Sam2Model) -> None:
        """The prompt encoder and mask decoder, in place (parameter names unchanged): a step calls them
        1 + num_correction_clicks times per prompt kind. The object count varies, so shapes are dynamic."""
        model.prompt_encoder.compile(**COMPILE_OPTIONS)
        model.mask_decoder.compile(**COMPILE_OPTIONS)

    def fsdp_blocks(self, model: Sam2Model) -> list[nn.Module]:
        """FSDP's units (``train.distributed: fsdp``): the Hiera blocks, which hold nearly all of a large model's
        parameters and each run once per step. The mask decoder, called once per prompt kind and click, stays in
        the rest, gathered once per step.

        None with the embedding cache: a unit's gathering is a collective, so every process must run it, and the
        encoder runs only for a process's cache misses. The whole model is then one unit, gathered for the step.
        """
        return [] if self.embedding_cache is not None else list(model.vision_encoder.backbone.blocks)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        return sam2_param_groups.param_groups(model, self.spec.train.optim)

    # ---- data --------------------------------------------------------------------------------------------
    def _reader(self, split: SplitSpec) -> SafeReader:
        return SafeReader(open_split(split, self.spec.data.min_object_area), self.spec.data.on_error)

    def train_dataset(self) -> MixedDataset:
        """Every training dataset (``data.train`` or ``data.train_mix``) with its batch size and repeat factor."""
        data = self.spec.data if self.embedding_cache is None else without_color_jitter(self.spec.data)
        return MixedDataset([Source(split.name, self._split_dataset(split, data), split.batch_size,  # type: ignore[arg-type]
                                    split.repeat_factor) for split in data.training_splits()])

    def _split_dataset(self, split: MixSpec, data: DataSpec) -> Dataset:
        objects = replace(data, max_num_objects=split.max_num_objects or data.max_num_objects)
        return sam2_dataset.Sam2ImageDataset(self._reader(split), objects, self.spec.model.image_size)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = sam2_dataset.collate(samples)
        if self.embedding_cache is not None:  # hashed here, in the loader's workers: the step never reads pixels back
            batch["pixel_digests"] = [pixel_digest(image) for image in batch["image"]]
        return batch

    def check_data(self) -> list[CheckReport | VideoCheckReport]:
        return check_splits(self.spec.data)

    # ---- training ----------------------------------------------------------------------------------------
    def training_step(self, model: Sam2Model, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One episode for the objects of every image of the batch (one decoder call per prompt kind and step)."""
        embeddings = (self.embedding_cache.embeddings(model, batch["image"], batch.get("pixel_digests"))
                      if self.embedding_cache else image_embeddings(model, batch["image"], encoder_trains(self.spec.model)))
        return prompt_and_score(model, embeddings, batch["masks"], batch["valid"], self.spec.train.prompts,
                                self.spec.train.loss, self.spec.model.multimask_output, image_index=batch["image_index"])

    # ---- tasks -------------------------------------------------------------------------------------------
    def run_inference(self, load_model: Callable[[], Sam2Model], out_dir: Path) -> list[Path]:
        """``load_model`` is called only when the PyTorch model runs (not for ``inference.backend=onnx``)."""
        return run_inference(load_model, self.spec, out_dir)

    def export(self, model: Sam2Model, out_dir: Path) -> list[Path]:
        return export_model(merge_lora(model), self.spec.export.formats, out_dir)

    # ---- evaluation --------------------------------------------------------------------------------------
    def eval_split(self, split: str) -> SplitSpec:
        return eval_split(self.spec.data, split)

    def evaluate(self, model: Sam2Model, split: str, samples_dir: Path | None = None) -> dict[str, float]:
        """The split's metrics: the whole split as one shard, merged."""
        return self.merge_evaluation([self.evaluate_shard(model, split, Shard(), samples_dir)], split, samples_dir)

    @torch.no_grad()
    def evaluate_shard(self, model: Sam2Model, split: str, shard: Shard, samples_dir: Path | None) -> dict[str, Any]:
        """Click protocol (1st click farthest from the boundary, then centres of the largest error) + box prompts on
        ``shard``'s images: sums and counts, which merge over processes (``engine/evaluation.py``)."""
        spec, device = self.spec, next(model.parameters()).device
        reader = self._reader(self.eval_split(split))
        clicks, boxes, rows = ClickMetrics(), MeanIoU(), []
        for i in shard.range(min(len(reader), spec.evaluate.max_images or len(reader))):
            record = reader.load(i)
            if record is None or not len(record.masks):
                continue
            embeddings = image_embeddings(model, preprocess_image(record.image, spec.model.image_size)[None].to(device), False)
            gt_all = torch.from_numpy(record.masks).to(device)
            valid = None if record.ignore is None else torch.from_numpy(~record.ignore).to(device)
            image_clicks, image_boxes = [], []
            for start in range(0, len(gt_all), spec.evaluate.object_batch):
                gt = gt_all[start : start + spec.evaluate.object_batch]
                predict = self._click_predictor(model, embeddings, record.size)
                image_clicks.append(click_protocol(gt, predict, spec.evaluate.max_clicks, valid))
                image_boxes.append(mask_iou(self._predict_boxes(model, embeddings, mask_to_box(gt), record.size), gt, valid))
            ious, box_ious = torch.cat(image_clicks), torch.cat(image_boxes)
            clicks.update(ious)
            boxes.update(box_ious)
            rows.append({"image": record.source, "objects": len(gt_all), "miou@1": ious[:, 0].mean().item(),
                         f"miou@{spec.evaluate.max_clicks}": ious[:, -1].mean().item(), "box_miou": box_ious.mean().item()})
            if samples_dir is not None and len(rows) <= spec.evaluate.num_samples:
                self._write_sample(model, embeddings, record, gt_all, samples_dir)
        return {"clicks": clicks, "boxes": boxes, "rows": rows, "skipped": len(reader.skipped)}

    def merge_evaluation(self, states: list[dict[str, Any]], split: str, samples_dir: Path | None) -> dict[str, float]:
        """The metrics of the shards' states, in shard order (one process's image order)."""
        clicks, boxes = ClickMetrics(), MeanIoU()
        for state in states:
            clicks.merge(state["clicks"])
            boxes.merge(state["boxes"])
        rows, skipped = [row for state in states for row in state["rows"]], sum(state["skipped"] for state in states)
        if not rows:
            raise ValueError(f"data.{split}: no image with objects could be evaluated ({skipped} skipped)")
        if samples_dir is not None:
            write_rows(samples_dir / "per_image.csv", rows)
        return {**clicks.compute(), "box_miou": boxes.compute(), "num_images": len(rows), "num_objects": clicks.count,
                "skipped_images": skipped}

    def _click_predictor(self, model: Sam2Model, embeddings: list[Tensor], orig_hw: tuple[int, int]) -> Callable:
        """The click protocol's predict function: original-pixel clicks → original-size masks."""
        size = self.spec.model.image_size

        def predict(points: Tensor, labels: Tensor, prev: Tensor | None) -> tuple[Tensor, Tensor]:
            multimask = self.spec.model.multimask_output and points.shape[1] == 1
            low, scores, _ = predict_low_res(model, embeddings, points_to_model(points, orig_hw, size), labels,
                                             mask_input=prev, multimask_output=multimask)
            best = low[torch.arange(len(low)), scores.argmax(1)][:, None]
            return masks_to_original(best, orig_hw)[:, 0] > 0, best

        return predict

    def _predict_boxes(self, model: Sam2Model, embeddings: list[Tensor], boxes: Tensor, orig_hw: tuple[int, int]) -> Tensor:
        size = self.spec.model.image_size
        low, _, _ = predict_low_res(model, embeddings, None, None, boxes_model_frame=boxes_to_model(boxes.float(), orig_hw, size))
        return masks_to_original(low[:, :1], orig_hw)[:, 0] > 0

    def _write_sample(self, model: Sam2Model, embeddings: list[Tensor], record: Any, gt: Tensor, out_dir: Path) -> None:
        """Ground truth | 1-click prediction, with the clicks drawn."""
        points, labels = center_points(gt)
        pred, _ = self._click_predictor(model, embeddings, record.size)(points, labels, None)
        panel = side_by_side(
            overlay(record.image, gt.cpu().numpy()),
            overlay(record.image, pred.cpu().numpy(), points=points.cpu().numpy(), labels=labels.cpu().numpy()),
            titles=["ground truth", "prediction (1 click)"],
        )
        save_png(out_dir / f"{Path(record.source).stem}.png", panel)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """A CSV with one row per dict (the columns of the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def sam2_recipe(spec: Sam2Spec) -> Sam2Recipe:
    """The recipe for ``spec``'s training data: clips of videos (``davis``, ``sav``; a training mix with any video
    dataset, its images then one-frame clips) train the video model with memory, anything else the image model."""
    if any(split.format in VIDEO_FORMATS for split in spec.data.training_splits()):
        from segfit.models.sam2.video_recipe import Sam2VideoRecipe  # imports the video model only when used

        return Sam2VideoRecipe(spec)
    return Sam2Recipe(spec)
