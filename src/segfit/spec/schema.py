"""The spec sections every model family shares.

A family extends these dataclasses (``models/<family>/spec.py``) and registers its top-level spec class;
the loader (``spec/load.py``) validates a YAML file plus ``key=value`` overrides against it. Defaults live
here and nowhere else: code reads fields, never ``get(key, default)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelSpec:
    name: str = ""
    """Model family; picks the recipe (``sam2``; ``mask2former`` and ``siamban`` later)."""
    checkpoint: str | None = None
    """Weights to start from: a Hugging Face model directory, a ``.safetensors`` file or an official ``.pt``."""


@dataclass
class SplitSpec:
    """One dataset split on disk."""

    format: Literal["labpics", "coco", "sa1b"] = "labpics"
    """On-disk layout: ``labpics`` (image folder + PNG index maps), ``coco`` (instance JSON), ``sa1b`` (jpg + JSON of RLEs)."""
    images: str = ""
    """Folder of images."""
    annotations: str = ""
    """labpics: folder of PNG instance maps (same stem as the image); coco: the JSON file; sa1b: folder of per-image JSON (empty = ``images``)."""
    file_list_txt: str | None = None
    """Optional text file with one image stem per line: only those images are used."""
    map_channels: list[Literal["blue", "green", "red"]] | None = None
    """labpics: colour planes of the map to combine into one instance map, named so PIL/OpenCV order cannot swap
    them (the LabPics recipe uses ``[blue, red]``: materials in blue, vessels in red). ``null`` reads a one-channel map."""


@dataclass
class AugmentSpec:
    hflip: float = 0.5
    """Probability of a horizontal flip (image, masks and ignore region together)."""
    color_jitter: float = 0.1
    """Brightness jitter strength (official trainer: 0.1); contrast and saturation use half of it. 0 disables."""


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

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_num_objects", "min_object_area"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")


@dataclass
class OptimSpec:
    base_lr: float = 1e-5
    """Learning rate of every trained parameter not given its own rate by the family."""
    weight_decay: float = 0.1
    """AdamW weight decay; never applied to norms, biases and position embeddings."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: Literal["constant", "cosine", "multistep"] = "cosine"
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many steps."""
    min_lr_ratio: float = 0.1
    """cosine: final lr as a fraction of the initial one (official trainer: lr → lr/10)."""
    milestones: list[int] = field(default_factory=list)
    """multistep: steps at which the lr is multiplied by ``gamma``."""
    gamma: float = 0.1
    grad_clip: float | None = 0.1
    """Max global gradient L2 norm (official trainer: 0.1); ``null`` disables clipping."""


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
    seed: int = 123
    checkpoint_every: int = 50
    """Steps between checkpoints (one is always written at the end)."""
    eval_every: int = 50
    """Steps between validation runs (needs ``data.val``); 0 disables."""
    log_every: int = 10
    """Steps between records in metrics.jsonl / TensorBoard."""
    best_metric: str = ""
    """Validation metric that selects the ``best`` checkpoint (empty = the family's default)."""
    best_mode: Literal["max", "min"] = "max"
    resume: bool = True
    """Continue automatically from ``results_dir/checkpoints/last`` when it exists."""
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
class Spec:
    """A whole run: what to train, on what, how, and where the results go."""

    results_dir: str = "runs/default"
    """Every output of the run: checkpoints, logs, metrics, plots, samples, exports."""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
