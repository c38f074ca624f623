"""The weights and optimizer state of an FSDP run (``train.distributed: fsdp``), saved sharded through
``torch.distributed.checkpoint`` (DCP), and their conversion to the ordinary ``model.safetensors``.

    segfit consolidate runs/my_run/checkpoints/best    # writes .../best/model.safetensors

Each process writes its own shards (``sharded/__<rank>_0.distcp``) and rank 0 the index (``sharded/.metadata``),
so no process ever holds the whole model or optimizer state. The tensors are keyed by parameter name, not by
process (DCP reshards them when read; one process reads them whole to consolidate). ``engine/checkpoint.py`` puts
them into a checkpoint directory beside ``trainer_state.pt`` (which then holds no optimizer) and ``meta.json``, with
the same atomic rename as every checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

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
