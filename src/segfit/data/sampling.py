"""Frame samplers: which frames and which objects of a video make one training clip.

The official trainer's ``RandomUniformSampler``: ``num_frames`` consecutive annotated frames from a random start,
played backwards with ``reverse_time_prob``, the clip's first frame showing at least one object, and up to
``max_num_objects`` of the objects it shows. Every draw comes from the sample's seed (the engine's
``(index, seed)`` items), so a resumed run redraws the same clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segfit.data.formats import VideoReader
from segfit.data.records import DataError, VideoRecord


@dataclass(frozen=True)
class Clip:
    """A sampled clip before decoding: frame positions in clip order, and object ids."""

    frames: tuple[int, ...]
    """Positions into the video's ``frame_names``, in the order the clip plays them."""
    objects: tuple[int, ...]
    """Ids of the clip's objects, all visible in its first frame, increasing."""


def choose_clip(reader: VideoReader, index: int, seed: int, num_frames: int = 8, max_num_objects: int = 3,
                reverse_time_prob: float = 0.0) -> Clip:
    """Draw a clip of video ``index``; decodes only the masks of candidate first frames.

    Each window of ``num_frames`` annotated frames is a candidate forwards (weight 1 - ``reverse_time_prob``) and
    backwards (weight ``reverse_time_prob``); candidates are tried in a seeded weighted random order until one
    starts with a visible object. That is the official sampler's outcome (random windows retried up to 1,000
    times) without its retry limit. A video with fewer than ``num_frames`` annotated frames, or no candidate
    starting with a visible object, is a ``DataError`` naming the video.
    """
    if num_frames < 1 or max_num_objects < 1:
        raise ValueError(f"num_frames and max_num_objects must be ≥ 1, got {num_frames}, {max_num_objects}")
    info = reader.info(index)
    annotated = info.annotated
    if len(annotated) < num_frames:
        raise DataError(info.source, f"{len(annotated)} annotated frame(s), fewer than the clip's "
                                     f"num_frames={num_frames}")
    windows = [annotated[start:start + num_frames] for start in range(len(annotated) - num_frames + 1)]
    candidates = [(w, 1 - reverse_time_prob) for w in windows] + [(w[::-1], reverse_time_prob) for w in windows]
    candidates = [(frames, weight) for frames, weight in candidates if weight > 0]
    weights = np.array([weight for _, weight in candidates])
    rng = np.random.default_rng(seed)
    order = rng.choice(len(candidates), len(candidates), replace=False, p=weights / weights.sum())
    for k in order:
        frames = candidates[k][0]
        visible = reader.objects(index, frames[0])
        if visible:
            chosen = rng.choice(visible, min(len(visible), max_num_objects), replace=False)
            return Clip(frames=tuple(frames), objects=tuple(sorted(int(i) for i in chosen)))
    raise DataError(info.source, f"no window of {num_frames} annotated frames starts with a visible object")


def sample_clip(reader: VideoReader, index: int, seed: int, num_frames: int = 8, max_num_objects: int = 3,
                reverse_time_prob: float = 0.0) -> VideoRecord:
    """``choose_clip``, then decode its frames and its objects' masks (an object absent from a frame has an empty
    mask there, as the official ``always_target=True``)."""
    clip = choose_clip(reader, index, seed, num_frames, max_num_objects, reverse_time_prob)
    return reader.load(index, clip.frames, clip.objects)
