"""SiamBAN box tracking: the recipe the engine and the tasks drive.

Flow of a training step: template and search crops of the batch's pairs (``data/pairs.py``: sampled, augmented,
cut straight from the frames) → one forward pass of both through the shared backbone, the neck and the three
box-adaptive heads → classification and IoU losses on the point targets (``targets.py``, ``losses.py``). The
backbone is frozen until ``train.unfreeze_step``, then ``train.backbone_layers`` train at
``backbone_lr_factor`` × the lr (``before_step``). Validation tracks every ``data.val`` sequence from its first
box (``tracker.py``) and scores success, precision and GOT-10k AO (``metrics/tracking.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from segfit.data.check import TrackingCheckReport, check_tracking_splits
from segfit.data.formats.tracking import open_tracking_split
from segfit.engine.checkpoint import load_model_weights
from segfit.engine.evaluation import Shard
from segfit.engine.recipe import ParamGroup
from segfit.metrics.tracking import TrackingMetrics
from segfit.models.siamban.dataset import PairDataset, pair_pool
from segfit.models.siamban.evaluation import finish_evaluation, track_sequences
from segfit.models.siamban.export import export_onnx
from segfit.models.siamban.inference import run_inference
from segfit.models.siamban.losses import siamban_loss
from segfit.models.siamban.model import SiamBAN
from segfit.models.siamban.spec import SiambanSpec
from segfit.models.siamban.tracker import Tracker, torch_functions
from segfit.models.siamban.weights import load_backbone
from segfit.spec.schema import eval_split


class SiambanRecipe:
    default_best_metric = "ao"

    def __init__(self, spec: SiambanSpec):
        self.spec = spec

    # ---- model -------------------------------------------------------------------------------------------
    def build_model(self) -> SiamBAN:
        m = self.spec.model
        model = SiamBAN(m.backbone, m.channels)
        if m.checkpoint:
            load_model_weights(model, Path(m.checkpoint))
        model.set_training_layers(self._training_layers(0))
        return model

    def initial_weights(self, model: SiamBAN) -> None:
        """``model.backbone_weights``, read only when training starts from scratch: checkpoints hold every weight."""
        if self.spec.model.backbone_weights:
            print(load_backbone(model.backbone, self.spec.model.backbone_weights).summary())

    def _training_layers(self, step: int) -> list[str]:
        return list(self.spec.train.backbone_layers) if step >= self.spec.train.unfreeze_step else []

    def before_step(self, model: SiamBAN, step: int) -> bool:
        """Unfreeze ``train.backbone_layers`` at ``train.unfreeze_step`` (also when a resume lands past it)."""
        layers = self._training_layers(step)
        if model.training_layers == frozenset(layers):
            return False
        model.set_training_layers(layers)
        print(f"step {step}: backbone layers {', '.join(layers) or 'none'} train")
        return True

    def compile(self, model: SiamBAN) -> None:
        model.backbone.compile()

    def param_groups(self, model: SiamBAN) -> list[ParamGroup]:
        train = self.spec.train
        backbone = [(f"backbone.{n}", p) for n, p in model.backbone.named_parameters()
                    if n.split(".")[0] in train.backbone_layers]
        rest = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
        return [ParamGroup(name="backbone", params=backbone, lr=train.optim.base_lr * train.backbone_lr_factor,
                           unfrozen_later=True),
                ParamGroup(name="head", params=rest, lr=train.optim.base_lr)]

    # ---- data and training -------------------------------------------------------------------------------
    def train_dataset(self) -> PairDataset:
        return PairDataset(pair_pool(self.spec.data, self.spec.train.seed), self.spec.data, self.spec.train.targets)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Tensor]:
        return default_collate(samples)

    def check_data(self) -> list[TrackingCheckReport]:
        return check_tracking_splits(self.spec.data)

    def training_step(self, model: SiamBAN, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cls, loc = model(batch["template"], batch["search"])
        return siamban_loss(cls, loc, batch["labels"], batch["loc"], self.spec.train.cls_weight,
                            self.spec.train.loc_weight)

    # ---- evaluation and tasks ----------------------------------------------------------------------------
    def tracker(self, model: SiamBAN) -> Tracker:
        data = self.spec.data
        return Tracker(*torch_functions(model), self.spec.model.tracker, data.template_size, data.search_size)

    @torch.no_grad()
    def evaluate(self, model: SiamBAN, split: str, samples_dir: Path | None = None) -> dict[str, float]:
        """One-pass evaluation: each sequence tracked from its first box."""
        return self.merge_evaluation([self.evaluate_shard(model, split, Shard(), samples_dir)], split, samples_dir)

    def evaluate_shard(self, model: SiamBAN, split: str, shard: Shard, samples_dir: Path | None) -> TrackingMetrics:
        """``shard``'s sequences tracked and scored (``engine/evaluation.py``)."""
        sequences = [s for s in open_tracking_split(eval_split(self.spec.data, split)) if len(s.usable)]
        sequences = sequences[:self.spec.evaluate.max_images or len(sequences)]
        if not sequences:
            raise ValueError(f"data.{split}: no sequence with a usable first box")
        mine = [sequences[i] for i in shard.range(len(sequences))]
        return track_sequences(self.tracker(model), mine, samples_dir, self.spec.evaluate.num_samples)

    def merge_evaluation(self, states: list[TrackingMetrics], split: str, samples_dir: Path | None) -> dict[str, float]:
        return finish_evaluation(states, samples_dir)

    def run_inference(self, load_model: Callable[[], SiamBAN], out_dir: Path) -> list[Path]:
        """``load_model`` is called only for the PyTorch backend."""
        return run_inference(load_model, self.spec, out_dir)

    def export(self, model: nn.Module, out_dir: Path) -> list[Path]:
        data = self.spec.data
        return export_onnx(model, out_dir, data.template_size, data.search_size, self.spec.export.opset)


def siamban_recipe(spec: SiambanSpec) -> SiambanRecipe:
    return SiambanRecipe(spec)
