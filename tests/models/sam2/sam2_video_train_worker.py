"""Run under ``torchrun`` by ``test_sam2_video_data_parallel.py``: ``segfit train`` of a resolved spec file with the
memory attention's dropout off (``without_dropout``), which no spec key turns off."""

import sys

from torch import nn

from segfit.engine.trainer import train
from segfit.registry import recipe_for
from segfit.spec import load_spec


def without_dropout(model: nn.Module) -> nn.Module:
    """``model`` with every dropout at 0: the memory attention's layers (``nn.Dropout``) and its RoPE attention
    (``dropout_p``), 0.1 in the official and ``test`` configs."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_p"):
            module.dropout_p = 0.0
    return model


def train_without_dropout(spec) -> dict:
    recipe = recipe_for(spec)
    build = recipe.build_model
    recipe.build_model = lambda: without_dropout(build())
    return train(recipe, spec)


if __name__ == "__main__":
    train_without_dropout(load_spec(sys.argv[1], []))
