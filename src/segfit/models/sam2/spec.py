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

Part = Literal["image_encoder", "prompt_encoder", "mask_decoder", "memory"]


@dataclass
class Sam2LoraSpec:
    """Low-rank adapters (LoRA, through ``peft``) instead of fine-tuning a part's weights (docs/peft.md)."""

    rank: int = 0
    """LoRA rank r of every adapter; 0 disables LoRA."""
    alpha: float = 16.0
    """Adapter outputs are scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the adapters' input while training."""
    targets: list[Literal["image_encoder", "mask_decoder"]] = field(default_factory=lambda: ["image_encoder"])
    """Parts that get adapters: ``image_encoder`` on the qkv and output projections of every Hiera block's attention,
    ``mask_decoder`` on the q/k/v/o projections of its two-way transformer. A part is either adapted or in
    ``model.trainable``, not both. Export merges the adapters into plain weights."""


@dataclass
class Sam2ModelSpec(ModelSpec):
    name: str = "sam2"
    size: Literal["test", "tiny", "small", "base_plus", "large"] = "tiny"
    """Official sizes, plus ``test``: a deliberately tiny variant for fast tests."""
    version: Literal["2.0", "2.1"] = "2.1"
    """SAM 2.0 (July 2024) or 2.1; the image models have the same shapes, only the video parts differ."""
    image_size: int = 1024
    """Square model input; images are stretched to it (as SAM 2 does), outputs mapped back to the original size."""
    trainable: list[Part] = field(default_factory=lambda: ["prompt_encoder", "mask_decoder", "memory"])
    """Parts that are fine-tuned; the rest is frozen. A frozen image encoder runs without gradients (much faster).
    ``memory``: the video model's memory attention, memory encoder and object pointers (video training only)."""
    multimask_output: bool = True
    """Predict 3 masks for single-click prompts and train the best one (as the official trainer)."""
    stability_fallback: bool = True
    """Single-mask prediction (evaluation, inference, export) as Meta's predictor: an unstable mask of token 0 is
    replaced by the best of the three multimask outputs. Turn it off for a model trained from random weights with
    ``multimask_output: false``, whose multimask outputs never trained (README, "The demo")."""
    random_init: Literal["transformers", "reference"] = "transformers"
    """Without ``checkpoint``: random weights drawn as Hugging Face draws them (N(0, 0.02)) or as Meta's reference
    does (PyTorch's defaults), from which a model trained from scratch learns to follow its prompts (README, "The demo")."""
    memory_attention_dropout: float = 0.1
    """Video training: dropout in the memory attention, on its layers' outputs and its attention maps (official
    0.1). Each process draws its own masks, so 0 is what makes N processes × B clips train exactly as 1 × N·B."""
    lora: Sam2LoraSpec = field(default_factory=Sam2LoraSpec)
    activation_checkpointing: bool = False
    """Recompute the image-encoder (Hiera) blocks, and in video training the memory attention, in the backward pass
    instead of keeping their activations: less memory when they train (fully or through LoRA), at the price of a
    second forward pass through them."""

    def __post_init__(self) -> None:
        if self.image_size < 256 or self.image_size % 32:  # the FPN adds stride-32 features upsampled ×2 to stride-16 ones
            raise ValueError(f"image_size: {self.image_size} must be a multiple of 32 and at least 256")
        if not 0 <= self.memory_attention_dropout < 1:
            raise ValueError(f"memory_attention_dropout: {self.memory_attention_dropout} must be in [0, 1)")


@dataclass
class Sam2OptimSpec(OptimSpec):
    base_lr: float = 5.0e-6
    vision_lr: float = 3.0e-6
    """Learning rate of the image encoder (when trained)."""
    layer_decay: float = 0.9
    """Layer-wise lr decay in the image encoder, as the official trainer: of n Hiera blocks, block i (from 0) gets
    vision_lr · layer_decay^(n - i), the patch embedding layer_decay^(n + 1); position embeddings and the neck keep
    vision_lr (official 0.9; 1.0 disables)."""


@dataclass
class Sam2PromptSpec:
    """How training prompts are simulated per object: a first prompt, then correction clicks, each step trained
    (docs/prompts-and-losses.md)."""

    prob_click: float = 0.5
    """Per object, the first prompt is a click with this probability (official single-image default 0.5)..."""
    prob_box: float = 0.5
    """...a noisy box with this one (official 0.5)..."""
    prob_mask: float = 0.0
    """...or the ground-truth mask, fed to the decoder as its mask input (official: 0 for single images; 0.5 for
    video frames). The three must sum to 1."""
    max_points: int = 1
    """A first click prompt has 1..max_points positive clicks, drawn once per image (official 1)."""
    click_at: Literal["random", "center"] = "random"
    """First click drawn uniformly inside the mask (official training), or at its centre: the pixel farthest from
    the boundary (further clicks of a multi-click prompt stay random)."""
    box_noise: float = 0.1
    """Each box side moves by up to this fraction of the box width / height (official 0.1)..."""
    box_noise_max: float = 20.0
    """...and at most this many pixels of the model input (official 20)."""
    num_correction_clicks: int = 7
    """Correction clicks after the first prediction, one per step: each re-predicts with all clicks so far and the
    previous step's low-res logits as mask input, with loss on every step (official 7). 0 trains on first prompts
    only (8× less decoder work)."""
    correction_click: Literal["uniform", "center"] = "uniform"
    """Where a correction click goes: uniform over the error region, positive in a miss and negative in a false
    alarm (official training), or at the centre of the largest error (the evaluation protocol; slower, OpenCV)."""
    prob_click_from_gt: float = 0.1
    """Per object and correction click, the chance it is drawn inside the ground-truth mask instead of the error
    region (official 0.1)."""

    def __post_init__(self) -> None:
        total = self.prob_click + self.prob_box + self.prob_mask
        if abs(total - 1.0) > 1e-6 or min(self.prob_click, self.prob_box, self.prob_mask) < 0:
            raise ValueError(f"prob_click: prob_click + prob_box + prob_mask must be 1 (each ≥ 0), got {total:g}")
        if self.max_points < 1:
            raise ValueError(f"max_points: must be ≥ 1, got {self.max_points}")
        if self.num_correction_clicks < 0:
            raise ValueError(f"num_correction_clicks: must be ≥ 0, got {self.num_correction_clicks}")
        if not 0 <= self.prob_click_from_gt <= 1:
            raise ValueError(f"prob_click_from_gt: must be in [0, 1], got {self.prob_click_from_gt}")
        if self.box_noise < 0 or self.box_noise_max < 0:
            raise ValueError("box_noise, box_noise_max: must be ≥ 0")


@dataclass
class Sam2LossSpec:
    """Loss weights (official 20:1:1:1) and where the mask losses are computed (docs/prompts-and-losses.md)."""

    mask: float = 20.0
    """Weight of the sigmoid focal loss (alpha 0.25, gamma 2)."""
    dice: float = 1.0
    iou: float = 1.0
    """Weight of the L1 loss between predicted and actual IoU."""
    object_score: float = 1.0
    """Weight of the BCE loss on "the object is present"."""
    supervise_all_iou: bool = True
    """IoU loss on all three multimask outputs (official), not only the one trained."""
    resolution: Literal["full", "low", "points"] = "full"
    """Where mask losses are computed: ``full`` (logits upsampled to the model resolution, official), ``low`` (the
    decoder's 1/4-resolution logits against the ground truth summed per low-res pixel: exactly the full loss of the
    logits upsampled by nearest neighbour) or ``points`` (importance-sampled points, as Mask2Former / PointRend)."""
    num_points: int = 12544
    """``points``: points per mask (112², the Mask2Former default)."""
    oversample_ratio: float = 3.0
    """``points``: random candidates per point, among which the most uncertain are kept (Mask2Former 3)."""
    importance_sample_ratio: float = 0.75
    """``points``: fraction of points taken where the prediction is most uncertain; the rest uniform (Mask2Former
    0.75)."""

    def __post_init__(self) -> None:
        if self.num_points < 1 or self.oversample_ratio < 1:
            raise ValueError(f"num_points, oversample_ratio: must be ≥ 1, got {self.num_points}, {self.oversample_ratio}")
        if not 0 <= self.importance_sample_ratio <= 1:
            raise ValueError(f"importance_sample_ratio: must be in [0, 1], got {self.importance_sample_ratio}")


@dataclass
class Sam2CacheSpec:
    """Reuse of a frozen image encoder's outputs across steps (docs/speed.md)."""

    mode: Literal["off", "memory", "disk"] = "memory"
    """Frozen image encoder: compute each image view's embeddings once and reuse them, in RAM (``memory``) or as
    files under ``results_dir/cache`` that resumed and later runs reuse (``disk``). Exact: entries are keyed by the
    view's pixels, the image-path weights, resolution and precision. Colour jitter is turned off (with a message),
    flips stay since each flipped view is cached on its own. Ignored when the encoder trains (or has LoRA)."""
    max_gb: float = 4.0
    """Size bound in GiB (RAM or disk); the least recently used entries go first. A 1024² view takes 16 MiB (fp32)."""


@dataclass
class Sam2VideoTrainSpec:
    """Clip episodes: video training (``data.train.format: davis`` or ``sav``); image training does not read it."""

    prompts: Sam2PromptSpec = field(
        default_factory=lambda: Sam2PromptSpec(prob_click=0.25, prob_box=0.25, prob_mask=0.5))
    """Prompts of the initial conditioning frames, one kind per batch (official video: click 0.25, box 0.25, mask
    0.5), and the correction clicks; ``max_points`` applies to images only (one click per object: at random, or at
    its centre with ``click_at: center``)."""
    num_init_cond_frames: int = 2
    """The first frame plus up to this many − 1 random others are prompted (1 to this many, drawn per batch;
    official 2)."""
    num_frames_to_correct: int = 2
    """Frames that get correction clicks (clicks and boxes only): the initial ones plus random others, up to this
    many (official 2); a corrected frame becomes a conditioning frame."""

    def __post_init__(self) -> None:
        for name in ("num_init_cond_frames", "num_frames_to_correct"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")


@dataclass
class Sam2TrainSpec(TrainSpec):
    optim: Sam2OptimSpec = field(default_factory=Sam2OptimSpec)
    embedding_cache: Sam2CacheSpec = field(default_factory=Sam2CacheSpec)
    prompts: Sam2PromptSpec = field(default_factory=Sam2PromptSpec)
    loss: Sam2LossSpec = field(default_factory=Sam2LossSpec)
    video: Sam2VideoTrainSpec = field(default_factory=Sam2VideoTrainSpec)


@dataclass
class Sam2EvaluateSpec(EvaluateSpec):
    max_clicks: int = 20
    """Clicks per object in the click protocol (first at the point farthest from the boundary, then at the centre
    of the largest error). mIoU is reported after 1, 3 and 5 clicks; NoC@85/90 counts clicks up to this cap (20 in
    the interactive-segmentation literature; lower it for quick checks on a CPU)."""
    object_batch: int = 16
    """Objects of one image predicted together (memory bound)."""


@dataclass
class Sam2AutomaticSpec:
    num_points: int = 30
    """Single-click prompts per image (random, or the size of the grid)."""
    grid: bool = False
    """Use the centres of a ⌈√num_points⌉ × ⌈√num_points⌉ grid of cells (those inside the region), not random points."""
    batch_size: int = 16
    """Points predicted together (memory grows with it and with the image size)."""
    overlap_threshold: float = 0.15
    """A mask joins the map (on its still-free pixels) only if at most this fraction of it overlaps masks already placed."""
    min_score: float = 0.0
    """Masks with a lower predicted IoU are skipped."""
    min_area: int = 0
    """Masks with fewer pixels (inside the region) are skipped."""
    region: str | None = None
    """Optional mask image (or folder of them, same stems as the images): points are sampled only inside it."""
    seed: int = 0
    """Seed of the random points."""

    def __post_init__(self) -> None:
        for name in ("num_points", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.overlap_threshold <= 1.0:
            raise ValueError(f"overlap_threshold: must be in [0, 1], got {self.overlap_threshold}")
        if self.min_area < 0:
            raise ValueError(f"min_area: must be at least 0, got {self.min_area}")


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
    first_masks: str | None = None
    """videos: PNG index map of the first frame (palette or grey; each non-zero value one object) giving the
    objects to track; else ``boxes`` (one object each) or ``points`` (one object) on the first frame."""
    multimask_output: bool = True
    """For a single click (prompted, and each point of ``automatic``), predict 3 masks and keep the best-scoring
    one; false: the single mask, for a model trained with ``model.multimask_output: false``."""
    backend: Literal["torch", "onnx"] = "torch"
    """``onnx`` runs the graphs written by ``segfit export`` (``onnx_dir``) in onnxruntime."""
    onnx_dir: str = ""
    """Folder with the exported ONNX graphs; empty = ``onnx/`` in ``export.output_dir`` (default ``results_dir/export``)."""
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
    formats: list[Literal["hf", "official", "onnx"]] = field(default_factory=lambda: ["hf", "official", "onnx"])
    """``hf``: a directory for ``Sam2Model.from_pretrained``; ``official``: ``{"model": state_dict}`` .pt for
    ``build_sam2``; ``onnx``: image encoder and prompt encoder + mask decoder graphs, each checked in onnxruntime."""


@dataclass
class Sam2Spec(Spec):
    model: Sam2ModelSpec = field(default_factory=Sam2ModelSpec)
    train: Sam2TrainSpec = field(default_factory=Sam2TrainSpec)
    evaluate: Sam2EvaluateSpec = field(default_factory=Sam2EvaluateSpec)
    inference: Sam2InferenceSpec = field(default_factory=Sam2InferenceSpec)
    export: Sam2ExportSpec = field(default_factory=Sam2ExportSpec)
