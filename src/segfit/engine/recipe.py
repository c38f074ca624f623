"""What a model family provides to the engine (a Protocol: recipes share no base class).

A recipe owns everything model-specific: building the model, its datasets and batches, the loss terms,
evaluation, prediction and export. The engine calls only these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset


class ParamGroup(dict):
    """``{"name": str, "params": list[(name, Parameter)], "lr": float}``: one learning rate for a set of parameters.

    The engine splits each group again into decayed and non-decayed parameters (norms, biases, position embeddings).
    With ``"unfrozen_later": True`` its frozen parameters join the optimizer too, for a recipe whose ``before_step``
    unfreezes them during the run.
    """


class Recipe(Protocol):
    spec: Any
    """The spec the engine runs: the one the recipe was made from, with any settings that depend on the data
    resolved (e.g. epochs → steps)."""
    default_best_metric: str
    """Validation metric that picks the ``best`` checkpoint unless ``train.best_metric`` says otherwise."""

    def build_model(self) -> nn.Module:
        """The model with ``model.checkpoint`` loaded (random weights if none) and frozen parts frozen.

        Frozen parameters (``requires_grad=False``) must come from ``model.checkpoint`` alone, the same on every
        build: checkpoints of a model built from a file store only what trains and rebuild the rest this way.
        """
        ...

    def compile(self, model: nn.Module) -> None:
        """Compile the parts of ``model`` a training step spends its time in, in place (``train.compile``)."""
        ...

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """Trainable parameters grouped by learning rate."""
        ...

    def train_dataset(self) -> Dataset:
        """Training samples. ``__getitem__`` takes ``(index, seed)``: all randomness of a sample comes from ``seed``,
        so a resumed run sees exactly the samples an uninterrupted one would."""
        ...

    def collate(self, samples: list[Any]) -> Any:
        """Samples → one batch (tensors, lists and dicts; the engine moves tensors to the device). A dict batch may
        carry ``source``, its samples' files in order: the engine names them when the batch's loss is not finite."""
        ...

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward pass and loss terms as scalars; the total under ``loss``. Other keys (e.g. ``iou``) are logged."""
        ...

    def check_data(self) -> list[Any]:
        """``segfit data check``: a report per split of the spec (``ok``, ``format()``), naming every bad file."""
        ...

    def evaluate(self, model: nn.Module, split: str, samples_dir: Path | None = None) -> dict[str, float]:
        """Metrics on a data split (``val`` or ``test``); overlays written to ``samples_dir`` when given.

        Metrics are floats; counts (images, objects, skipped samples) are ints, logged but not plotted."""
        ...

    # Optional (the engine calls them when a recipe has them):
    # def initial_weights(self, model: nn.Module) -> None:
    #     """Load what a run starting from scratch begins with besides ``model.checkpoint`` (SiamBAN's ImageNet
    #     backbone file). Called only for a fresh start: a resume, evaluation, inference and export take every weight
    #     from checkpoints, so such a file may be gone by then. Only for a model not built from ``model.checkpoint``
    #     (its checkpoints hold only what trains, the rest rebuilt from that file alone)."""
    #
    # def before_step(self, model: nn.Module, step: int) -> bool:
    #     """Called before optimizer step ``step`` (0-based; also right after a resume): set what trains at this step
    #     (a function of ``step`` alone, so a resumed run matches); True when the trainable parameters changed."""
    # def fsdp_blocks(self, model: nn.Module) -> list[nn.Module]:
    #     """The modules FSDP shards as units (``engine/fsdp.py``): each must run the same number of times in every
    #     process's step (its gathering is a collective)."""
    # def evaluate_shard(self, model, split, shard: Shard, samples_dir) -> Any:
    # def merge_evaluation(self, states: list[Any], split, samples_dir) -> dict[str, float]:
    #     """Evaluation sharded across processes: mergeable states, then the metrics (``engine/evaluation.py``)."""
