"""The Mask2Former spec: TAO Mask2Former's sections and key names, on segfit's shared sections.

A TAO spec file runs as it is: its keys are this spec's keys, and where TAO names a shared setting differently
(``dataset``, ``train.optim.lr``, ``train.clip_grad_norm``, ``train.pretrained_model_path``) ``ALIASES`` maps it.
Epoch-based TAO keys (``train.num_epochs``, ``checkpoint_interval``, ``validation_interval``) are turned into the
engine's steps by the recipe, once the training split's length is known (``models/mask2former/schedule.py``).
Defaults: TAO's schema where TAO has the key, the Mask2Former paper where a comment says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from segfit.spec.schema import EvaluateSpec, ExportSpec, InferenceSpec, ModelSpec, OptimSpec, Spec, TrainSpec

Mode = Literal["semantic", "instance", "panoptic"]
DatasetType = Literal["ade", "folders", "coco", "coco_panoptic"]

SWIN_SIZES: dict[str, tuple[int, list[int], list[int]]] = {
    "test": (24, [1, 1, 1, 1], [1, 1, 2, 2]),
    "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24]),
    "small": (96, [2, 2, 18, 2], [3, 6, 12, 24]),
    "base": (128, [2, 2, 18, 2], [4, 8, 16, 32]),
    "large": (192, [2, 2, 18, 2], [6, 12, 24, 48]),
}
"""Swin variant → (embed_dim, depths, num_heads), the official shapes; ``test`` is a tiny one for fast tests."""


@dataclass
class SwinSpec:
    type: Literal["test", "tiny", "small", "base", "large"] = "tiny"
    """Swin variant; sets width, depths and heads (official shapes)."""
    window_size: int = 7
    pretrain_img_size: int = 384
    """Image size the backbone was pre-trained at (sizes the absolute position embedding when ``ape``)."""
    drop_path_rate: float = 0.3
    ape: bool = False
    """Absolute position embedding."""
    out_indices: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    """Stages whose features go to the pixel decoder; Mask2Former needs all four."""
    use_checkpoint: bool = False
    """Recompute Swin blocks in the backward pass (less memory, more time); ``train.activation_checkpoint`` too."""

    def __post_init__(self) -> None:
        if self.out_indices != [0, 1, 2, 3]:
            raise ValueError(f"out_indices: the pixel decoder reads all four stages, [0, 1, 2, 3]; got {self.out_indices}")


@dataclass
class BackboneSpec:
    type: Literal["swin"] = "swin"
    pretrained_weights: str | None = None
    """Backbone-only weights (``.pth``/``.pt``/``.safetensors``: official/timm Swin or Hugging Face Swin keys) to
    start from when training starts from scratch; missing and unused keys are reported. Resuming, evaluating,
    inferring and exporting do not read it (checkpoints hold every weight). Not with ``model.checkpoint``."""
    swin: SwinSpec = field(default_factory=SwinSpec)


@dataclass
class SemSegHeadSpec:
    """The pixel decoder (multi-scale deformable-attention encoder) and the number of classes."""

    num_classes: int = 150
    """Classes the model predicts (no-object excluded); must equal the label map's length when one is given."""
    common_stride: int = 4
    transformer_enc_layers: int = 6
    convs_dim: int = 256
    mask_dim: int = 256
    norm: Literal["GN"] = "GN"

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes: must be at least 1, got {self.num_classes}")
        if self.common_stride != 4:
            raise ValueError(f"common_stride: the transformers pixel decoder works at stride 4, got {self.common_stride}")


@dataclass
class MaskFormerSpec:
    """The transformer decoder, the matcher and the loss (TAO / paper defaults)."""

    num_object_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 10
    dropout: float = 0.0
    """Dropout in the decoder layers; transformers also skips each whole decoder layer with this probability in
    training (layer drop)."""
    pre_norm: bool = False
    class_weight: float = 2.0
    mask_weight: float = 5.0
    """Weight of the sigmoid BCE mask loss (and matching cost)."""
    dice_weight: float = 5.0
    """Weight of the dice loss (and matching cost)."""
    train_num_points: int = 12544
    """Points per mask where the mask losses and matching costs are computed."""
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True
    """Losses on every decoder layer's predictions, not only the last."""
    no_object_weight: float = 0.1


@dataclass
class Mask2FormerModelSpec(ModelSpec):
    name: str = "mask2former"
    mode: Mode = "panoptic"
    """What the model predicts, trains on and is scored by: ``semantic`` (mIoU), ``instance`` (mask AP) or
    ``panoptic`` (PQ)."""
    object_mask_threshold: float = 0.8
    """Panoptic: queries whose class score is below this are dropped (paper 0.8; TAO default 0.4)."""
    overlap_threshold: float = 0.8
    """Panoptic: a query's segment is dropped when less than this fraction of its mask stays visible (paper 0.8;
    TAO 0.5)."""
    test_topk_per_image: int = 100
    """Instance: (query, class) pairs kept per image, best scores first."""
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    sem_seg_head: SemSegHeadSpec = field(default_factory=SemSegHeadSpec)
    mask_former: MaskFormerSpec = field(default_factory=MaskFormerSpec)

    def __post_init__(self) -> None:
        if self.backbone.pretrained_weights and self.checkpoint:
            raise ValueError(f"backbone.pretrained_weights and checkpoint: give one (the whole model "
                             f"{self.checkpoint} holds a backbone too)")


@dataclass
class ClassSpec:
    """One class of the label map (TAO ``label_map`` JSON entries have the same keys)."""

    id: int
    """The value in semantic PNGs / the ``category_id`` in COCO JSON."""
    name: str = ""
    isthing: bool = True
    """Countable objects (instances); ``false`` for stuff (sky, road), which panoptic merges per class."""
    color: list[int] = field(default_factory=list)
    """RGB for overlays; empty = a generated colour."""


@dataclass
class Mask2FormerSplitSpec:
    """One split on disk; paths are relative to ``root_dir`` when not absolute."""

    type: DatasetType | None = None
    """Format of this split; null = ``data.type``."""
    name: str = ""
    root_dir: str = ""
    annot_file: str = ""
    """``ade``: the JSONL file of ``{"img": ..., "segm": ...}`` lines; ``coco``: the instance JSON (also
    ``instance_json``)."""
    img_dir: str = ""
    """Folder of images: ``coco``, ``coco_panoptic``, ``folders``; for inference, the images to run on."""
    mask_dir: str = ""
    """``folders``: the class-id PNGs, one per image with the image's stem."""
    panoptic_json: str = ""
    panoptic_dir: str = ""
    """``coco_panoptic``: folder of the RGB segment-id PNGs (id = R + 256 G + 256² B)."""
    instance_json: str = ""
    batch_size: int = 1
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"batch_size: must be ≥ 1 (num_workers ≥ 0), got {self.batch_size} ({self.num_workers})")


@dataclass
class AugmentationSpec:
    """Training: random shortest-edge resize, random crop, flip; evaluation: shortest-edge resize only."""

    train_min_size: list[int] = field(default_factory=lambda: [640])
    """Shortest-edge sizes, one drawn per training image."""
    train_max_size: int = 2560
    """Longest edge after the training resize."""
    train_crop_size: list[int] = field(default_factory=lambda: [640, 640])
    """Random crop [H, W] after the resize (smaller images are padded; padding is ignored)."""
    test_min_size: int = 640
    test_max_size: int = 2560
    hflip: float = 0.5
    """Probability of a horizontal flip (segfit; TAO always 0.5)."""

    def __post_init__(self) -> None:
        if not self.train_min_size or min(self.train_min_size) < 1 or len(self.train_crop_size) != 2:
            raise ValueError(f"train_min_size: sizes ≥ 1 and train_crop_size [H, W], got {self.train_min_size}, "
                             f"{self.train_crop_size}")


@dataclass
class Mask2FormerDataSpec:
    """TAO's ``dataset`` section (``data`` in segfit; both names work)."""

    type: DatasetType = "ade"
    """Format of every split: ``ade`` (JSONL of image / class-id PNG pairs), ``folders`` (``img_dir`` +
    ``mask_dir`` of class-id PNGs), ``coco`` (instance JSON, polygons or RLE), ``coco_panoptic`` (JSON + PNGs).
    Any mode trains on any format that has what it needs: semantic maps come from every format, instances and
    panoptic segments from ``coco`` and ``coco_panoptic``."""
    train: Mask2FormerSplitSpec = field(default_factory=Mask2FormerSplitSpec)
    val: Mask2FormerSplitSpec | None = None
    """Validation split, evaluated every ``validation_interval`` epochs (``eval_every`` steps); drives ``best``."""
    test: Mask2FormerSplitSpec | None = None
    """Split of ``segfit evaluate`` (else ``val``); its ``img_dir`` is what ``segfit inference`` runs on."""
    label_map: str = ""
    """JSON file: a list of ``{"id", "name", "color", "isthing"}`` (TAO); or use ``classes``."""
    classes: list[ClassSpec] = field(default_factory=list)
    """The label map written in the spec (segfit); with neither, classes are ids 1..num_classes (``background:
    ignore``) or 0..num_classes-1 (``background: class``)."""
    background: Literal["ignore", "class"] = "ignore"
    """Semantic PNG value 0: not scored and not trained (TAO ``ade``), or an ordinary class id."""
    ignore_index: int = 255
    """Semantic PNG value that is never scored or trained."""
    contiguous_id: bool = False
    """Outputs name classes 1..N in label-map order instead of their ids (TAO)."""
    pixel_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    augmentation: AugmentationSpec = field(default_factory=AugmentationSpec)
    on_error: Literal["raise", "skip"] = "raise"
    """A bad sample: stop naming the file, or skip it and count (segfit)."""
    check_labels: bool = True
    """Before training, read every label file of train and val (PNG values, JSON category ids) and stop, naming
    the files and values, if any id is outside the label map (with ``on_error: skip``: only warn)."""

    @property
    def batch_size(self) -> int:
        """Training images per batch (the engine's ``data.batch_size``)."""
        return self.train.batch_size

    @property
    def num_workers(self) -> int:
        return self.train.num_workers


@dataclass
class Mask2FormerOptimSpec(OptimSpec):
    base_lr: float = 2e-4
    """Learning rate of everything but the backbone (TAO ``lr``)."""
    weight_decay: float = 0.05
    type: Literal["AdamW", "SGD"] | None = None
    """TAO name of the optimizer; when set, it sets ``optimizer``."""
    backbone_multiplier: float = 0.1
    """Backbone learning rate = base_lr × this."""
    scheduler: Literal["constant", "cosine", "multistep", "poly"] = "multistep"
    lr_scheduler: Literal["MultiStep", "StepLR", "WarmupPoly", "cosine", "constant"] | None = None
    """TAO name of the schedule (``MultiStep``: TAO's default); when set, it sets ``scheduler`` (``StepLR``: multistep
    at every ``step_size``; ``WarmupPoly``: poly)."""
    milestones: list[int] = field(default_factory=lambda: [88, 96])
    """Where the lr is multiplied by ``gamma``: epochs when ``train.num_epochs`` is set, else steps."""
    step_size: int | None = None
    """``StepLR``: the lr is multiplied by ``gamma`` every this many epochs (with ``train.num_epochs``) or steps."""
    grad_clip: float | None = 0.01
    """Max global gradient norm (paper 0.01; TAO ``clip_grad_norm`` 0.1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.type is not None:
            self.optimizer = {"AdamW": "adamw", "SGD": "sgd"}[self.type]
        if self.lr_scheduler is not None:
            self.scheduler = {"MultiStep": "multistep", "StepLR": "multistep", "WarmupPoly": "poly", "cosine": "cosine",
                              "constant": "constant"}[self.lr_scheduler]
        if (self.lr_scheduler == "StepLR") != (self.step_size is not None) or (self.step_size or 1) < 1:
            raise ValueError(f"step_size: a positive step_size goes with lr_scheduler StepLR (and only with it), got "
                             f"{self.step_size} with {self.lr_scheduler}")


@dataclass
class Mask2FormerTrainSpec(TrainSpec):
    seed: int = 1234
    num_epochs: int | None = None
    """Epochs to train; when set, replaces ``max_steps`` (steps per epoch = ⌈images / (batch_size ×
    grad_accum_steps)⌉)."""
    checkpoint_interval: int | None = None
    """Epochs between checkpoints; when set, replaces ``checkpoint_every``."""
    validation_interval: int | None = None
    """Epochs between validations; when set, replaces ``eval_every``."""
    freeze: list[str] = field(default_factory=list)
    """Modules not trained: TAO's names (``backbone``, ``sem_seg_head``, ``sem_seg_head.pixel_decoder``,
    ``sem_seg_head.predictor``) or prefixes of parameter names (``model.pixel_level_module.encoder``)."""
    activation_checkpoint: bool = False
    """Recompute the Swin blocks in the backward pass (less memory)."""
    optim: Mask2FormerOptimSpec = field(default_factory=Mask2FormerOptimSpec)

    def __post_init__(self) -> None:
        for name in ("num_epochs", "checkpoint_interval", "validation_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1, got {value}")
        if self.optim.step_size is not None:  # StepLR as milestones over the run (epochs or steps, as num_epochs)
            horizon = self.num_epochs if self.num_epochs is not None else self.max_steps
            self.optim.milestones = list(range(self.optim.step_size, horizon + 1, self.optim.step_size))


@dataclass
class Mask2FormerInferenceSpec(InferenceSpec):
    input: str = ""
    """An image file or folder; empty = ``data.test.img_dir``."""
    backend: Literal["torch", "onnx"] = "torch"
    onnx_file: str = ""
    """``onnx`` backend: the graph; empty = ``export.onnx_file``'s default."""
    overlays: bool = True
    """Also write colour overlays (``label_map`` colours) next to the machine-readable outputs."""


@dataclass
class Mask2FormerExportSpec(ExportSpec):
    onnx_file: str = ""
    """Where the ONNX graph goes; empty = ``export.output_dir/model.onnx``."""
    input_channel: Literal[3] = 3
    input_width: int = 960
    input_height: int = 544
    opset_version: int = 18
    batch_size: int = -1
    """-1: dynamic batch; else the fixed batch size of the graph."""


@dataclass
class Mask2FormerSpec(Spec):
    ALIASES: ClassVar[dict[str, str]] = {
        "dataset": "data",
        "train.pretrained_model_path": "model.checkpoint",
        "train.clip_grad_norm": "train.optim.grad_clip",
        "train.resume_training_checkpoint_path": "train.resume_from",
        "train.optim.lr": "train.optim.base_lr",
        "data.format": "data.type",
        **{f"data.{split}.{segfit}": f"data.{split}.{tao}" for split in ("train", "val", "test")
           for segfit, tao in (("format", "type"), ("images", "img_dir"), ("masks", "mask_dir"),
                               ("annotations", "annot_file"))},
    }
    IGNORED: ClassVar[dict[str, str]] = {
        **{f"{task}.{key}": "segfit uses the processes torchrun starts" for task in ("train", "evaluate", "inference")
           for key in ("num_gpus", "gpu_ids")},
        "train.num_nodes": "segfit uses the processes torchrun starts",
        "train.distributed_strategy": "segfit averages gradients over the torchrun processes (DDP)",
        **{f"data.{split}.target_size": "segfit evaluates every image at its own size, at full resolution"
           for split in ("train", "val", "test")},
        "export.on_cpu": "the ONNX graph is exported on the CPU, without TensorRT plugins",
        "export.gpu_id": "the ONNX graph is exported on the CPU, without TensorRT plugins",
        "export.verbose": "the export prints its parity check",
    }
    model: Mask2FormerModelSpec = field(default_factory=Mask2FormerModelSpec)
    data: Mask2FormerDataSpec = field(default_factory=Mask2FormerDataSpec)  # type: ignore[assignment]
    train: Mask2FormerTrainSpec = field(default_factory=Mask2FormerTrainSpec)
    inference: Mask2FormerInferenceSpec = field(default_factory=Mask2FormerInferenceSpec)
    export: Mask2FormerExportSpec = field(default_factory=Mask2FormerExportSpec)
