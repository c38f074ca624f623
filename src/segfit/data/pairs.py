"""Template/search pairs for Siamese trackers: which frames make a pair, and the two augmented crops.

Sampling (as the SiamBAN reference): the epoch's videos are every dataset's ``num_use`` picks; a positive pair
takes a random track of the video, a random usable frame of it as template and a usable frame at most
``frame_range`` usable frames away as search; with probability ``neg`` the search frame is instead a random frame of
a random track of a random video of a uniformly drawn dataset (a distractor). Every draw comes from the sample's
seed (the engine's ``(index, seed)`` items), so a resumed run redraws the same pairs.

Crops are cut straight from the frame (no crop511 pass is needed; pysot's crop511 frames work too): the frame is
seen through a canonical 511 × 511 view centred on the target, in which the template region is 127 pixels wide,
and each augmented crop is one affine warp from the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segfit.data.crops import box_center, context_size, crop, map_box
from segfit.data.image_io import read_image
from segfit.data.records import DataError, TrackSequence
from segfit.spec.tracking import CropAugmentSpec, TrackingTrainDataSpec

REFERENCE_TEMPLATE = 127
"""Template side of the canonical view (and of pysot's crop511 files)."""
COLOR_DIRECTIONS = np.array([[-0.55919361, 0.98062831, -0.41940627],
                             [1.72091413, 0.19879334, -1.82968581],
                             [4.64467907, 4.73710203, 4.88324118]], np.float32)
"""The reference's fixed colour-augmentation matrix (RGB rows): a colour shift is this times a standard normal."""


@dataclass(frozen=True)
class PairChoice:
    """A drawn pair before decoding: (dataset, sequence, frame position) of each crop."""

    template: tuple[int, int, int]
    search: tuple[int, int, int]
    negative: bool
    gray: bool


class PairPool:
    """The training datasets' videos (each a list of tracks: sequences of one video) and the epoch's picks of them.

    As the reference: ``num_use`` picks per dataset go through its videos in shuffled cycles (the last cycle a random
    share); a pair takes a random track of the picked video. The picks of all datasets are shuffled together once
    from ``seed``; an epoch's item ``i`` is pick ``i`` (cycling), or a random pick when an epoch holds fewer items
    than there are picks (so each epoch sees another share, as the reference's list reshuffled per epoch).
    """

    def __init__(self, datasets: list[list[TrackSequence]], train: TrackingTrainDataSpec, seed: int = 0):
        self.names = train.names()
        self.sequences = [[s for s in sequences if len(s.usable)] for sequences in datasets]
        self.videos = [_videos(sequences) for sequences in self.sequences]
        """Per dataset, per video: the positions of its tracks in ``sequences``."""
        self.frame_range = [split.frame_range for split in train.datasets]
        rng = np.random.default_rng(seed)
        picks = []
        for d, (videos, split) in enumerate(zip(self.videos, train.datasets)):
            if not videos:
                raise DataError(f"data.train.datasets[{d}] ({self.names[d]}, {split.images})",
                                "no sequence with a usable box")
            use = len(videos) if split.num_use == -1 else split.num_use
            cycles, rest = divmod(use, len(videos))
            chosen = np.concatenate([np.tile(np.arange(len(videos)), cycles), rng.permutation(len(videos))[:rest]])
            picks += [(d, int(v)) for v in chosen]
        self.picks = [picks[i] for i in rng.permutation(len(picks))]
        self.length = train.videos_per_epoch or len(self.picks)

    def __len__(self) -> int:
        return self.length

    def counts(self) -> list[dict[str, int]]:
        """Per dataset: its usable sequences, their videos and its picks per epoch (``segfit train`` prints them)."""
        picked = np.bincount([d for d, _ in self.picks], minlength=len(self.videos))
        return [{"sequences": len(s), "videos": len(v), "picks": int(p)}
                for s, v, p in zip(self.sequences, self.videos, picked)]

    def pick(self, index: int, seed: int) -> tuple[int, int]:
        """The (dataset, video) of the epoch's item ``index`` drawn with ``seed``."""
        if self.length < len(self.picks):
            return self.picks[int(np.random.default_rng([seed, 3]).integers(len(self.picks)))]
        return self.picks[index % len(self.picks)]

    def source_name(self, key: tuple[int, int]) -> str:
        """The name of the dataset item ``(index, seed)`` comes from (the engine counts pairs per dataset by it)."""
        return self.names[self.pick(*key)[0]]

    def choose(self, index: int, seed: int, neg: float, gray: float) -> PairChoice:
        rng = np.random.default_rng(seed)
        d, v = self.pick(index, seed)
        s = self._track(d, v, rng)
        usable = self.sequences[d][s].usable
        t = int(rng.integers(len(usable)))
        window = usable[max(t - self.frame_range[d], 0): t + self.frame_range[d] + 1]
        search = (d, s, int(rng.choice(window)))
        negative = bool(rng.random() < neg)
        if negative:  # a random target of a uniformly drawn dataset: random video, track, frame
            other = int(rng.integers(len(self.videos)))
            sequence = self._track(other, int(rng.integers(len(self.videos[other]))), rng)
            search = (other, sequence, int(rng.choice(self.sequences[other][sequence].usable)))
        return PairChoice(template=(d, s, int(usable[t])), search=search, negative=negative,
                          gray=bool(rng.random() < gray))

    def _track(self, dataset: int, video: int, rng: np.random.Generator) -> int:
        tracks = self.videos[dataset][video]
        return tracks[int(rng.integers(len(tracks)))]

    def sequence(self, key: tuple[int, int, int]) -> TrackSequence:
        return self.sequences[key[0]][key[1]]


def _videos(sequences: list[TrackSequence]) -> list[list[int]]:
    """Positions of the sequences grouped by video, in order of first appearance."""
    videos: dict[str, list[int]] = {}
    for position, sequence in enumerate(sequences):
        videos.setdefault(sequence.video, []).append(position)
    return list(videos.values())


@dataclass
class TargetView:
    """A frame seen through the canonical view of its target: ``scale`` canonical pixels per frame pixel."""

    image: np.ndarray
    center: tuple[float, float]
    """The target's centre in frame pixels (the canonical view's centre)."""
    size: tuple[float, float]
    """The target's width and height in frame pixels."""
    scale: float


def target_view(sequence: TrackSequence, position: int) -> TargetView:
    image = read_image(sequence.frames[position])
    w, h = sequence.boxes[position, 2:]
    if sequence.cropped:  # a crop511 file: the target at its centre, 127/s_z canonical pixels per original pixel
        k = REFERENCE_TEMPLATE / context_size(w, h)
        center = ((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2)
        return TargetView(image, center, (w * k, h * k), 1.0)
    return TargetView(image, box_center(sequence.boxes[position]), (w, h), REFERENCE_TEMPLATE / context_size(w, h))


def augmented_crop(view: TargetView, out: int, side: float, aug: CropAugmentSpec, rng: np.random.Generator,
                   gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """An ``out × out`` float32 RGB crop (0–255) of the canonical window of ``side`` pixels around the target, and
    the target's ``x1, y1, x2, y2`` in it. ``aug.shift`` is in output pixels."""
    image = view.image
    if gray:
        image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    scale = 1 + rng.uniform(-1, 1, 2) * aug.scale
    shift = rng.uniform(-1, 1, 2) * aug.shift * side / out
    size = (side * scale[0] / view.scale, side * scale[1] / view.scale)
    center = (view.center[0] + shift[0] / view.scale, view.center[1] + shift[1] / view.scale)
    patch = crop(image, center, size, out).astype(np.float32)
    w, h = view.size
    box = map_box(np.array([view.center[0] - w / 2, view.center[1] - h / 2, view.center[0] + w / 2,
                            view.center[1] + h / 2]), center, size, out)
    if rng.random() < aug.color:
        patch -= COLOR_DIRECTIONS @ rng.standard_normal(3).astype(np.float32)
    if rng.random() < aug.blur:
        patch = motion_blur(patch, rng)
    if rng.random() < aug.flip:
        patch = np.ascontiguousarray(patch[:, ::-1])
        box = np.array([out - 1 - box[2], box[1], out - 1 - box[0], box[3]])
    return patch, box


def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cross-shaped kernel of odd size 5–45: a random share of the weight on its column, the rest on its row."""
    size = int(rng.choice(np.arange(5, 46, 2)))
    share = rng.random()
    kernel = np.zeros((size, size), np.float32)
    kernel[:, size // 2] += share / size
    kernel[size // 2, :] += (1 - share) / size
    return cv2.filter2D(image, -1, kernel)


def sample_pair(pool: PairPool, index: int, seed: int, train: TrackingTrainDataSpec, template_size: int,
                search_size: int) -> dict[str, object]:
    """The two crops of pair ``index`` and the search crop's target box (``x1, y1, x2, y2``); ``negative`` pairs'
    box is the distractor's. ``train`` gives the negative and grey probabilities and the augmentations."""
    choice = pool.choose(index, seed, train.neg, train.gray)
    rng = np.random.default_rng([seed, 1])
    template, _ = augmented_crop(target_view(pool.sequence(choice.template), choice.template[2]), template_size,
                                 REFERENCE_TEMPLATE, train.template_augment, rng, choice.gray)
    search, box = augmented_crop(target_view(pool.sequence(choice.search), choice.search[2]), search_size,
                                 REFERENCE_TEMPLATE * search_size / template_size, train.search_augment, rng,
                                 choice.gray)
    return {"template": template, "search": search, "box": box, "negative": choice.negative}
