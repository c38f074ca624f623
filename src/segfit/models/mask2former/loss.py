"""Mask2Former's loss (transformers' ``Mask2FormerLoss``) made independent of how a global batch is split between
processes, so N processes × batch B train as 1 process × batch N·B.

transformers draws the points it samples masks at from the global generator: the matcher one set per image, the
mask loss one set per matched mask of the whole batch, so the draws of an image depend on the images before it
in its process's batch. Here each image's draws come from its own seed (the sample seed the engine's sampler gives
it, mixed with the number of the draw in the step: one per decoder layer for the matcher and for the mask loss),
inside ``per_image_draws``. Its normalisers are the whole global batch's: the mask count and the class loss's
weight sum go through ``loss_divisor``. Only these pieces are overridden; the rest is transformers' code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import Mask2FormerHungarianMatcher, Mask2FormerLoss

from segfit.engine.distributed import loss_divisor
from segfit.engine.sampler import mix_seed


class ImageDraws:
    """The seeds of a batch's images; each draw (a matcher or mask-loss call) reseeds the generator per image."""

    def __init__(self, seeds: list[int]):
        self.seeds, self.calls = seeds, 0

    def each_image(self, parts: list[tuple[Any, ...]], function: Callable[..., Any]) -> list[Any]:
        """``function(*parts[i])`` for every image ``i``, with the generator of its first argument's device seeded
        from the image's seed and this draw's number; the generators are left as they were."""
        if len(parts) != len(self.seeds):
            raise ValueError(f"{len(parts)} images in the loss, {len(self.seeds)} image seeds in the batch")
        self.calls += 1
        results = []
        for seed, args in zip(self.seeds, parts):
            device = args[0].device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.random.default_generator.manual_seed(mix_seed(seed, self.calls))
                if device.type == "cuda":
                    torch.cuda.manual_seed(mix_seed(seed, self.calls))  # this device's alone
                results.append(function(*args))
        return results


class PerImageMatcher(Mask2FormerHungarianMatcher):
    """transformers' matcher, run image by image under ``draws`` (its own loop is per image already)."""

    draws: ImageDraws | None = None

    def forward(self, masks_queries_logits: Tensor, class_queries_logits: Tensor, mask_labels: list[Tensor],
                class_labels: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        if self.draws is None:
            return super().forward(masks_queries_logits, class_queries_logits, mask_labels, class_labels)
        parts = [(masks_queries_logits[i:i + 1], class_queries_logits[i:i + 1], mask_labels[i:i + 1],
                  class_labels[i:i + 1]) for i in range(len(mask_labels))]
        return [match for image in self.draws.each_image(parts, super().forward) for match in image]


class LayoutFreeLoss(Mask2FormerLoss):
    """``Mask2FormerLoss`` with per-image point draws (within ``per_image_draws``) and global normalisers."""

    def __init__(self, config: Mask2FormerConfig, weight_dict: dict[str, float]):
        super().__init__(config, weight_dict)
        self.matcher = PerImageMatcher(cost_class=config.class_weight, cost_dice=config.dice_weight,
                                       cost_mask=config.mask_weight, num_points=self.num_points)
        self._masks_per_image: list[int] = []

    @contextmanager
    def per_image_draws(self, seeds: list[int]) -> Iterator[None]:
        """Within it, image ``i`` of the loss's batch draws its points from ``seeds[i]`` (a sample seed)."""
        self.matcher.draws = ImageDraws(seeds)
        try:
            yield
        finally:
            self.matcher.draws = None

    def get_num_masks(self, class_labels: list[Tensor], device: torch.device) -> Tensor:
        """The masks of every process's batch over the number of processes (transformers counts its own batch
        unless ``accelerate`` runs it)."""
        return torch.as_tensor(loss_divisor(sum(len(classes) for classes in class_labels), device),
                               dtype=torch.float, device=device)

    def loss_labels(self, class_queries_logits: Tensor, class_labels: list[Tensor],
                    indices: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """The class loss's weighted mean over the global batch's queries: transformers' mean over this batch's
        queries, times this batch's weight sum over ``loss_divisor`` of it (no-object queries weigh
        ``no_object_weight``, matched ones their class's weight)."""
        loss = super().loss_labels(class_queries_logits, class_labels, indices)["loss_cross_entropy"]
        matched = torch.cat([classes[target] for classes, (_, target) in zip(class_labels, indices)])
        unmatched = class_queries_logits.shape[0] * class_queries_logits.shape[1] - len(matched)
        weight = self.empty_weight[matched.to(self.empty_weight.device)].sum() + unmatched * self.empty_weight[-1]
        return {"loss_cross_entropy": loss * weight / loss_divisor(weight, weight.device)}

    def loss_masks(self, masks_queries_logits: Tensor, mask_labels: list[Tensor],
                   indices: list[tuple[Tensor, Tensor]], num_masks: Tensor) -> dict[str, Tensor]:
        self._masks_per_image = [len(source) for source, _ in indices]  # how the batch's matched masks split
        return super().loss_masks(masks_queries_logits, mask_labels, indices, num_masks)

    def sample_points_using_uncertainty(self, logits: Tensor, uncertainty_function: Callable[[Tensor], Tensor],
                                        num_points: int, oversample_ratio: float,
                                        importance_sample_ratio: float) -> Tensor:
        """The points of each image's matched masks drawn image by image (each row's choice is its own)."""
        draws = self.matcher.draws
        sample = super().sample_points_using_uncertainty
        if draws is None:
            return sample(logits, uncertainty_function, num_points, oversample_ratio, importance_sample_ratio)
        parts = [(rows, uncertainty_function, num_points, oversample_ratio, importance_sample_ratio)
                 for rows in logits.split(self._masks_per_image)]
        return torch.cat(draws.each_image(parts, sample))
