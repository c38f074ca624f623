"""SAM 2 as ONNX graphs checked against PyTorch, and a predictor that runs them in onnxruntime.

``image_encoder.onnx``: ``pixel_values`` (1,3,S,S) → ``feat_s0``, ``feat_s1``, ``image_embed`` (what
``Sam2Model.get_image_embeddings`` returns for one image).

``prompt_decoder.onnx`` (3 masks per object) and ``prompt_decoder_single.onnx`` (1 mask per object): the prompt
encoder + mask decoder for N objects of one image, N and K free:

- inputs: the three embeddings; ``input_points`` (N,K,2) float32 in the model input frame; ``input_labels``
  (N,K) int64 (1 positive, 0 negative, -1 padding, 2 / 3 box corners); ``mask_input`` (N,1,S/4,S/4) low-res
  logits and ``has_mask_input`` (N,) float32 (1 = use this object's mask_input, 0 = no mask prompt, which
  gives the prompt encoder's ``no_mask_embed`` exactly as ``Sam2Model`` does without ``input_masks``);
- outputs: ``pred_masks`` (N,M,S/4,S/4) low-res logits, ``iou_scores`` (N,M), ``object_score_logits`` (N,1).

Single-mask output is HF's eval-mode rule (mask token 0 unless its stability score is low, then the best of
tokens 1-3). HF picks the multimask or single path in Python and returns only the chosen masks, so each
variant is traced from HF's own code as its own graph rather than re-implemented after the fact. As in
``predict_low_res``, the objects go in the image-batch dimension with the one image's embeddings expanded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn
from transformers import Sam2Model

from segfit.export.onnx import Exporter, check_parity, export_graph, open_session
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.predict import (
    LOGIT_CLAMP,
    ImageSlot,
    Prediction,
    finish_prediction,
    merge_box_into_points,
    num_objects,
)
from segfit.models.sam2.preprocess import boxes_to_model, points_to_model, preprocess_image

ENCODER_FILE = "image_encoder.onnx"
DECODER_FILES = {True: "prompt_decoder.onnx", False: "prompt_decoder_single.onnx"}
"""Decoder graph per ``multimask_output``."""
META_FILE = "onnx_meta.json"
EMBEDDING_NAMES = ("feat_s0", "feat_s1", "image_embed")
DECODER_INPUTS = (*EMBEDDING_NAMES, "input_points", "input_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("pred_masks", "iou_scores", "object_score_logits")
PARITY_TOLERANCE = 1e-3

_OBJECTS = {0: "num_objects"}
DECODER_AXES = {
    "input_points": {0: "num_objects", 1: "num_points"},
    "input_labels": {0: "num_objects", 1: "num_points"},
    "mask_input": _OBJECTS,
    "has_mask_input": _OBJECTS,
    **{name: _OBJECTS for name in DECODER_OUTPUTS},
}


class ImageEncoderGraph(nn.Module):
    """pixel_values (1,3,S,S) → the three embedding levels the decoder graph takes."""

    def __init__(self, model: Sam2Model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(image_embeddings(self.model, pixel_values, encoder_grad=False))


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder of ``Sam2Model`` for N objects of one image (inputs as in the module doc)."""

    def __init__(self, model: Sam2Model, multimask_output: bool):
        super().__init__()
        self.model = model
        self.multimask_output = multimask_output

    def forward(
        self,
        feat_s0: Tensor,
        feat_s1: Tensor,
        image_embed: Tensor,
        input_points: Tensor,
        input_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n = input_points.shape[0]
        encoder = self.model.prompt_encoder
        sparse, mask_dense = encoder(
            input_points=input_points[:, None],
            input_labels=input_labels[:, None],
            input_boxes=None,
            input_masks=mask_input.clamp(-LOGIT_CLAMP, LOGIT_CLAMP),
        )
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = torch.where(has_mask_input[:, None, None, None] > 0.5, mask_dense, no_mask)
        masks, iou_scores, _, object_score_logits = self.model.mask_decoder(
            image_embeddings=image_embed.expand(n, -1, -1, -1),
            image_positional_embeddings=self.model.get_image_wide_positional_embeddings().repeat(n, 1, 1, 1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask_output,
            high_resolution_features=[feat_s0.expand(n, -1, -1, -1), feat_s1.expand(n, -1, -1, -1)],
        )
        return masks[:, 0], iou_scores[:, 0], object_score_logits[:, 0]


def export_onnx(model: Sam2Model, image_size: int, out_dir: Path, exporter: Exporter = "legacy") -> list[Path]:
    """Write the encoder and both decoder graphs plus ``onnx_meta.json`` to ``out_dir``; returns the paths.

    Each graph is checked in onnxruntime against PyTorch on inputs unlike the ones it was traced with (other
    numbers of objects and points, negative clicks, a box, padding, mask prompts on some objects); the max abs
    difference per output is printed and stored, and above 1e-3 the export fails with ``ParityError``.
    """
    model_size = model.config.prompt_encoder_config.image_size
    if image_size != model_size:
        raise ValueError(f"model.image_size: {image_size} differs from the model's input size {model_size}")
    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        gen = torch.Generator().manual_seed(0)
        encoder = ImageEncoderGraph(model).eval()  # eval: the exporter restores the wrapper's mode, children included
        encoder_path = export_graph(encoder, [_random_pixels(image_size, gen, device)], out_dir / ENCODER_FILE,
                                    ["pixel_values"], EMBEDDING_NAMES, exporter=exporter)
        pixels = {"pixel_values": _random_pixels(image_size, gen, device).cpu().numpy()}
        graphs = {"image_encoder": _graph_meta(encoder, encoder_path, pixels, ["pixel_values"], EMBEDDING_NAMES)}
        embeddings = [torch.from_numpy(value).to(device) for value in open_session(encoder_path).run(None, pixels)]
        mask_hw = tuple(model.prompt_encoder.mask_input_size)
        trace_prompts = _decoder_prompts(image_size, mask_hw, gen, device, num_objects=2, num_points=2)
        check_inputs = {name: value.cpu().numpy() for name, value in
                        zip(DECODER_INPUTS, [*embeddings, *_parity_prompts(image_size, mask_hw, gen, device).values()])}
        paths = [encoder_path]
        for multimask, file in DECODER_FILES.items():
            decoder = PromptDecoderGraph(model, multimask).eval()
            paths.append(export_graph(decoder, [*embeddings, *trace_prompts.values()], out_dir / file, DECODER_INPUTS,
                                      DECODER_OUTPUTS, DECODER_AXES, exporter=exporter))
            graphs[Path(file).stem] = {
                **_graph_meta(decoder, paths[-1], check_inputs, DECODER_INPUTS, DECODER_OUTPUTS),
                "multimask_output": multimask,
            }
    finally:
        model.train(was_training)
    meta = {"image_size": image_size, "mask_input_size": list(mask_hw), "exporter": exporter,
            "opset": _opset(encoder_path), "graphs": graphs}
    meta_path = out_dir / META_FILE
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return [*paths, meta_path]


def read_meta(onnx_dir: Path) -> dict:
    """``onnx_meta.json`` of an export folder, with the keys the predictor needs checked."""
    path = Path(onnx_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; write the ONNX graphs with `segfit export` (export.formats with onnx)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); export the ONNX graphs again") from err
    for key in ("image_size", "mask_input_size"):
        if key not in meta:
            raise ValueError(f"{path}: key {key!r} is missing; export the ONNX graphs again")
    return meta


class OnnxSam2Predictor(ImageSlot):
    """``Sam2Predictor`` on the graphs of ``export_onnx``, in onnxruntime: same calls, same ``Prediction``.

    Pre- and post-processing are the PyTorch predictor's own functions; only the networks run in onnxruntime
    (on CUDA when onnxruntime has it, else the CPU, unless ``providers`` says otherwise). ``image_size``, when
    given, must be the one the graphs were exported at.
    """

    def __init__(self, onnx_dir: str | Path, image_size: int | None = None, providers: list[str] | None = None):
        onnx_dir = Path(onnx_dir)
        meta = read_meta(onnx_dir)
        if image_size is not None and image_size != meta["image_size"]:
            raise ValueError(
                f"model.image_size: {image_size} differs from image_size {meta['image_size']} of the ONNX graphs in "
                f"{onnx_dir / META_FILE}; export again at this size or set model.image_size={meta['image_size']}"
            )
        self.image_size: int = meta["image_size"]
        self.mask_input_size = tuple(meta["mask_input_size"])
        self.encoder = open_session(onnx_dir / ENCODER_FILE, providers)
        self.decoders = {multimask: open_session(onnx_dir / file, providers) for multimask, file in DECODER_FILES.items()}
        self._embeddings: dict[str, np.ndarray] | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Encode an H×W×3 uint8 RGB image; its embeddings serve every ``predict`` until the next image."""
        pixels = preprocess_image(image, self.image_size)[None].numpy()
        self._embeddings = dict(zip(EMBEDDING_NAMES, self.encoder.run(list(EMBEDDING_NAMES), {"pixel_values": pixels})))
        self._orig_hw = (int(image.shape[0]), int(image.shape[1]))

    def predict(
        self,
        points: Tensor | np.ndarray | None = None,
        labels: Tensor | np.ndarray | None = None,
        boxes: Tensor | np.ndarray | None = None,
        mask_input: Tensor | np.ndarray | None = None,
        multimask_output: bool = False,
        best_only: bool = False,
    ) -> Prediction:
        """Masks for N objects at once; arguments and result as ``Sam2Predictor.predict`` (CPU tensors)."""
        orig_hw = self.orig_hw
        points_model = None if points is None else points_to_model(_float(points), orig_hw, self.image_size)
        labels = None if labels is None else torch.as_tensor(labels)
        boxes_model = None if boxes is None else boxes_to_model(_float(boxes), orig_hw, self.image_size)
        points_model, labels = merge_box_into_points(points_model, labels, boxes_model)
        masks_in = None if mask_input is None else _float(mask_input)
        n = num_objects(points_model, masks_in)
        if masks_in is not None and tuple(masks_in.shape) != (n, 1, *self.mask_input_size):
            raise ValueError(f"mask_input: expected ({n}, 1, {self.mask_input_size[0]}, {self.mask_input_size[1]}) "
                             f"low-res logits (a previous Prediction.low_res), got {tuple(masks_in.shape)}")
        if points_model is None:  # a mask prompt alone: one "not a point", as Sam2Model pads it
            points_model, labels = torch.zeros(n, 1, 2), torch.full((n, 1), -1)
        low, scores, _ = self.decoders[multimask_output].run(None, {
            **self._embeddings,
            "input_points": points_model.numpy(),
            "input_labels": labels.long().numpy(),
            "mask_input": np.zeros((n, 1, *self.mask_input_size), np.float32) if masks_in is None else masks_in.numpy(),
            "has_mask_input": np.full(n, float(masks_in is not None), np.float32),
        })
        return finish_prediction(torch.from_numpy(low), torch.from_numpy(scores), orig_hw, best_only)


def _float(values: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device="cpu")


def _graph_meta(module: nn.Module, path: Path, inputs: dict[str, np.ndarray], input_names: Sequence[str],
                output_names: Sequence[str]) -> dict:
    """Checks one graph against PyTorch, prints the differences, and returns its entry of ``onnx_meta.json``."""
    diffs = check_parity(module, open_session(path), inputs, path.stem, PARITY_TOLERANCE)
    print(f"onnx parity {path.name}: " + ", ".join(f"{name} {diff:.2e}" for name, diff in diffs.items())
          + f" (max abs diff vs PyTorch; tolerance {PARITY_TOLERANCE:g})")
    return {"file": path.name, "inputs": list(input_names), "outputs": list(output_names), "max_abs_diff": diffs}


def _random_pixels(image_size: int, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(1, 3, image_size, image_size, generator=gen).to(device)


def _decoder_prompts(image_size: int, mask_hw: tuple[int, int], gen: torch.Generator, device: torch.device,
                     num_objects: int, num_points: int) -> dict[str, Tensor]:
    """Positive clicks, no mask prompt: the shapes the decoder graphs are traced with."""
    prompts = {
        "input_points": torch.rand(num_objects, num_points, 2, generator=gen) * image_size,
        "input_labels": torch.ones(num_objects, num_points, dtype=torch.long),
        "mask_input": torch.zeros(num_objects, 1, *mask_hw),
        "has_mask_input": torch.zeros(num_objects),
    }
    return {name: value.to(device) for name, value in prompts.items()}


def _parity_prompts(image_size: int, mask_hw: tuple[int, int], gen: torch.Generator,
                    device: torch.device) -> dict[str, Tensor]:
    """3 objects × 4 points, unlike the trace: a box + positive + negative click, clicks with padding, and
    a box + click; mask prompts on objects 1 and 3 only."""
    prompts = _decoder_prompts(image_size, mask_hw, gen, device, num_objects=3, num_points=4)
    corners = prompts["input_points"][[0, 2], :2].sort(dim=1).values  # top-left before bottom-right
    prompts["input_points"][[0, 2], :2] = corners
    prompts["input_labels"] = torch.tensor([[2, 3, 1, 0], [1, 0, 0, -1], [2, 3, 1, -1]], device=device)
    prompts["mask_input"] = 8 * torch.randn(prompts["mask_input"].shape, generator=gen).to(device)
    prompts["has_mask_input"] = torch.tensor([1.0, 0.0, 1.0], device=device)
    return prompts


def _opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
