"""SAM 2 with memory on clips of videos: the recipe ``segfit train`` uses when the training data holds videos.

Flow of a training step: clips (T frames × B clips) → image features of every frame, in one encoder call (without
gradients when the encoder is frozen) → the objects of all clips flattened → the clip episode
(``video_episode.py``: prompts on the first frames, tracking with memory, correction clicks) → focal + dice + IoU +
object-score loss on every frame and step. Validation tracks the first frame's objects through every video and
scores J, F and J&F (``metrics/video.py``); inference tracks given objects through a frame folder or video file
(``video_inference.py``). Parameter groups, compilation and export are the image recipe's; the embedding cache does
not apply (memory training reads every frame's features anyway).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from transformers import Sam2VideoModel

from segfit.data.formats import VIDEO_FORMATS, open_video_split
from segfit.engine.evaluation import Shard
from segfit.metrics.video import VideoMetrics
from segfit.models.sam2 import dataset as sam2_dataset
from segfit.models.sam2.build import build_sam2_video, set_memory_attention_dropout
from segfit.models.sam2.peft import encoder_trains
from segfit.models.sam2.recipe import Sam2Recipe, write_rows
from segfit.models.sam2.spec import Sam2Spec
from segfit.spec.schema import DataSpec, MixSpec
from segfit.models.sam2.video import FramePrompts, clip_features
from segfit.models.sam2.video_episode import clip_episode
from segfit.models.sam2.video_inference import mask_prompts, run_video_inference, track_video
from segfit.visualize import overlay, save_png, side_by_side


class Sam2VideoRecipe(Sam2Recipe):
    default_best_metric = "j&f"

    def __init__(self, spec: Sam2Spec):
        self.spec = spec
        self.embedding_cache = None

    def build_model(self) -> Sam2VideoModel:
        m = self.spec.model
        model = build_sam2_video(m.size, m.version, m.image_size, m.checkpoint, m.random_init)
        set_memory_attention_dropout(model, m.memory_attention_dropout)
        return self._prepared(model)

    def _split_dataset(self, split: MixSpec, data: DataSpec) -> Dataset:
        """Clips of ``split``: its own length and object count, or the defaults of its kind (an image split gives
        one-frame clips)."""
        video = split.format in VIDEO_FORMATS
        clips = replace(data.video, num_frames=split.num_frames or (data.video.num_frames if video else 1),
                        max_num_objects=split.max_num_objects
                        or (data.video.max_num_objects if video else data.max_num_objects))
        reader = open_video_split(split, data.min_object_area)
        return sam2_dataset.Sam2ClipDataset(reader, replace(data, video=clips), self.spec.model.image_size)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return sam2_dataset.collate_clips(samples)

    def training_step(self, model: Sam2VideoModel, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One clip episode for the objects of every clip of the batch. One-frame clips (an image dataset of a
        training mix) draw their prompts as image training does (``train.prompts``): a mask prompt on the only frame
        would leave nothing to train."""
        video = self.spec.train.video
        prompts = self.spec.train.prompts if len(batch["frames"]) == 1 else video.prompts
        features = clip_features(model, batch["frames"], encoder_trains(self.spec.model))
        return clip_episode(model, features, batch["masks"], batch["clip_index"], batch["valid"], prompts,
                            self.spec.train.loss, video.num_init_cond_frames, video.num_frames_to_correct)

    # ---- evaluation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_shard(self, model: Sam2VideoModel, split: str, shard: Shard, samples_dir: Path | None) -> dict[str, Any]:
        """Semi-supervised protocol (DAVIS) on ``shard``'s videos: the objects of the first frame are given by their
        masks there and tracked through the video; J and F per object on the annotated frames but the first and
        last, as DAVIS 2017 (merged over shards by ``merge_evaluation``)."""
        spec, device = self.spec, next(model.parameters()).device
        reader = open_video_split(self.eval_split(split), spec.data.min_object_area)
        metrics, skipped = VideoMetrics(), 0
        for i in shard.range(min(len(reader), spec.evaluate.max_images or len(reader))):
            video = reader.load(i)
            given = video.masks[0].reshape(len(video.object_ids), -1).any(axis=1)
            annotated = np.ones(len(video.frames), bool) if video.annotated is None else video.annotated
            if not given.any() or annotated.sum() < 3:  # nothing to track, or no frame left to score
                skipped += 1
                continue
            pred = self._track(model, video.frames, video.masks[0][given], device)
            gt = torch.from_numpy(video.masks[:, given][annotated]).to(device)
            void = None if video.ignore is None else torch.from_numpy(video.ignore[annotated]).to(device)
            metrics.update(pred[torch.from_numpy(annotated).to(device)], gt, void, video=Path(video.source).name)
            if samples_dir is not None and i < spec.evaluate.num_samples:
                self._write_sample(video, pred, given, samples_dir)
        return {"metrics": metrics, "skipped": skipped}

    def merge_evaluation(self, states: list[dict[str, Any]], split: str, samples_dir: Path | None) -> dict[str, float]:
        """J, F and J&F over the objects of every shard, in shard order (one process's video order)."""
        metrics, skipped = VideoMetrics(), sum(state["skipped"] for state in states)
        for state in states:
            metrics.merge(state["metrics"])
        if not metrics.objects:
            raise ValueError(f"data.{split}: no video could be evaluated ({skipped} without first-frame objects or "
                             "with fewer than 3 annotated frames)")
        if samples_dir is not None:
            write_rows(samples_dir / "per_object.csv", metrics.objects)
        return {**metrics.compute(), "num_videos": len({o["object"].rsplit("_", 1)[0] for o in metrics.objects}),
                "skipped_videos": skipped}

    def _track(self, model: Sam2VideoModel, frames: np.ndarray, first_masks: np.ndarray,
               device: torch.device) -> Tensor:
        """(T, N, H, W) bool predictions at the original size for the objects given by ``first_masks``."""
        size = self.spec.model.image_size
        prompts = FramePrompts(masks=mask_prompts(first_masks, size).to(device))
        return track_video(model, frames, prompts, size) > 0

    def run_inference(self, load_model: Callable[[], Sam2VideoModel], out_dir: Path) -> list[Path]:
        return run_video_inference(load_model, self.spec, out_dir)

    def _write_sample(self, video: Any, pred: Tensor, given: np.ndarray, out_dir: Path) -> None:
        """Ground truth | prediction on the middle frame of the video."""
        t = len(video.frames) // 2
        panel = side_by_side(overlay(video.frames[t], video.masks[t][given]), overlay(video.frames[t], pred[t].cpu().numpy()),
                             titles=["ground truth", f"prediction (frame {t}, first-frame masks given)"])
        save_png(out_dir / f"{Path(video.source).name}.png", panel)
