"""Moving batches and small host-made tensors to the training device without making the host wait for it."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside dicts, lists, tuples (incl. named tuples) and dataclasses to ``device``.

    Copies are non-blocking: the DataLoader pins batches on CUDA, so the copy overlaps the previous step's work.
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list):
        return [to_device(value, device) for value in batch]
    if isinstance(batch, tuple):
        items = [to_device(value, device) for value in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {f.name: to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **fields)
    return batch


def host_to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """A tensor made on the host (e.g. indices from a CPU random draw), on ``device`` without a host sync.

    A plain copy from pageable memory to CUDA synchronises the stream; a copy from pinned memory is queued like a
    kernel (the pinned block stays reserved until the copy has run).
    """
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
