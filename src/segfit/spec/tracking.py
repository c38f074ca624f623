"""Data sections of box-tracker specs (SiamBAN): sequence datasets mixed for pair training, and the crop sizes.

Kept apart from ``schema.py`` because their unit is a sequence (a target through a video), not an image.
Defaults follow the SiamBAN reference config (``experiments/siamban_r50_l234/config.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TrackingFormat = Literal["got10k", "lasot", "pysot"]


@dataclass
class TrackingSplitSpec:
    """One dataset of sequences (docs/siamban.md, "Data")."""

    name: str = ""
    """Training datasets: label of its pair counts in the log (``samples/<name>``); empty: ``train<i>`` by position."""
    format: TrackingFormat = "got10k"
    """``got10k``: one folder per sequence (frames + ``groundtruth.txt``, optional ``absence.label`` /
    ``cover.label``); ``lasot``: ``<class>/<sequence>/img/`` + ``groundtruth.txt`` (+ ``full_occlusion.txt``,
    ``out_of_view.txt``); ``pysot``: crop511 folder + ``train.json`` (video → track → frame → box)."""
    images: str = ""
    """got10k, lasot: the folder of sequence folders; pysot: the crop511 folder."""
    annotations: str = ""
    """pysot: the ``train.json`` file (others: unused)."""
    file_list_txt: str | None = None
    """Optional text file with one sequence name per line (GOT-10k's ``list.txt``): only those are used."""
    frame_range: int = 100
    """Training pairs: the search frame is at most this many annotated frames from the template frame (reference:
    VID, GOT-10k, LaSOT 100; YouTube-BB 3; DET, COCO 1)."""
    num_use: int = -1
    """Training pairs: videos drawn from this dataset per epoch, in shuffled cycles through its videos (a random
    share in the last); -1 uses each once (reference: 100 000 VID, 200 000 GOT-10k / LaSOT)."""

    def __post_init__(self) -> None:
        if self.frame_range < 0:
            raise ValueError(f"frame_range: must be ≥ 0, got {self.frame_range}")
        if self.num_use == 0 or self.num_use < -1:
            raise ValueError(f"num_use: -1 (every sequence once) or ≥ 1, got {self.num_use}")


@dataclass
class CropAugmentSpec:
    """Augmentation of one crop; order: grey (both crops) → shift/scale → colour → blur → flip."""

    shift: float = 4.0
    """Crop centre moved by up to this many crop pixels per axis (uniform)."""
    scale: float = 0.05
    """Crop side scaled per axis by 1 ± U·scale."""
    blur: float = 0.0
    """Probability of a random cross-shaped motion blur (odd size 5–45)."""
    flip: float = 0.0
    """Probability of a horizontal flip."""
    color: float = 1.0
    """Probability of a colour shift along the reference's fixed RGB principal directions."""

    def __post_init__(self) -> None:
        for name in ("blur", "flip", "color"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: a probability in [0, 1], got {getattr(self, name)}")
        if self.shift < 0 or not 0 <= self.scale < 1:
            raise ValueError(f"shift, scale: shift ≥ 0 and 0 ≤ scale < 1, got {self.shift}, {self.scale}")


@dataclass
class TrackingTrainDataSpec:
    datasets: list[TrackingSplitSpec] = field(default_factory=lambda: [TrackingSplitSpec()])
    """Datasets mixed for training, each with its own ``frame_range`` and ``num_use``."""
    videos_per_epoch: int = 0
    """Pairs per epoch of the sample order; 0 = the sum of the datasets' ``num_use`` (reference 1 000 000)."""
    neg: float = 0.2
    """Probability of a negative pair: the search crop shows a random target of a random dataset."""
    gray: float = 0.0
    """Probability that both crops turn grey (reference VOT config 0.0, OTB config 0.2)."""
    template_augment: CropAugmentSpec = field(default_factory=CropAugmentSpec)
    search_augment: CropAugmentSpec = field(
        default_factory=lambda: CropAugmentSpec(shift=64.0, scale=0.18, blur=0.2, flip=0.0, color=1.0))
    """Search crop (reference: shift 64, scale 0.18, blur 0.2)."""

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets: name at least one training dataset")
        if not 0 <= self.neg <= 1 or not 0 <= self.gray <= 1:
            raise ValueError(f"neg, gray: probabilities in [0, 1], got {self.neg}, {self.gray}")
        if self.videos_per_epoch < 0:
            raise ValueError(f"videos_per_epoch: must be ≥ 0, got {self.videos_per_epoch}")
        names = self.names()
        if len(set(names)) != len(names):
            raise ValueError(f"datasets[].name: {names} must differ (they label the logged pair counts)")

    def names(self) -> list[str]:
        """Each training dataset's label in the log: its ``name``, else ``train<i>``."""
        return [split.name or f"train{i}" for i, split in enumerate(self.datasets)]


@dataclass
class TrackingDataSpec:
    train: TrackingTrainDataSpec = field(default_factory=TrackingTrainDataSpec)
    val: TrackingSplitSpec | None = None
    """Sequences tracked from their first box every ``train.eval_every`` steps (AO picks the ``best`` checkpoint)."""
    test: TrackingSplitSpec | None = None
    """Sequences ``segfit evaluate`` tracks (else ``val``)."""
    batch_size: int = 28
    """Pairs per batch (per process; reference 28)."""
    num_workers: int | Literal["auto"] = "auto"
    """DataLoader worker processes; ``auto``: the cores of this machine less one per training process (1 to 8)."""
    template_size: int = 127
    """Template crop side (reference 127): the context region sqrt((w + p)(h + p)), p = (w + h) / 2."""
    search_size: int = 255
    """Search crop side (reference 255): the template's region × search_size / template_size."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {self.batch_size}")
        # the feature geometry (docs/siamban.md, "Model") puts score cell k at search pixel 31 + 8k only for these
        if (self.template_size + 1) % 32 or self.template_size < 63:
            raise ValueError(f"template_size: 32·k - 1 with k ≥ 2 (63, 95, 127, ...), got {self.template_size}")
        if (self.search_size - 63) % 16 or self.search_size <= self.template_size:
            raise ValueError(f"search_size: 63 + 16·k, larger than template_size (127, 191, 255, ...), got "
                             f"{self.search_size}")
