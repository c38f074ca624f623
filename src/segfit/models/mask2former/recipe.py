"""Mask2Former (semantic / instance / panoptic) on the shared engine.

A training step: images padded into one batch → ``Mask2FormerForUniversalSegmentation`` → transformers' loss
(Hungarian matching on sampled points, class CE + mask BCE + dice on every decoder layer) → ``loss`` plus the
last layer's terms for the logs. Evaluation and inference run one image at a time at its own size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn
from transformers import Mask2FormerForUniversalSegmentation

from segfit.data.check import SegmentCheckReport, check_segment_split
from segfit.data.formats.segments import SegmentReader, SegmentSplit
from segfit.data.records import DataError
from segfit.engine.evaluation import Shard
from segfit.engine.recipe import ParamGroup
from segfit.models.mask2former import dataset as m2f_dataset
from segfit.models.mask2former.build import build_mask2former, load_backbone
from segfit.models.mask2former.evaluate import evaluate_shard, merge_scores
from segfit.models.mask2former.inference import run_inference
from segfit.models.mask2former.labels import LabelMap
from segfit.models.mask2former.predict import torch_forward
from segfit.models.mask2former.spec import Mask2FormerSpec, Mask2FormerSplitSpec
from segfit.models.mask2former.swin_weights import BACKBONE_PREFIX
from segfit.spec import SpecError

DEFAULT_BEST = {"semantic": "miou", "instance": "ap", "panoptic": "pq"}
TAO_MODULES = {
    "backbone": (BACKBONE_PREFIX,),
    "sem_seg_head.pixel_decoder": ("model.pixel_level_module.decoder.",),
    "sem_seg_head.predictor": ("model.transformer_module.", "class_predictor."),
    "sem_seg_head": ("model.pixel_level_module.decoder.", "model.transformer_module.", "class_predictor."),
}
"""TAO's (Detectron2's) module names for ``train.freeze`` → the transformers model's parameter-name prefixes."""


class Mask2FormerRecipe:
    def __init__(self, spec: Mask2FormerSpec):
        self.labels = LabelMap.from_spec(spec.data, spec.model.sem_seg_head.num_classes)
        self._spec = spec
        self.default_best_metric = DEFAULT_BEST[spec.model.mode]

    @functools.cached_property
    def spec(self) -> Mask2FormerSpec:
        """The spec the engine runs: TAO's epoch counts turned into steps (an epoch: every training image once).

        A property, so only training indexes the training split (inference may run where it is absent)."""
        spec, train = self._spec, self._spec.train
        if train.num_epochs is None and train.checkpoint_interval is None and train.validation_interval is None:
            return spec
        per_epoch = math.ceil(len(self.reader(spec.data.train)) / (spec.data.batch_size * train.grad_accum_steps))
        changes: dict[str, Any] = {}
        for epochs, steps in (("num_epochs", "max_steps"), ("checkpoint_interval", "checkpoint_every"),
                              ("validation_interval", "eval_every")):
            if getattr(train, epochs) is not None:
                changes[steps] = getattr(train, epochs) * per_epoch
        if train.num_epochs is not None:
            changes["optim"] = dataclasses.replace(train.optim, milestones=[m * per_epoch for m in train.optim.milestones])
        return dataclasses.replace(spec, train=dataclasses.replace(train, **changes))

    # ---- model -------------------------------------------------------------------------------------------
    def build_model(self) -> Mask2FormerForUniversalSegmentation:
        model = build_mask2former(self._spec.model, self.labels.names)
        frozen = frozen_prefixes(self._spec.train.freeze, [name for name, _ in model.named_parameters()])
        for name, param in model.named_parameters():
            param.requires_grad_(not name.startswith(frozen))
        if self._spec.train.activation_checkpoint or self._spec.model.backbone.swin.use_checkpoint:
            model.model.pixel_level_module.encoder.gradient_checkpointing_enable()
        return model

    def initial_weights(self, model: Mask2FormerForUniversalSegmentation) -> None:
        """``model.backbone.pretrained_weights``, read only when training starts from scratch."""
        if self._spec.model.backbone.pretrained_weights:
            load_backbone(model, self._spec.model.backbone.pretrained_weights)

    def compile(self, model: nn.Module) -> None:
        model.compile(dynamic=True)

    def fsdp_blocks(self, model: Mask2FormerForUniversalSegmentation) -> list[nn.Module]:
        """FSDP's units (``train.distributed: fsdp``): the Swin blocks (most of a Swin-L's parameters), the pixel
        decoder's encoder layers and the transformer decoder's layers, each run once per step.

        With ``mask_former.dropout`` > 0 the decoder layers stay in the root unit: transformers also uses that value
        as layer drop, drawn per process, and processes that skip different units would wait on each other forever."""
        inner = model.model
        swin = inner.pixel_level_module.encoder.swin.encoder.layers
        decoder = inner.transformer_module.decoder.layers if model.config.dropout == 0 else []
        return [*(block for stage in swin for block in stage.blocks), *inner.pixel_level_module.decoder.encoder.layers,
                *decoder]

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The backbone at ``base_lr × backbone_multiplier``, the rest at ``base_lr``."""
        optim = self._spec.train.optim
        named = list(model.named_parameters())
        backbone = [(n, p) for n, p in named if n.startswith(BACKBONE_PREFIX)]
        rest = [(n, p) for n, p in named if not n.startswith(BACKBONE_PREFIX)]
        return [ParamGroup(name="backbone", params=backbone, lr=optim.base_lr * optim.backbone_multiplier),
                ParamGroup(name="heads", params=rest, lr=optim.base_lr)]

    # ---- data --------------------------------------------------------------------------------------------
    def reader(self, split: Mask2FormerSplitSpec) -> SegmentReader:
        return SegmentReader(segment_split(split, self._spec.data.type))

    def train_dataset(self) -> m2f_dataset.Mask2FormerDataset:
        data = self._spec.data
        reader = self.reader(data.train)
        if data.check_labels:
            self._check_labels({"train": reader, **({"val": self.reader(data.val)} if data.val else {})})
        return m2f_dataset.Mask2FormerDataset(reader, self.labels, self._spec.model.mode, data.augmentation,
                                              data.pixel_mean, data.pixel_std, data.on_error)

    def _check_labels(self, readers: dict[str, SegmentReader]) -> None:
        for split, reader in readers.items():
            print(f"data.{split}: checking the ids of {len(reader)} label files against the label map "
                  f"(data.check_labels)")
            try:
                self.labels.check_split(reader, split)
            except DataError as err:
                if self._spec.data.on_error == "raise":
                    raise
                warnings.warn(f"{err} (skipped: data.on_error is skip)", stacklevel=2)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return m2f_dataset.collate(samples)

    # ---- training ----------------------------------------------------------------------------------------
    def training_step(self, model: Mask2FormerForUniversalSegmentation, batch: dict[str, Any]) -> dict[str, Tensor]:
        out = model(pixel_values=batch["pixel_values"], output_auxiliary_logits=True)
        auxiliary = out.auxiliary_logits if self._spec.model.mask_former.deep_supervision else None
        with model.criterion.per_image_draws(batch["seeds"]):  # the same points in any split of the global batch
            terms = model.get_loss_dict(out.masks_queries_logits, out.class_queries_logits, batch["mask_labels"],
                                        batch["class_labels"], auxiliary)
        return {"loss": sum(terms.values()), "loss_ce": terms["loss_cross_entropy"], "loss_mask": terms["loss_mask"],
                "loss_dice": terms["loss_dice"]}

    def check_data(self) -> list[SegmentCheckReport]:
        """``segfit data check``: every labelled split, through the label map of ``model.mode``."""
        data, mode = self._spec.data, self._spec.model.mode
        reports = []
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            if split is None or not _has_labels(split):
                continue
            reports.append(check_segment_split(
                name, split.type or data.type, lambda split=split: self.reader(split),
                lambda record: (record.source, self.labels.targets(record, mode).labels.tolist()), self.labels.names))
        return reports

    # ---- tasks -------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str, samples_dir: Path | None = None) -> dict[str, float]:
        return self.merge_evaluation([self.evaluate_shard(model, split, Shard(), samples_dir)], split, samples_dir)

    def evaluate_shard(self, model: nn.Module, split: str, shard: Shard, samples_dir: Path | None) -> dict[str, Any]:
        """``shard``'s part of the split's scores (``engine/evaluation.py``)."""
        data = self._spec.data
        chosen = data.val if split == "val" else (data.test if data.test and _has_labels(data.test) else data.val)
        if chosen is None:
            raise ValueError(f"data.{split}: no split to evaluate on; set data.val (or data.test)")
        return evaluate_shard(torch_forward(model), self.reader(chosen), self._spec, self.labels, shard, samples_dir)

    def merge_evaluation(self, states: list[dict[str, Any]], split: str, samples_dir: Path | None) -> dict[str, float]:
        return merge_scores(states, self._spec.model.mode, self.labels)

    def run_inference(self, load_model: Callable[[], nn.Module], out_dir: Path) -> list[Path]:
        return run_inference(load_model, self._spec, self.labels, out_dir)

    def export(self, model: nn.Module, out_dir: Path) -> list[Path]:
        from segfit.models.mask2former.export import export_onnx  # imports the ONNX stack only when exporting

        return export_onnx(model, self._spec, out_dir)


def frozen_prefixes(freeze: list[str], parameter_names: list[str]) -> tuple[str, ...]:
    """Parameter-name prefixes of ``train.freeze`` (TAO module names or prefixes); a name freezing nothing is an error."""
    prefixes: list[str] = []
    for entry in freeze:
        chosen = TAO_MODULES.get(entry, (entry,))
        if not any(name.startswith(chosen) for name in parameter_names):
            tops = sorted({".".join(name.split(".")[:3]) for name in parameter_names})
            raise SpecError(f"train.freeze: {entry!r} names no module of the model; use one of "
                            f"{', '.join(TAO_MODULES)} or a parameter-name prefix such as {', '.join(tops)}")
        prefixes += chosen
    return tuple(prefixes)


def _has_labels(split: Mask2FormerSplitSpec) -> bool:
    return bool(split.annot_file or split.mask_dir or split.panoptic_json or split.instance_json)


def segment_split(split: Mask2FormerSplitSpec, default_type: str) -> SegmentSplit:
    """A TAO split's paths (relative ones under ``root_dir``) as the reader's ``SegmentSplit``."""
    def under_root(path: str) -> str:
        return str(Path(split.root_dir) / path) if path and split.root_dir else path

    kind = split.type or default_type
    annotations = {"coco": split.instance_json or split.annot_file,
                   "coco_panoptic": split.panoptic_json or split.annot_file}.get(kind, split.annot_file)
    masks = split.panoptic_dir if kind == "coco_panoptic" else split.mask_dir
    return SegmentSplit(format=kind, images=under_root(split.img_dir), annotations=under_root(annotations),
                        masks=under_root(masks), root=split.root_dir)


def mask2former_recipe(spec: Mask2FormerSpec) -> Mask2FormerRecipe:
    return Mask2FormerRecipe(spec)
