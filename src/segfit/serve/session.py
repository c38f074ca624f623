"""The models behind the page: each answers a prompt with its own ``Sam2Predictor``, from image embeddings it
keeps per image, so only the first click on an image pays for the image encoder."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from transformers import Sam2VideoModel

from segfit.data.records import ImageRecord
from segfit.metrics.masks import mask_iou
from segfit.models.sam2.predict import EncodedImage, Sam2Predictor, predict_object
from segfit.serve.prompts import Prompt, target_object

CACHED_IMAGES = 8
"""Images whose embeddings each model keeps (about 16 MiB each at 1024², fp32); the least recently used go first."""


@dataclass
class ServedModel:
    name: str
    """What the page calls it: ``base`` or ``fine-tuned``."""
    weights: str
    """Where its weights came from, shown on the page."""
    predictor: Sam2Predictor
    video: Sam2VideoModel | None = None
    """The video model the predictor's image model is part of (a video spec), for tracking on the page."""


@dataclass
class Answer:
    """One model's answer to a prompt."""

    model: str
    mask: np.ndarray
    """H×W bool at the original size."""
    score: float
    """The model's predicted IoU."""
    iou: float | None
    """IoU with the ground-truth object the prompt points at, when the image has one."""
    encode_ms: float
    """Time spent encoding the image (0 when its embeddings were cached)."""
    decode_ms: float


class Segmenter:
    """Answers prompts with every served model in turn; one request at a time (the models are not thread-safe)."""

    def __init__(self, models: list[ServedModel], multimask_output: bool, cached_images: int = CACHED_IMAGES):
        if not models:
            raise ValueError("Segmenter: no model to serve")
        self.models = models
        self.multimask_output = multimask_output
        self.cached_images = cached_images
        self._cache: OrderedDict[tuple[str, str], EncodedImage] = OrderedDict()
        self.lock = threading.Lock()
        """Held while a model runs (clicks and video tracking alike)."""

    def segment(self, record: ImageRecord, prompt: Prompt) -> list[Answer]:
        prompt.check_inside(record.size)
        target = target_object(record.masks, prompt)
        gt = None if target is None else torch.from_numpy(record.masks[target])
        with self.lock:
            return [self._answer(model, record, prompt, gt) for model in self.models]

    def _answer(self, model: ServedModel, record: ImageRecord, prompt: Prompt, gt: torch.Tensor | None) -> Answer:
        start = time.perf_counter()
        model.predictor.use(self._encoded(model, prompt.image, record.image))
        encoded = time.perf_counter()
        mask, score = predict_object(model.predictor, prompt.points or None, prompt.labels or None, prompt.box,
                                     self.multimask_output)
        mask = mask.cpu()
        decoded = time.perf_counter()
        iou = None if gt is None else float(mask_iou(mask, gt))
        return Answer(model.name, mask.numpy(), score, iou, (encoded - start) * 1e3, (decoded - encoded) * 1e3)

    def _encoded(self, model: ServedModel, image_id: str, image: np.ndarray) -> EncodedImage:
        key = (model.name, image_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self._cache[key] = model.predictor.encode(image)
        while len(self._cache) > self.cached_images * len(self.models):
            self._cache.popitem(last=False)
        return self._cache[key]
