"""The Mask2Former loss draws each image's points from its own seed: a batch's loss terms are the count-weighted
sums of its images' terms taken one by one (what lets 2 processes × 1 image train as 1 process × 2 images)."""

import pytest
import torch
from m2f_tiny import tiny_spec_overrides
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import load_spec

SEEDS = [11, 22]


@pytest.fixture(scope="module")
def outputs(synthetic, tmp_path_factory):
    """The tiny model, its outputs for 2 training images, and their batch."""
    recipe = Mask2FormerRecipe(load_spec(None, tiny_spec_overrides("instance", synthetic("instance"),
                                                                   tmp_path_factory.mktemp("run"))))
    dataset = recipe.train_dataset()
    batch = recipe.collate([dataset[(i, seed)] for i, seed in enumerate(SEEDS)])
    model = recipe.build_model()
    with torch.no_grad():
        out = model(pixel_values=batch["pixel_values"], output_auxiliary_logits=True)
    return model, out, batch


def _terms(model, out, batch, images: slice) -> dict[str, float]:
    auxiliary = [{key: value[images] for key, value in layer.items()} for layer in out.auxiliary_logits]
    with model.criterion.per_image_draws(batch["seeds"][images]):
        terms = model.criterion(out.masks_queries_logits[images], out.class_queries_logits[images],
                                batch["mask_labels"][images], batch["class_labels"][images], auxiliary)
    return {key: float(value) for key, value in terms.items()}


def test_a_batch_draws_the_points_of_its_images_taken_alone(outputs):
    model, out, batch = outputs
    both, first, second = (_terms(model, out, batch, images) for images in (slice(0, 2), slice(0, 1), slice(1, 2)))
    masks = [len(labels) for labels in batch["class_labels"]]
    assert min(masks) >= 1  # each image's mask terms are divided by its own count
    queries = out.class_queries_logits.shape[1]
    eos = model.config.no_object_weight
    weights = [n + (queries - n) * eos for n in masks]  # matched queries weigh 1, the others no_object_weight
    assert len(both) == 3 * model.config.decoder_layers  # 3 terms for the last layer and each auxiliary one
    for key, value in both.items():
        counts = weights if key.startswith("loss_cross_entropy") else masks
        # the same numbers summed in another order and divided by other counts: rounding, ≤ 1e-7 relative seen
        assert value * sum(counts) == pytest.approx(first[key] * counts[0] + second[key] * counts[1], rel=1e-5), key


def test_outside_per_image_draws_it_is_transformers_loss(outputs):
    model, out, batch = outputs
    reference = Mask2FormerLoss(model.config, model.weight_dict)
    args = (out.masks_queries_logits, out.class_queries_logits, batch["mask_labels"], batch["class_labels"])
    torch.manual_seed(5)
    ours = model.criterion(*args)
    torch.manual_seed(5)
    theirs = reference(*args)
    for key, value in theirs.items():
        # the class loss is rescaled by its weight sum over itself (1 in one process): rounding only
        torch.testing.assert_close(ours[key], value, rtol=1e-6, atol=0, msg=key)
