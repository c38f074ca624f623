"""The SiamBAN spec: the shared sections with tracking data, plus the backbone, targets, losses, the backbone
unfreezing and the tracker's hyper-parameters.

Defaults follow the reference config (``experiments/siamban_r50_l234/config.yaml``; docs/siamban.md). Counts are
in optimizer steps: the reference's 20 epochs of 1 000 000 pairs at batch 28 on one process are 35 714 steps
each, the numbers below; ``configs/siamban_r50_l234.yaml`` spells them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from segfit.spec.schema import EvaluateSpec, ExportSpec, InferenceSpec, ModelSpec, OptimSpec, Spec, TrainSpec
from segfit.spec.tracking import TrackingDataSpec

EPOCH_STEPS = 35714
"""Reference epoch at batch 28 on one process: 1 000 000 pairs / 28."""
Layer = Literal["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]


@dataclass
class SiambanTrackerSpec:
    """Tracking post-processing (reference ``config.py`` defaults; the tuned per-benchmark values are in
    docs/siamban.md)."""

    penalty_k: float = 0.14
    """Penalty on scale and aspect-ratio change: score × exp(−(r_c·s_c − 1) · penalty_k)."""
    window_influence: float = 0.45
    """Weight of the cosine (Hanning) window against the penalised score."""
    lr: float = 0.30
    """Box size smoothing: the new size moves towards the prediction by penalty · score · lr."""


@dataclass
class SiambanModelSpec(ModelSpec):
    name: str = "siamban"
    checkpoint: str | None = None
    """Whole-model weights to start from (a segfit SiamBAN ``.safetensors`` or checkpoint directory)."""
    backbone: Literal["resnet50", "tiny"] = "resnet50"
    """``resnet50`` (torchvision, layers 2–4, layer3/4 dilated) or ``tiny``: one conv per layer, for fast tests."""
    backbone_weights: str | None = None
    """ResNet-50 weights file to start the backbone from when training starts from scratch (torchvision
    ``resnet50-*.pth``; wrapper prefixes are stripped, missing and unused keys reported); resuming, evaluating,
    inferring and exporting do not read it. Nothing is downloaded; null keeps the random initialisation."""
    channels: int = 256
    """Channels of the neck and the heads."""
    tracker: SiambanTrackerSpec = field(default_factory=SiambanTrackerSpec)

    def __post_init__(self) -> None:
        if self.backbone_weights and self.checkpoint:
            raise ValueError(f"backbone_weights and checkpoint: give one (the checkpoint {self.checkpoint} holds the "
                             "backbone too)")


@dataclass
class SiambanOptimSpec(OptimSpec):
    optimizer: Literal["adamw", "sgd"] = "sgd"
    base_lr: float = 0.005
    weight_decay: float = 1e-4
    scheduler: Literal["constant", "cosine", "multistep", "log"] = "log"
    warmup_steps: int = 5 * EPOCH_STEPS
    warmup: Literal["linear", "log"] = "log"
    warmup_start_ratio: float = 0.2
    min_lr_ratio: float = 0.01
    lr_step_every: int = EPOCH_STEPS
    grad_clip: float | None = 10.0


@dataclass
class SiambanTargetSpec:
    pos_num: int = 16
    """Most positive cells per pair."""
    total_num: int = 64
    """Most labelled cells per positive pair (positives + negatives)."""
    neg_num: int = 16
    """Most (negative) cells labelled in a negative pair."""


@dataclass
class SiambanTrainSpec(TrainSpec):
    max_steps: int = 20 * EPOCH_STEPS
    checkpoint_every: int = EPOCH_STEPS
    eval_every: int = EPOCH_STEPS
    seed: int = 123456
    optim: SiambanOptimSpec = field(default_factory=SiambanOptimSpec)
    backbone_layers: list[Layer] = field(default_factory=lambda: ["layer2", "layer3", "layer4"])
    """Backbone layers trained from ``unfreeze_step`` on (the rest of the backbone stays frozen)."""
    unfreeze_step: int = 10 * EPOCH_STEPS
    """Step from which ``backbone_layers`` train; before it the whole backbone is frozen (BatchNorm in eval mode).
    The optimizer holds them from the start without state, so its momentum for the neck and heads is kept."""
    backbone_lr_factor: float = 0.1
    """Learning rate of the backbone layers as a fraction of ``optim.base_lr`` (and of its schedule)."""
    cls_weight: float = 1.0
    loc_weight: float = 1.0
    targets: SiambanTargetSpec = field(default_factory=SiambanTargetSpec)

    def __post_init__(self) -> None:
        if self.unfreeze_step < 0 or self.backbone_lr_factor < 0:
            raise ValueError(f"unfreeze_step: must be ≥ 0 (with backbone_lr_factor ≥ 0), got {self.unfreeze_step}")


@dataclass
class SiambanEvaluateSpec(EvaluateSpec):
    max_images: int | None = None
    """Track at most this many sequences (quick checks)."""
    num_samples: int = 2
    """Sequences whose overlay video (ground truth green, prediction red) is written per evaluation."""


@dataclass
class SiambanInferenceSpec(InferenceSpec):
    input: str = ""
    """A folder of frames (natural order) or a video file."""
    init_box: list[float] = field(default_factory=list)
    """The target in the first frame: [x, y, w, h] in pixels (x, y: top-left corner)."""
    backend: Literal["torch", "onnx"] = "torch"
    """``onnx`` tracks with the two graphs ``segfit export`` writes (``onnx_dir``) in onnxruntime."""
    onnx_dir: str = ""
    """Folder with ``siamban_template.onnx`` and ``siamban_track.onnx``; empty = ``export.output_dir``."""
    video: bool = True
    """Also write an overlay video (``<name>.mp4``) of the boxes."""

    def __post_init__(self) -> None:
        if self.init_box and (len(self.init_box) != 4 or min(self.init_box[2:]) <= 0):
            raise ValueError(f"init_box: [x, y, w, h] with w, h > 0, got {self.init_box}")


@dataclass
class SiambanExportSpec(ExportSpec):
    opset: int = 17
    """ONNX opset of the two graphs."""


@dataclass
class SiambanSpec(Spec):
    model: SiambanModelSpec = field(default_factory=SiambanModelSpec)
    data: TrackingDataSpec = field(default_factory=TrackingDataSpec)
    train: SiambanTrainSpec = field(default_factory=SiambanTrainSpec)
    evaluate: SiambanEvaluateSpec = field(default_factory=SiambanEvaluateSpec)
    inference: SiambanInferenceSpec = field(default_factory=SiambanInferenceSpec)
    export: SiambanExportSpec = field(default_factory=SiambanExportSpec)
