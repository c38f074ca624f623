"""The SAM 2 spec: the shared sections plus what only SAM 2 has (size, trained parts, prompts, loss weights).

Defaults follow the official trainer (``sam2.1_hiera_b+_MOSE_finetune.yaml``) unless a comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from segfit.spec.schema import (
    EvaluateSpec,
    ExportSpec,
    InferenceSpec,
    ModelSpec,
    OptimSpec,
    Spec,
    TrainSpec,
)

Part = Literal["image_encoder", "prompt_encoder", "mask_decoder"]


@dataclass
class Sam2ModelSpec(ModelSpec):
    name: str = "sam2"
    size: Literal["test", "tiny", "small", "base_plus", "large"] = "tiny"
    """Official sizes, plus ``test``: a deliberately tiny variant for fast tests."""
    version: Literal["2.0", "2.1"] = "2.1"
    """SAM 2.0 (July 2024) or 2.1; the image models have the same shapes, only the video parts differ."""
    image_size: int = 1024
    """Square model input; images are stretched to it (as SAM 2 does), outputs mapped back to the original size."""
    trainable: list[Part] = field(default_factory=lambda: ["prompt_encoder", "mask_decoder"])
    """Parts that are fine-tuned; the rest is frozen. A frozen image encoder runs without gradients (much faster)."""
    multimask_output: bool = True
    """Predict 3 masks for single-click prompts and train the best one (as the official trainer)."""

    def __post_init__(self) -> None:
        if self.image_size < 256 or self.image_size % 32:  # the FPN adds stride-32 features upsampled ×2 to stride-16 ones
            raise ValueError(f"image_size: {self.image_size} must be a multiple of 32 and at least 256")


@dataclass
class Sam2OptimSpec(OptimSpec):
    base_lr: float = 5.0e-6
    vision_lr: float = 3.0e-6
    """Learning rate of the image encoder (when trained)."""


@dataclass
class Sam2PromptSpec:
    max_points: int = 1
    """Each object is prompted with 1..max_points positive clicks sampled inside its mask (same count per image)."""


@dataclass
class Sam2LossSpec:
    mask: float = 20.0
    """Weight of the sigmoid focal loss (alpha 0.25, gamma 2)."""
    dice: float = 1.0
    iou: float = 1.0
    """Weight of the L1 loss between predicted and actual IoU (on all multimask outputs)."""
    object_score: float = 1.0
    """Weight of the BCE loss on "the object is present"."""


@dataclass
class Sam2TrainSpec(TrainSpec):
    optim: Sam2OptimSpec = field(default_factory=Sam2OptimSpec)
    prompts: Sam2PromptSpec = field(default_factory=Sam2PromptSpec)
    loss: Sam2LossSpec = field(default_factory=Sam2LossSpec)


@dataclass
class Sam2EvaluateSpec(EvaluateSpec):
    max_clicks: int = 5
    """Clicks per object in the click protocol (first at the point farthest from the boundary, then at the centre
    of the largest error). mIoU is reported after 1, 3 and 5 clicks, NoC@85/90 capped at this (20 in the literature)."""
    object_batch: int = 16
    """Objects of one image predicted together (memory bound)."""


@dataclass
class Sam2AutomaticSpec:
    num_points: int = 30
    grid: bool = False
    """Use a regular grid of ⌈√num_points⌉² cell centres instead of random points."""
    batch_size: int = 16
    overlap_threshold: float = 0.15
    """A mask joins the map (on its still-free pixels) only if at most this fraction of it overlaps masks already placed."""
    min_score: float = 0.0
    min_area: int = 0
    region: str | None = None
    """Optional mask image (or folder of them, same stems as the images): points are sampled only inside it."""
    seed: int = 0


@dataclass
class Sam2InferenceSpec(InferenceSpec):
    mode: Literal["automatic", "prompted"] = "automatic"
    points: list[list[float]] | None = None
    """prompted: clicks as [[x, y], ...] in original pixels (x = column, y = row), all for one object."""
    labels: list[int] | None = None
    """prompted: 1 (positive) or 0 (negative) per point; default all positive."""
    boxes: list[list[float]] | None = None
    """prompted: [[x0, y0, x1, y1], ...], one object per box."""
    prompts_json: str | None = None
    """prompted: JSON file of prompts per image (see docs/inference.md); overrides points/boxes."""
    multimask_output: bool = True
    """prompted: for a single click, predict 3 masks and keep the best-scoring one."""
    automatic: Sam2AutomaticSpec = field(default_factory=Sam2AutomaticSpec)

    def __post_init__(self) -> None:
        if self.points and any(len(p) != 2 for p in self.points):
            raise ValueError(f"points: each point is [x, y], got {self.points}")
        if self.boxes and any(len(b) != 4 for b in self.boxes):
            raise ValueError(f"boxes: each box is [x0, y0, x1, y1], got {self.boxes}")
        if self.labels is not None and len(self.labels) != len(self.points or []):
            raise ValueError(f"labels: {len(self.labels)} labels for {len(self.points or [])} points")


@dataclass
class Sam2ExportSpec(ExportSpec):
    formats: list[Literal["hf", "official"]] = field(default_factory=lambda: ["hf", "official"])
    """``hf``: a directory for ``Sam2Model.from_pretrained``; ``official``: ``{"model": state_dict}`` .pt for ``build_sam2``."""


@dataclass
class Sam2Spec(Spec):
    model: Sam2ModelSpec = field(default_factory=Sam2ModelSpec)
    train: Sam2TrainSpec = field(default_factory=Sam2TrainSpec)
    evaluate: Sam2EvaluateSpec = field(default_factory=Sam2EvaluateSpec)
    inference: Sam2InferenceSpec = field(default_factory=Sam2InferenceSpec)
    export: Sam2ExportSpec = field(default_factory=Sam2ExportSpec)
