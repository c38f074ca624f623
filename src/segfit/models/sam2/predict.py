"""Prompted SAM 2 prediction on original-size images: the image is encoded once, then any number of prompts.

Follows the reference ``SAM2ImagePredictor``: prompts given in original pixels are rescaled to the square model
input; a box becomes two extra points (labels 2 and 3) placed before the clicks; full-size masks are upsampled
from the raw low-resolution logits, while the low-resolution logits handed back (to be fed in again as a mask
prompt) are clamped to ±32. Outputs are not gated by the object score, as in the reference image predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from transformers import Sam2Model

from segfit.models.sam2.attention import variable_shape_attention
from segfit.models.sam2.preprocess import boxes_to_model, masks_to_original, points_to_model, preprocess_image

if TYPE_CHECKING:
    from segfit.models.sam2.onnx import OnnxSam2Predictor

LOGIT_CLAMP = 32.0
"""Bound of the low-resolution logits used as a mask prompt (the reference clamps them the same way)."""

BOX_CORNER_LABELS = (2, 3)
"""Prompt-encoder labels of a box's top-left and bottom-right corners."""


@dataclass
class Prediction:
    """Masks for N objects, M per object (3 with multimask output, else 1)."""

    masks: Tensor
    """(N, M, H, W) bool at the original image size (``logits > 0``)."""
    logits: Tensor
    """(N, M, H, W) float32 at the original image size."""
    scores: Tensor
    """(N, M) predicted IoU of each mask."""
    low_res: Tensor
    """(N, M, h, w) low-resolution logits clamped to ±32: pass one per object back as ``mask_input``."""


def best_mask(pred: Prediction) -> Tensor:
    """(N, H, W) bool: each object's highest-scoring mask (the first one on ties)."""
    index = pred.scores.argmax(dim=1)
    return pred.masks[torch.arange(len(index), device=index.device), index]


def predict_low_res(
    model: Sam2Model,
    image_embeddings: list[Tensor],
    points_model_frame: Tensor | None,
    labels: Tensor | None,
    boxes_model_frame: Tensor | None = None,
    mask_input: Tensor | None = None,
    multimask_output: bool = False,
    image_index: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Decode N objects: ``(low_res_logits (N,M,h,w), iou_scores (N,M), object_score_logits (N,1))``.

    ``image_embeddings`` are the three levels of ``Sam2Model.get_image_embeddings`` for B images; ``image_index``
    (N,) says which image each object belongs to (None: all belong to the one image, B = 1).
    Prompts are in the model input frame: points (N,k,2) with labels (N,k) (1 positive, 0 negative, -1 padding),
    boxes (N,4) xyxy, mask_input (N,1,h,w) low-resolution logits (clamped to ±32 here, as the reference does).
    Outputs are float32 and not clamped; gradients flow when the caller enables them.
    """
    batch = image_embeddings[-1].shape[0]
    if image_index is None and batch != 1:
        raise ValueError(f"image_embeddings: a batch of {batch} images needs image_index, the image of each object")
    points, point_labels = merge_box_into_points(points_model_frame, labels, boxes_model_frame)
    if mask_input is not None:
        if mask_input.dim() != 4 or mask_input.shape[1] != 1:
            shape = tuple(mask_input.shape)
            raise ValueError(f"mask_input: expected (N, 1, h, w) low-res logits, one per object, got {shape}")
        mask_input = mask_input.float().clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
    n = num_objects(points, mask_input)
    # The N objects go in the *image* batch dimension, each with its image's embeddings (HF adds a dense mask prompt
    # before repeating the image over the point batch, which is wrong for N > 1 mask prompts). One image's are
    # expanded (a view); several images' are gathered, which copies no more than the decoder's own per-object
    # copies (it adds the dense prompt to the image embedding and repeats the high-resolution features).
    if batch == 1:
        per_object = [level.expand(n, -1, -1, -1) for level in image_embeddings]
    else:
        per_object = [level.index_select(0, image_index) for level in image_embeddings]
    with variable_shape_attention():
        out = model(
            image_embeddings=per_object,
            input_points=None if points is None else points[:, None],
            input_labels=None if point_labels is None else point_labels[:, None],
            input_masks=mask_input,
            multimask_output=multimask_output,
        )
    return out.pred_masks[:, 0].float(), out.iou_scores[:, 0].float(), out.object_score_logits[:, 0].float()


def merge_box_into_points(
    points: Tensor | None, labels: Tensor | None, boxes: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """Boxes (N,4) become two corner points (labels 2, 3) placed before the clicks (N,k,2), as the reference does.

    The prompt encoder then sees exactly the tokens ``Sam2Model`` builds from ``input_boxes``, in one tensor
    whatever the prompt mix (the decoder's attention does not depend on the token order).
    """
    if points is not None:
        if labels is None:
            raise ValueError("labels: required with points (1 positive, 0 negative, -1 padding), one per point")
        if points.dim() != 3 or points.shape[-1] != 2 or labels.shape != points.shape[:2]:
            raise ValueError(
                f"points / labels: expected (N, k, 2) and (N, k), got {tuple(points.shape)} and {tuple(labels.shape)}"
            )
        labels = labels.to(device=points.device, dtype=torch.long)
    if boxes is None:
        return points, labels
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected (N, 4) xyxy, got {tuple(boxes.shape)}")
    corners = boxes.float().reshape(-1, 2, 2)
    corner_labels = torch.tensor(BOX_CORNER_LABELS, device=boxes.device).expand(len(boxes), 2)
    if points is None:
        return corners, corner_labels
    if len(points) != len(boxes):
        raise ValueError(
            f"points / boxes: {len(points)} objects with points but {len(boxes)} boxes; give one of each per object"
        )
    return torch.cat([corners, points.float()], dim=1), torch.cat([corner_labels, labels], dim=1)


def finish_prediction(low: Tensor, scores: Tensor, orig_hw: tuple[int, int], best_only: bool) -> Prediction:
    """Decoder outputs (N,M,h,w) and (N,M) → ``Prediction`` at the original size; ``best_only`` keeps each object's
    highest-scoring mask before upsampling. Shared by every backend, so they finish a prediction the same way."""
    if best_only:
        index = scores.argmax(dim=1, keepdim=True)
        low = low.gather(1, index[:, :, None, None].expand(-1, -1, *low.shape[-2:]))
        scores = scores.gather(1, index)
    logits = masks_to_original(low, orig_hw)
    return Prediction(masks=logits > 0, logits=logits, scores=scores, low_res=low.clamp(-LOGIT_CLAMP, LOGIT_CLAMP))


def num_objects(points: Tensor | None, mask_input: Tensor | None) -> int:
    """How many objects the prompts describe (points, boxes merged into them, or mask inputs), checked to agree."""
    if points is None and mask_input is None:
        raise ValueError("no prompt: give points (with labels), boxes or mask_input")
    if points is not None and mask_input is not None and len(points) != len(mask_input):
        raise ValueError(f"mask_input: {len(mask_input)} masks for {len(points)} prompted objects; give one per object")
    return len(points) if points is not None else len(mask_input)


@dataclass(frozen=True)
class EncodedImage:
    """One image's embeddings (the three levels of ``Sam2Model.get_image_embeddings``) and its original size."""

    embeddings: list[Tensor]
    orig_hw: tuple[int, int]


def predict_object(
    predictor: Sam2Predictor | OnnxSam2Predictor,
    points: list[list[float]] | None,
    labels: list[int] | None,
    box: list[float] | None,
    multimask_output: bool,
) -> tuple[Tensor, float]:
    """One object's (H, W) bool mask and predicted IoU from clicks (xy, labels 1/0; default all positive) and/or a
    box, as ``segfit inference`` and ``segfit serve`` answer a prompt. A single click alone is ambiguous (a part or
    the whole?): with ``multimask_output`` it gets 3 masks and keeps the best-scoring one, as the reference advises."""
    point_tensor = torch.tensor([points], dtype=torch.float32) if points else None
    label_tensor = torch.tensor([labels or [1] * len(points)]) if points else None
    box_tensor = torch.tensor([box], dtype=torch.float32) if box else None
    single_click = point_tensor is not None and point_tensor.shape[1] == 1 and box_tensor is None
    pred = predictor.predict(point_tensor, label_tensor, box_tensor, multimask_output=multimask_output and single_click)
    index = pred.scores[0].argmax()
    return pred.masks[0, index], float(pred.scores[0, index])


class ImageSlot:
    """The image a predictor was given last: its original size, which every prompt and mask is mapped to."""

    _orig_hw: tuple[int, int] | None = None

    @property
    def orig_hw(self) -> tuple[int, int]:
        """(H, W) of the image set last."""
        if self._orig_hw is None:
            raise RuntimeError("no image: call set_image(image) before predicting")
        return self._orig_hw


class Sam2Predictor(ImageSlot):
    """Runs a (fine-tuned) Sam2Model on original-size images: embeddings once per image, then any number of prompts.

    The model is moved to ``device`` and put in eval mode (single-mask output then uses SAM 2's stability
    fallback, as in the reference predictor). ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the model
    under ``torch.autocast``; outputs are float32 either way.
    """

    def __init__(
        self,
        model: Sam2Model,
        image_size: int,
        device: torch.device | str = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ):
        model_size = model.config.prompt_encoder_config.image_size
        if image_size != model_size:
            raise ValueError(f"model.image_size: {image_size} differs from the model's input size {model_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.autocast_dtype = autocast_dtype
        self._embeddings: list[Tensor] | None = None

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def set_image(self, image: np.ndarray) -> None:
        """Encode an H×W×3 uint8 RGB image; its embeddings serve every ``predict`` until the next image."""
        self.use(self.encode(image))

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> EncodedImage:
        """An H×W×3 uint8 RGB image's embeddings, to keep and ``use`` later (``segfit serve`` caches them per image)."""
        pixels = preprocess_image(image, self.image_size)[None].to(self.device)
        with self._autocast():
            embeddings = self.model.get_image_embeddings(pixels)
        return EncodedImage(embeddings, (int(image.shape[0]), int(image.shape[1])))

    def use(self, encoded: EncodedImage) -> None:
        """Predict on an image ``encode`` returned (by this predictor: the embeddings belong to its model)."""
        self._embeddings = encoded.embeddings
        self._orig_hw = encoded.orig_hw

    @torch.no_grad()
    def predict(
        self,
        points: Tensor | None = None,
        labels: Tensor | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = False,
        best_only: bool = False,
    ) -> Prediction:
        """Masks for N objects at once.

        points (N,k,2) xy in original pixels (x = column, y = row) with labels (N,k); boxes (N,4) xyxy in
        original pixels; mask_input (N,1,h,w) from a previous ``Prediction.low_res``. ``best_only`` keeps
        each object's highest-scoring mask before upsampling (M = 1), which saves memory on large images.
        """
        orig_hw = self.orig_hw
        points_model = None if points is None else points_to_model(self._to_device(points), orig_hw, self.image_size)
        labels = None if labels is None else torch.as_tensor(labels, device=self.device)
        boxes_model = None if boxes is None else boxes_to_model(self._to_device(boxes), orig_hw, self.image_size)
        masks_in = None if mask_input is None else self._to_device(mask_input)
        with self._autocast():
            low, scores, _ = predict_low_res(
                self.model, self._embeddings, points_model, labels, boxes_model, masks_in, multimask_output
            )
        return finish_prediction(low, scores, orig_hw, best_only)

    def _to_device(self, values: Tensor | np.ndarray) -> Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)
