"""The spec sections every model family shares.

A family extends these dataclasses (``models/<family>/spec.py``) and registers its top-level spec class;
the loader (``spec/load.py``) validates a YAML file plus ``key=value`` overrides against it. Defaults live
here and nowhere else: code reads fields, never ``get(key, default)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal


@dataclass
class ModelSpec:
    name: str = ""
    """Model family; picks the recipe (``sam2``, ``mask2former``, ``siamban``)."""
    checkpoint: str | None = None
    """Weights to start from: a Hugging Face model directory, a ``.safetensors`` file or an official ``.pt``."""


@dataclass
class SplitSpec:
    """One dataset split on disk."""

    format: Literal["labpics", "coco", "sa1b", "davis", "sav"] = "labpics"
    """On-disk layout: ``labpics`` (image folder + PNG index maps), ``coco`` (instance JSON), ``sa1b`` (jpg + JSON of RLEs);
    videos: ``davis`` (DAVIS/MOSE: a folder of frames per video + palette PNG masks or one folder per object), ``sav``
    (SA-V: a folder of frames per video + ``<video>_manual.json`` masklets)."""
    images: str = ""
    """Folder of images; davis, sav: folder of frame folders, one per video (``JPEGImages``)."""
    annotations: str = ""
    """labpics: folder of PNG instance maps (same stem as the image); coco: the JSON file; sa1b: folder of per-image JSON
    (empty = ``images``); davis: folder of mask folders, one per video (``Annotations``); sav: folder of
    ``<video>_manual.json`` files (empty = ``images``)."""
    file_list_txt: str | None = None
    """Optional text file with one image stem (davis, sav: video name) per line: only those are used."""
    map_channels: list[Literal["blue", "green", "red"]] | None = None
    """labpics: colour planes of the map to combine into one instance map, named so PIL/OpenCV order cannot swap
    them (the LabPics recipe uses ``[blue, red]``: materials in blue, vessels in red). ``null`` reads a one-channel map."""
    ann_every: int = 4
    """sav: masklet entry k is frame number k × ann_every (SA-V: 24 fps frames, masks at 6 fps, so 4)."""

    def __post_init__(self) -> None:
        if self.ann_every < 1:
            raise ValueError(f"ann_every: must be at least 1, got {self.ann_every}")


@dataclass
class MixSpec(SplitSpec):
    """One dataset of a training mix (``data.train_mix``): a split plus how it enters the batches."""

    name: str = ""
    """Label of its sample counts in the log (``samples/<name>``); empty: ``train<i>`` by position."""
    batch_size: int | None = None
    """Samples per batch (per process) when a batch comes from this dataset; empty: ``data.batch_size``. Each batch
    comes from one dataset, so image and video datasets can differ here."""
    repeat_factor: float = 1.0
    """Times each sample is seen per epoch on average (2.5: twice, and a third time with probability 0.5)."""
    num_frames: int | None = None
    """Video training: frames per clip from this dataset; empty: ``data.video.num_frames`` for videos, 1 for an image
    format (images train as one-frame clips, as the official trainer mixes SA-1B in)."""
    max_num_objects: int | None = None
    """Objects per sample from this dataset; empty: ``data.video.max_num_objects`` for videos, else
    ``data.max_num_objects``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repeat_factor <= 0:
            raise ValueError(f"repeat_factor: must be above 0, got {self.repeat_factor}")
        for name in ("batch_size", "num_frames", "max_num_objects"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")


@dataclass
class AugmentSpec:
    hflip: float = 0.5
    """Probability of a horizontal flip (image, masks and ignore region together)."""
    color_jitter: float = 0.1
    """Brightness jitter strength (official trainer: 0.1); contrast and saturation use half of it. 0 disables."""


@dataclass
class VideoAugmentSpec:
    """Clip augmentation: every random draw is made once per clip and applied to all its frames (``consistent`` in
    the official trainer), except ``frame_color_jitter``. Defaults: ``sam2.1_hiera_b+_MOSE_finetune.yaml``."""

    hflip: float = 0.5
    """Probability of a horizontal flip of the clip."""
    degrees: float = 25.0
    """Affine: rotation drawn from [-degrees, degrees] (official 25)."""
    shear: float = 20.0
    """Affine: horizontal shear in degrees drawn from [-shear, shear] (official 20)."""
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Affine: zoom factor drawn from [min, max] (official: no zoom, [1, 1]). The affine is skipped for a clip when
    it would push an object out of the clip's first frame (as the official trainer does)."""
    resize: list[int] = field(default_factory=list)
    """Sizes, one drawn per clip: square side (``resize_square``) or short side. Empty keeps the size; the SAM 2
    recipe stretches frames to ``model.image_size``, which is the official ``RandomResizeAPI(sizes=1024, square)``."""
    resize_square: bool = True
    """Resize to size × size (official), else the short side to the size keeping the aspect ratio."""
    color_jitter: list[float] = field(default_factory=lambda: [0.1, 0.03, 0.03])
    """Brightness, contrast and saturation strengths s, one factor from [1 - s, 1 + s] each per clip (official 0.1,
    0.03, 0.03)."""
    grayscale: float = 0.05
    """Probability that the whole clip turns grey (official 0.05)."""
    frame_color_jitter: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.05])
    """As ``color_jitter``, drawn anew for every frame, after the grayscale step (official 0.1, 0.05, 0.05)."""
    backend: Literal["fast", "reference"] = "fast"
    """Pixel kernels of the frames. ``fast``: OpenCV on uint8 (affine, resize to the model size, colour jitter),
    the same draws and geometry as ``reference`` with pixels within about a grey level of it, and a clip loads
    1.8× as fast as with ``reference`` (3.4–3.6× the official pipeline). ``reference``: torchvision's PIL kernels
    (those of the official pipeline) and the float resize of inference preprocessing, for pixel-exact comparisons.
    Masks are the same under both (docs/video.md, "Clip loading")."""

    def __post_init__(self) -> None:
        for name in ("hflip", "grayscale"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: a probability in [0, 1], got {getattr(self, name)}")
        for name in ("degrees", "shear"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be ≥ 0, got {getattr(self, name)}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale: [min, max] with 0 < min ≤ max, got {self.scale}")
        if any(size < 1 for size in self.resize):
            raise ValueError(f"resize: sizes must be ≥ 1, got {self.resize}")
        for name in ("color_jitter", "frame_color_jitter"):
            strengths = getattr(self, name)
            if len(strengths) != 3 or not all(0 <= s <= 1 for s in strengths):
                raise ValueError(f"{name}: [brightness, contrast, saturation], each in [0, 1], got {strengths}")


@dataclass
class VideoSpec:
    """How training clips are drawn from videos (SAM 2 video training); image training does not read it."""

    num_frames: int = 8
    """Frames per clip: consecutive *annotated* frames of a video (official 8). Use 1 for images mixed into video
    training; a video with fewer annotated frames cannot give a clip."""
    max_num_objects: int = 3
    """Objects per clip: a random subset of those visible in the clip's first frame (official 3)."""
    reverse_time_prob: float = 0.0
    """Probability that a clip is played backwards. The shipped official fine-tune config leaves it at 0; the SAM 2
    paper trained with 0.5."""
    augment: VideoAugmentSpec = field(default_factory=VideoAugmentSpec)

    def __post_init__(self) -> None:
        for name in ("num_frames", "max_num_objects"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.reverse_time_prob <= 1:
            raise ValueError(f"reverse_time_prob: a probability in [0, 1], got {self.reverse_time_prob}")


@dataclass
class DataSpec:
    train: SplitSpec = field(default_factory=SplitSpec)
    val: SplitSpec | None = None
    """Validation split, evaluated every ``train.eval_every`` steps; drives the ``best`` checkpoint."""
    test: SplitSpec | None = None
    """Split used by ``segfit evaluate`` when given (else ``val``)."""
    batch_size: int = 2
    """Images per batch (per process)."""
    max_num_objects: int = 8
    """Objects per image; a random subset is taken when an image has more (official trainer: 3 per clip)."""
    num_workers: int | Literal["auto"] = "auto"
    """DataLoader worker processes; ``auto``: the cores of this machine less one per training process (1 to 8)."""
    on_error: Literal["raise", "skip"] = "raise"
    """A bad sample (corrupt image, wrong mask size, bad JSON): stop with an error naming the file, or skip it and count."""
    min_object_area: int = 1
    """Objects with fewer pixels than this (at the original size) are dropped."""
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    video: VideoSpec = field(default_factory=VideoSpec)
    """Clip sampling and augmentation for video training (docs/data-formats.md, "Videos")."""
    train_mix: list[MixSpec] = field(default_factory=list)
    """Several training datasets at once (images and videos), each with its own batch size and repeat factor, instead
    of ``data.train``; each batch comes from one of them, drawn in proportion to the batches each has left in the
    epoch (docs/video.md, "Mixed training")."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_num_objects", "min_object_area"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.train_mix and self.train.images:
            raise ValueError("train_mix: give data.train or data.train_mix, not both")

    def training_splits(self) -> list[MixSpec]:
        """The training datasets: ``train_mix``, or ``train`` alone with ``batch_size``; every one named."""
        if not self.train_mix:
            return [MixSpec(**vars(self.train), name="train", batch_size=self.batch_size)]
        return [replace(split, name=split.name or f"train{i}", batch_size=split.batch_size or self.batch_size)
                for i, split in enumerate(self.train_mix)]


@dataclass
class OptimSpec:
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """``adamw``, or ``sgd`` with (non-Nesterov) ``momentum``."""
    base_lr: float = 1e-5
    """Learning rate of every trained parameter not given its own rate by the family."""
    weight_decay: float = 0.1
    """Weight decay; never applied to norms, biases and position embeddings."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """adamw: the moment decay rates."""
    momentum: float = 0.9
    """sgd: momentum."""
    scheduler: Literal["constant", "cosine", "multistep", "log", "poly"] = "cosine"
    """After the warm-up: ``cosine`` to ``min_lr_ratio``, ``log`` (geometric, evenly spaced in log lr) to
    ``min_lr_ratio`` at the last step, ``poly`` ((1 − progress)^power to 0), ``multistep`` or ``constant``."""
    warmup_steps: int = 0
    """Warm-up over this many steps."""
    warmup: Literal["linear", "log"] = "linear"
    """Warm-up ramp: ``linear`` from 0, or ``log`` (geometric) from ``warmup_start_ratio``."""
    warmup_start_ratio: float = 0.2
    """log warm-up: the first step's lr as a fraction of the initial one."""
    min_lr_ratio: float = 0.1
    """cosine, log: final lr as a fraction of the initial one (official SAM 2 trainer: lr → lr/10)."""
    lr_step_every: int = 1
    """The lr changes every this many steps only (an epoch, to hold it through each epoch as pysot does); warm-up
    and schedule lengths then count in these units."""
    milestones: list[int] = field(default_factory=list)
    """multistep: steps at which the lr is multiplied by ``gamma``."""
    gamma: float = 0.1
    power: float = 0.9
    """poly: lr × (1 − progress)^power over the steps after warm-up (Mask2Former's ``WarmupPolyLR``)."""
    grad_clip: float | None = 0.1
    """Max global gradient L2 norm (official trainer: 0.1); ``null`` disables clipping."""

    def __post_init__(self) -> None:
        if self.lr_step_every < 1:
            raise ValueError(f"lr_step_every: must be at least 1, got {self.lr_step_every}")
        if not 0 < self.warmup_start_ratio <= 1:
            raise ValueError(f"warmup_start_ratio: must be in (0, 1], got {self.warmup_start_ratio}")
        if self.scheduler == "log" and not 0 < self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: the log schedule needs a value in (0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainSpec:
    max_steps: int = 100
    """Optimizer steps to run."""
    grad_accum_steps: int = 1
    """Batches accumulated per optimizer step."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision: bf16 autocast (CPU and CUDA) or fp16 with a gradient scaler (CUDA only)."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Under ``torchrun`` with several processes: ``ddp`` (every process holds the whole model and optimizer state)
    or ``fsdp`` (each holds 1/N of them, for models whose training state does not fit one device; sharded
    checkpoints). docs/distributed.md."""
    sync_batchnorm: bool = True
    """Under ``torchrun`` with several processes, training BatchNorm layers normalise with the mean and variance of
    every process's batch together (segfit's ``GlobalBatchNorm``, CPUs and GPUs; a collective of 2 × channels + 1
    numbers per layer call and one back), so N processes × batch B train as 1 × N·B; ``false``: each with its own
    batch's (PyTorch's default, and the reference SiamBAN trainer's).
    Frozen (evaluation-mode) BatchNorm layers are unaffected. docs/distributed.md."""
    seed: int = 123
    checkpoint_every: int = 50
    """Steps between checkpoints (one is always written at the end)."""
    eval_every: int = 50
    """Steps between validation runs (needs ``data.val``); 0 disables."""
    phases_per_epoch: int | None = None
    """Also evaluate and checkpoint at the end of every 1/N of a data epoch (the official SAM 2 trainer's phases);
    empty: only every ``eval_every`` / ``checkpoint_every`` steps."""
    eval_at_start: bool = False
    """Also validate the starting weights (a step-0 record): the baseline the validation curves start from."""
    log_every: int = 10
    """Steps between records in metrics.jsonl / TensorBoard."""
    best_metric: str = ""
    """Validation metric that selects the ``best`` checkpoint (empty = the family's default)."""
    best_mode: Literal["max", "min"] = "max"
    resume: bool = True
    """Continue automatically from ``results_dir/checkpoints/last`` when it exists."""
    resume_from: str | None = None
    """A checkpoint directory (``.../checkpoints/last``) to continue from instead, e.g. another run's."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A step whose loss is not finite (NaN, inf): ``stop`` the run with an error naming the step, its loss terms and
    its batch's files (no checkpoint is written after it), or ``skip`` its update with a warning (docs/training.md)."""
    compile: bool = False
    """``torch.compile`` the family's hot path (SAM 2: prompt encoder + mask decoder); the first steps compile."""
    optim: OptimSpec = field(default_factory=OptimSpec)


@dataclass
class EvaluateSpec:
    checkpoint: str | None = None
    """Weights to evaluate; empty = the run's ``best`` (else ``last``) checkpoint, else ``model.checkpoint``."""
    max_images: int | None = None
    """Evaluate at most this many images (quick checks)."""
    num_samples: int = 4
    """Overlay images (ground truth vs prediction) written per evaluation."""


@dataclass
class InferenceSpec:
    checkpoint: str | None = None
    """Weights to run; empty = as for evaluate."""
    input: str = ""
    """An image file or a folder of images."""
    output_dir: str = ""
    """Where results go; empty = ``results_dir/inference``."""


@dataclass
class ExportSpec:
    checkpoint: str | None = None
    """Weights to export; empty = as for evaluate."""
    output_dir: str = ""
    """Where exported files go; empty = ``results_dir/export``."""


@dataclass
class SlurmSpec:
    """The SLURM job of ``segfit train --slurm`` (docs/distributed.md): one training process per GPU."""

    nodes: int = 1
    """Machines of the job."""
    gpus_per_node: int = 1
    """GPUs per machine, one training process each (0: one CPU process per machine)."""
    cpus_per_task: int = 8
    """CPU cores per training process (its data-loader workers use all but one)."""
    partition: str = ""
    """SLURM partition; empty: the cluster's default."""
    account: str = ""
    """Account charged for the job; empty: your default."""
    qos: str = ""
    """Quality of service; empty: the default."""
    timeout: int = 1440
    """Time limit of the job in minutes. A job that reaches it (or is pre-empted) is requeued and resumes from
    ``checkpoints/last``, up to 3 times for time limits."""

    def __post_init__(self) -> None:
        for name, minimum in (("nodes", 1), ("gpus_per_node", 0), ("cpus_per_task", 1), ("timeout", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name}: must be at least {minimum}, got {getattr(self, name)}")


@dataclass
class LauncherSpec:
    """How ``segfit train`` is started when not by hand or by ``torchrun``."""

    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    """Used by ``segfit train --slurm``."""


@dataclass
class Spec:
    """A whole run: what to train, on what, how, and where the results go."""

    ALIASES: ClassVar[dict[str, str]] = {}
    """Other names a family accepts for its keys (e.g. another toolkit's): dotted alias → dotted key. The loader
    moves an aliased value to its key before checking; giving both is an error."""
    IGNORED: ClassVar[dict[str, str]] = {}
    """Keys a family accepts without using them (another toolkit's, so its spec files load): dotted key → why. The
    loader drops them with a warning."""
    results_dir: str = "runs/default"
    """Every output of the run: checkpoints, logs, metrics, plots, samples, exports."""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    launcher: LauncherSpec = field(default_factory=LauncherSpec)


def eval_split(data: Any, split: str) -> Any:
    """The split ``segfit evaluate`` (``test``: ``data.test``, else ``data.val``) or validation (``val``) runs on."""
    chosen = data.val if split == "val" else (data.test or data.val)
    if chosen is None:
        raise ValueError(f"data.{split}: no split to evaluate on; set data.val (or data.test)")
    return chosen
