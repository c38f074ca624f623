"""Image features for the SAM 2 mask decoder, split where training needs the split.

``Sam2Model.get_image_embeddings`` runs under ``torch.no_grad`` and folds the decoder's own ``conv_s0``/``conv_s1``
projections into the image path. Fine-tuning needs (a) gradients through the encoder when it is trained, and
(b) gradients into ``conv_s0``/``conv_s1``/``no_memory_embedding`` even when the encoder is frozen. So the path is
cut in two: ``encoder_features`` (the FPN output, the expensive part, cacheable) and ``decoder_embeddings``
(cheap, always differentiable). Together they equal ``get_image_embeddings`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import Sam2Model


def encoder_features(model: Sam2Model, pixel_values: Tensor, grad: bool) -> list[Tensor]:
    """FPN levels (high resolution first), B×C×h×w, before the decoder's projections."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return list(model.vision_encoder(pixel_values, return_dict=True).fpn_hidden_states)


def decoder_embeddings(model: Sam2Model, features: list[Tensor]) -> list[Tensor]:
    """The three embeddings ``Sam2Model.forward(image_embeddings=...)`` takes."""
    high, mid, low = features
    decoder = model.mask_decoder
    return [decoder.conv_s0(high), decoder.conv_s1(mid), low + model.no_memory_embedding.reshape(1, -1, 1, 1)]


def image_embeddings(model: Sam2Model, pixel_values: Tensor, encoder_grad: bool) -> list[Tensor]:
    return decoder_embeddings(model, encoder_features(model, pixel_values, encoder_grad))
