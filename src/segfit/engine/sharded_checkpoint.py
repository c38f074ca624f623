"""The weights and optimizer state of an FSDP run (``train.distributed: fsdp``), saved sharded through
``torch.distributed.checkpoint`` (DCP), and their conversion to the ordinary ``model.safetensors``.

    segfit consolidate runs/my_run/checkpoints/best    # writes .../best/model.safetensors

Each process writes its own shards (``sharded/__<rank>_0.distcp``) and rank 0 the index (``sharded/.metadata``),
so no process ever holds the whole model or optimizer state. The tensors are keyed by parameter name, not by
process (DCP reshards them when read; one process reads them whole to consolidate). ``engine/checkpoint.py`` puts
them into a checkpoint directory beside ``trainer_state.pt`` (which then holds no optimizer) and ``meta.json``, with
the same atomic rename as every checkpoint.

An FSDP run also resumes from an ordinary checkpoint (one process or DDP): ``load_whole`` gives each process its
shards of the whole weights and optimizer state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

SHARDED_DIR = "sharded"
MODEL_KEY, OPTIMIZER_KEY = "model", "optimizer"


def save_sharded(dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write ``model``'s and ``optimizer``'s shards of this process to ``dir`` (every process calls it)."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({MODEL_KEY: model_state, OPTIMIZER_KEY: optimizer_state}, checkpoint_id=str(dir))


def load_sharded(dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Read this process's shards of ``model`` and ``optimizer`` from ``dir`` (every process calls it), at any number
    of processes (DCP reshards what it reads; tested from 2 to 1): one process (no process group) reads them whole.

    ``get_state_dict`` gives a fresh optimizer its state tensors first (a step of zero gradients at lr 0), so that
    DCP has tensors to read the saved values into."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {MODEL_KEY: model_state, OPTIMIZER_KEY: optimizer_state}
    dcp.load(state, checkpoint_id=str(dir))  # without a process group (one process) it warns that it reads whole
    set_state_dict(model, optimizer, model_state_dict=state[MODEL_KEY], optim_state_dict=state[OPTIMIZER_KEY])


def load_whole(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
               optimizer_state: dict[str, Any]) -> None:
    """Load an ordinary checkpoint into the sharded ``model`` and ``optimizer`` (every process calls it): its whole
    ``weights`` by name and ``optimizer_state`` as ``optimizer.state_dict()`` gave it (keyed by position).

    Every process has read the file, so each keeps its shards without a broadcast from rank 0. Not strict:
    ``weights`` may leave out frozen parameters (the caller checked the keys), and a parameter that had no gradient
    yet has no optimizer state; it gets none here either, as ``optimizer.load_state_dict`` leaves it.
    """
    named = _by_name(model, optimizer, optimizer_state)
    set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=named,
                   options=StateDictOptions(full_state_dict=True, strict=False))
    for name, param in model.named_parameters():  # set_state_dict first gave every one a state (a step at lr 0)
        if name not in named["state"]:
            optimizer.state.pop(param, None)


def _by_name(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """``optimizer.state_dict()``-style ``state`` keyed by parameter name, as ``set_state_dict`` takes it: the saved
    positions are those of this optimizer's parameters (the same recipe's parameter groups, in the same order)."""
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    saved_sizes = [len(group["params"]) for group in state["param_groups"]]
    if sizes != saved_sizes:
        raise ValueError(f"the checkpoint's optimizer has parameter groups of {saved_sizes} parameters, this run's "
                         f"{sizes}: resume with the model and optim settings it was trained with")
    names = {param: name for name, param in model.named_parameters()}
    saved = [index for group in state["param_groups"] for index in group["params"]]
    current = [names[param] for group in optimizer.param_groups for param in group["params"]]
    name_of = dict(zip(saved, current))
    return {"state": {name_of[index]: value for index, value in state["state"].items()},
            "param_groups": [{**group, "params": [name_of[index] for index in group["params"]]}
                             for group in state["param_groups"]]}


def read_sharded_model(dir: Path) -> dict[str, torch.Tensor]:
    """The model's whole tensors from sharded checkpoint ``dir``, read in one process (no process group); the
    optimizer's are not read."""
    reader = FileSystemReader(str(dir))
    prefix = f"{MODEL_KEY}."
    tensors = {key: torch.empty(item.size, dtype=item.properties.dtype)
               for key, item in reader.read_metadata().state_dict_metadata.items()
               if key.startswith(prefix) and isinstance(item, TensorStorageMetadata)}
    dcp.load(tensors, storage_reader=reader, no_dist=True)
    return {key[len(prefix):]: value for key, value in tensors.items()}
