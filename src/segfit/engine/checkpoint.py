"""Checkpoints: a directory with the weights, the trainer state beside them and a human-readable summary.

Layout of one checkpoint (``results_dir/checkpoints/last/``, ``.../best/``)::

    model.safetensors    the model's weights (tied tensors stored once), see below
    trainer_state.pt     optimizer, scheduler, scaler, RNG states per rank, step, sampler position, best value
    meta.json            step, time, best value and the metrics of the step

What ``model.safetensors`` holds (one rule for every family): when the model was built from a weights file (the
spec's ``model.checkpoint``, passed as ``base``) and some of its parameters are frozen, only what training changes —
the parameters with ``requires_grad`` and the buffers — and the absolute path of that file; the frozen rest is that
file's, rebuilt by the recipe. So a run with a frozen image encoder or with LoRA adapters writes megabytes, not the
whole model. Otherwise (random initialisation, or nothing frozen) the whole state_dict, still naming the file it
was built from, if any (what the model holds beyond its parameters, e.g. the video modules of a complete SAM 2
checkpoint for an image model's export, comes from there). The file's metadata says which (``segfit.weights``:
``full`` or ``trainable``; ``segfit.base``: the file), so loaders need no spec.

An FSDP run (``train.distributed: fsdp``) writes ``sharded/`` instead of ``model.safetensors`` and keeps the
optimizer there too, every process its shards (``engine/sharded_checkpoint.py``); ``segfit consolidate`` adds the
``model.safetensors`` (``full``) that evaluation, inference and export read. It also resumes from an ordinary
checkpoint (one process or DDP): every process reads the whole weights and optimizer state and keeps its shards.

A checkpoint is written into a temporary sibling directory and renamed over the old one only when complete,
so a crash while saving leaves the previous checkpoint intact; a failed write (a full disk) raises a
``StorageError`` that says so. Everything in ``trainer_state.pt`` is tensors
and plain Python values, which ``torch.load(weights_only=True)`` reads without unpickling arbitrary objects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from segfit.engine.distributed import Dist, barrier
from segfit.engine.fsdp import is_sharded
from segfit.engine.sharded_checkpoint import (
    SHARDED_DIR,
    load_sharded,
    load_whole,
    read_sharded_model,
    save_sharded,
)
from segfit.engine.storage import StorageError

MODEL_FILE = "model.safetensors"
WEIGHTS_KIND = "segfit.weights"
"""safetensors metadata key of weights the trainer wrote: ``full`` or ``trainable`` (only what trains)."""
WEIGHTS_BASE = "segfit.base"
"""safetensors metadata key of ``trainable`` weights: the file the frozen parameters come from."""
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
CHECKPOINT_NAMES = ("best", "last")
STATE_OVERHEAD = 2**20
"""Bytes of a checkpoint beyond its tensors (RNG states of the processes, file headers, meta.json): tens of KiB."""


# ---- random number generators ----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """This process's generator states as tensors and plain values (numpy's as lists, loadable with weights_only)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "python": [py_version, list(py_internal), py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.array(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block from a fixed seed and leave the surrounding generators as they were.

    Evaluation runs inside it: its results do not depend on when it runs, and the training stream does not
    depend on whether it ran (so a run resumed after an end-of-run evaluation continues exactly).
    """
    saved = rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


# ---- save / load ------------------------------------------------------------------------------------------
def _backup_of(dir: Path) -> Path:
    return dir.with_name(f".{dir.name}.previous")


def _recover(dir: Path) -> None:
    """Put back a previous checkpoint if a save stopped between its two renames."""
    backup = _backup_of(dir)
    if not dir.exists() and backup.is_dir():
        backup.rename(dir)


def save_checkpoint(
    dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    step: int,
    sampler_state: dict[str, int],
    extra: dict[str, Any],
    *,
    best: float | None = None,
    rng_states: list[dict[str, Any]] | None = None,
    base: str | None = None,
    dist: Dist = Dist(),
) -> None:
    """Write checkpoint ``dir`` atomically (rank 0 alone; every process when ``model`` is sharded).

    Args:
        extra: JSON-serialisable values kept in the trainer state and shown in ``meta.json`` (e.g. metrics).
        best: best validation value so far, restored on resume.
        rng_states: generator states of every rank (index = rank); default: this process's.
        base: the weights file the model was built from (``model.checkpoint``): frozen parameters are not stored.
        dist: the processes; with a sharded model each writes its shards into rank 0's temporary directory.
    """
    dir = Path(dir)
    tmp = dir.with_name(f".{dir.name}.tmp")
    sharded = is_sharded(model)
    try:
        if dist.is_main:
            _recover(dir)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if sharded:
            barrier(dist)  # the directory exists before any process writes into it
            save_sharded(tmp / SHARDED_DIR, model, optimizer)  # returns once every shard and the index are written
        if not dist.is_main:
            return
        weights_info = ({"weights": "sharded", **({"base": str(Path(base).resolve())} if base else {})} if sharded
                        else save_weights(model, tmp / MODEL_FILE, base))
        torch.save(
            {
                "step": step,
                "optimizer": {} if sharded else optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_states or [rng_state()],
                "sampler": dict(sampler_state),
                "best": best,
                "extra": extra,
            },
            tmp / STATE_FILE,
        )
        meta = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "best": best,
                **weights_info, **extra}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        backup = _backup_of(dir)
        if dir.exists():
            shutil.rmtree(backup, ignore_errors=True)  # left by a save stopped after its second rename
            os.replace(dir, backup)
        os.replace(tmp, dir)
        shutil.rmtree(backup, ignore_errors=True)
    except OSError as err:
        if dist.is_main:
            _recover(dir)
        raise StorageError(f"writing checkpoint {dir} at step {step} failed ({err}); {_previous(dir)}") from err
    finally:
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)


def _previous(dir: Path) -> str:
    """What a failed save left at ``dir``: the previous checkpoint, untouched, or nothing."""
    try:
        step = json.loads((dir / META_FILE).read_text())["step"]
    except (OSError, ValueError, KeyError):
        return "there was no earlier checkpoint there"
    return f"the previous checkpoint there (step {step}) is intact"


def checkpoint_bytes(model: nn.Module, base: str | None) -> int:
    """About the size of one checkpoint of ``model``: the weights ``save_weights`` stores, AdamW's two moments of
    every trained parameter, and ``STATE_OVERHEAD`` for the rest."""
    stored = {t.data_ptr(): t.numel() * t.element_size() for t in _weights_to_store(model, base).values()}
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return sum(stored.values()) + 2 * trained + STATE_OVERHEAD


def save_weights(model: nn.Module, file: Path, base: str | None) -> dict[str, str]:
    """Write ``model``'s weights to ``file`` by the rule in the module docstring; returns what ``meta.json`` shows."""
    based_on = {} if base is None else {WEIGHTS_BASE: str(Path(base).resolve())}
    if not _stores_trainable_only(model, base):
        safetensors.torch.save_model(model, str(file), metadata={WEIGHTS_KIND: "full", **based_on})
        return {"weights": "full", **({"base": based_on[WEIGHTS_BASE]} if based_on else {})}
    base = based_on[WEIGHTS_BASE]
    safetensors.torch.save_file({k: v.detach().contiguous() for k, v in _weights_to_store(model, base).items()},
                                str(file), {WEIGHTS_KIND: "trainable", WEIGHTS_BASE: base})
    return {"weights": "trainable", "base": base}


def _stores_trainable_only(model: nn.Module, base: str | None) -> bool:
    return base is not None and bool(_frozen_names(model))


def _weights_to_store(model: nn.Module, base: str | None) -> dict[str, torch.Tensor]:
    """The tensors ``save_weights`` writes: the whole state_dict, or what trains plus the buffers."""
    if not _stores_trainable_only(model, base):
        return model.state_dict()
    stored = model.state_dict().keys()  # persistent buffers only
    tensors = {name: param for name, param in model.named_parameters() if param.requires_grad}
    tensors.update((name, buffer) for name, buffer in model.named_buffers() if name in stored)
    return tensors


def _frozen_names(model: nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters(remove_duplicate=False) if not param.requires_grad}


def trainer_weights(path: Path) -> tuple[str, str | None] | None:
    """``(kind, base)`` of a weights file the trainer wrote (``full``/``trainable``, the base file or None), or
    None for any other path (foreign safetensors files, directories, ``.pt`` files)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (safetensors.SafetensorError, OSError):  # unreadable: whoever loads it reports that
        return None
    return (metadata[WEIGHTS_KIND], metadata.get(WEIGHTS_BASE)) if WEIGHTS_KIND in metadata else None


def load_model_weights(model: nn.Module, path: Path) -> None:
    """Load ``path`` (a checkpoint directory or a ``.safetensors`` file) into ``model``; every key must match.

    Trainable-only weights leave the model's frozen parameters as they are (the recipe built them from the base);
    every other parameter must be in the file.
    """
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such weights file")
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(file), strict=False)
    except RuntimeError as error:  # shape mismatches
        raise RuntimeError(f"{file}: weights do not fit the model: {error}") from error
    _check_keys(file, model, set(missing), set(unexpected))


def _check_keys(file: Path, model: nn.Module, missing: set[str], unexpected: set[str]) -> None:
    """Raise unless weights ``file`` left out of ``model`` nothing but (trainable-only weights) its frozen parameters
    and held nothing else."""
    if (trainer_weights(file) or ("full",))[0] == "trainable":
        missing = missing - _frozen_names(model)
    if missing or unexpected:
        raise RuntimeError(
            f"{file}: weights do not match the model: {len(missing)} missing key(s) {sorted(missing)[:5]}, "
            f"{len(unexpected)} unexpected key(s) {sorted(unexpected)[:5]}"
        )


def _load_whole_into_sharded(file: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                             optimizer_state: dict[str, Any]) -> None:
    """Resume an FSDP run from an ordinary checkpoint (one process or DDP): every process reads the whole file and
    keeps its shards of the weights and of the optimizer state. (A tied tensor, which safetensors stores under one
    name, would count as missing under its other names: no family ties any.)"""
    weights = safetensors.torch.load_file(file)
    expected = model.state_dict().keys()
    _check_keys(file, model, set(expected - weights.keys()), set(weights.keys() - expected))
    load_whole(model, optimizer, weights, optimizer_state)


def load_checkpoint(
    dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    rank: int = 0,
    base: str | None = None,
) -> dict[str, Any]:
    """Restore weights, the given trainer parts and this rank's RNG states from ``dir``.

    ``base`` is the weights file ``model`` was built from; trainable-only weights must have been trained from it.
    Returns ``{"step", "sampler_state", "best", "extra"}``.
    """
    dir = Path(dir)
    _recover(dir)
    state_file = dir / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"{state_file}: no trainer state (is {dir} a checkpoint directory?)")
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    if (dir / SHARDED_DIR).is_dir():
        if optimizer is None:
            raise ValueError(f"{dir}: a sharded checkpoint (an FSDP run) resumes training only; for its weights run "
                             f"`segfit consolidate {dir}`")
        load_sharded(dir / SHARDED_DIR, model, optimizer)
    elif is_sharded(model):
        if optimizer is None:
            raise ValueError(f"{dir}: a sharded model resumes training only; load these weights into the plain model")
        _check_base(dir / MODEL_FILE, base)
        _load_whole_into_sharded(dir / MODEL_FILE, model, optimizer, state["optimizer"])
    else:
        _check_base(dir / MODEL_FILE, base)
        load_model_weights(model, dir)
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    # A scaler state exists only for fp16 runs; switching precision on resume starts a fresh scaler.
    if scaler is not None and scaler.is_enabled() and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    # Resumed with more processes than saved, a rank without a saved state keeps its own seed (train.seed + rank):
    # another rank's state would repeat that rank's draws (dropout masks) on this one.
    if rank < len(state["rng"]):
        set_rng_state(state["rng"][rank])
    return {"step": state["step"], "sampler_state": state["sampler"], "best": state["best"], "extra": state["extra"]}


def _check_base(file: Path, base: str | None) -> None:
    kind, trained_from = trainer_weights(file) or ("full", None)
    if kind == "trainable" and (base is None or not _same_file(trained_from, base)):
        raise ValueError(
            f"{file}: holds only the trained parameters of a model built from {trained_from}, but this model was "
            f"built from {base or 'random weights'}; set model.checkpoint back to that file (or start afresh)"
        )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is gone: compare the paths
        return Path(a).resolve() == Path(b).resolve()


def find_checkpoint(results_dir: Path, which: str = "best") -> Path | None:
    """The run's ``best`` (falling back to ``last``) or ``last`` checkpoint directory, or None when there is none."""
    if which not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint {which!r}: expected one of {', '.join(CHECKPOINT_NAMES)}")
    for name in ("best", "last") if which == "best" else ("last",):
        dir = Path(results_dir) / "checkpoints" / name
        _recover(dir)
        if ((dir / MODEL_FILE).is_file() or is_sharded_checkpoint(dir)) and (dir / STATE_FILE).is_file():
            return dir
    return None


def is_sharded_checkpoint(dir: Path) -> bool:
    """A checkpoint of an FSDP run (its ``model.safetensors`` exists only once consolidated)."""
    return (Path(dir) / SHARDED_DIR / ".metadata").is_file()


def consolidate(dir: Path) -> Path:
    """``segfit consolidate``: join the model shards of checkpoint ``dir`` into ``dir/model.safetensors`` (``full``
    weights, naming the base file of ``meta.json``), in one process and through a temporary file (never a
    half-written weights file that evaluation would take)."""
    dir = Path(dir)
    if not is_sharded_checkpoint(dir):
        raise FileNotFoundError(f"{dir}: not a sharded checkpoint (no {SHARDED_DIR}/.metadata in it)")
    base = json.loads((dir / META_FILE).read_text()).get("base")
    out, tmp = dir / MODEL_FILE, dir / f".{MODEL_FILE}.tmp"
    safetensors.torch.save_file(read_sharded_model(dir / SHARDED_DIR), str(tmp),
                                {WEIGHTS_KIND: "full", **({WEIGHTS_BASE: base} if base else {})})
    os.replace(tmp, out)
    return out
