"""Image embeddings for the SAM 2 mask decoder, with or without gradients.

``Sam2Model.get_image_embeddings`` always runs under ``torch.no_grad``; fine-tuning the image encoder needs the
same computation with gradients. The result (three levels: the decoder-projected high-resolution features and the
image embedding with ``no_memory_embedding`` added) is exactly what ``get_image_embeddings`` returns, and what
``Sam2Model.forward(image_embeddings=...)`` takes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import Sam2Model


def image_embeddings(model: Sam2Model, pixel_values: Tensor, encoder_grad: bool) -> list[Tensor]:
    with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
        high, mid, low = model.vision_encoder(pixel_values, return_dict=True).fpn_hidden_states
        decoder = model.mask_decoder
        return [decoder.conv_s0(high), decoder.conv_s1(mid), low + model.no_memory_embedding.reshape(1, -1, 1, 1)]
