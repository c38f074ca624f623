"""Pieces every task shares: the recipe for a spec, and a model with the right weights on the right device."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from segfit.engine.checkpoint import find_checkpoint, is_sharded_checkpoint, load_model_weights, trainer_weights
from segfit.engine.distributed import resolve_device
from segfit.registry import recipe_for


def weights_for(spec: Any, explicit: str | None) -> str | None:
    """An explicit checkpoint, else the run's ``best`` (or ``last``) one, else ``model.checkpoint``."""
    if explicit:
        path = Path(explicit)
        _check_consolidated(path)
        return str(path / "model.safetensors" if (path / "model.safetensors").is_file() and not (path / "config.json").is_file() else path)
    found = find_checkpoint(Path(spec.results_dir), "best")
    if found:
        _check_consolidated(found)
    return str(found / "model.safetensors") if found else spec.model.checkpoint


def _check_consolidated(checkpoint: Path) -> None:
    if is_sharded_checkpoint(checkpoint) and not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(f"{checkpoint}: the checkpoint of an FSDP run holds sharded weights; "
                                f"`segfit consolidate {checkpoint}` writes the model.safetensors this task reads")


def recipe_with_model(spec: Any, explicit_checkpoint: str | None) -> tuple[Any, torch.nn.Module]:
    """The family's recipe and its model loaded with the task's weights (see ``recipe_with_model_loader``)."""
    recipe, load_model = recipe_with_model_loader(spec, explicit_checkpoint)
    return recipe, load_model()


def recipe_with_model_loader(spec: Any, explicit_checkpoint: str | None) -> tuple[Any, Callable[[], torch.nn.Module]]:
    """The family's recipe, and a function loading its model with the task's weights, in eval mode on ``train.device``.

    A function, so a task that may not need the PyTorch model (inference on ONNX graphs) never builds it.
    Weights the trainer wrote go into the model the recipe builds (adapters included): built from the base file they
    were trained on (for full weights only while that file still exists: they replace every parameter, and the base
    gives the rest, e.g. the video modules an export completes an image model with), else from random weights they
    then replace. Any other weights file is the model's starting point, as ``model.checkpoint``.
    """
    weights = weights_for(spec, explicit_checkpoint)
    trained = trainer_weights(Path(weights)) if weights else None
    start = weights
    if trained:
        kind, base = trained
        start = base if kind == "trainable" or (base and Path(base).exists()) else None
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, checkpoint=start))
    recipe = recipe_for(spec)

    def load_model() -> torch.nn.Module:
        model = recipe.build_model()
        if trained:
            load_model_weights(model, Path(weights))
        model = model.to(resolve_device(spec.train.device)).eval()
        on_base = f" (trained parameters; the frozen rest from {start})" if trained and start else ""
        print(f"weights: {weights or 'random initialisation (no checkpoint found or given)'}{on_base}")
        return model

    return recipe, load_model
