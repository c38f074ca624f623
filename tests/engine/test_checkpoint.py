"""Checkpoints: full round trip (weights, optimizer, schedule, scaler, RNG), atomic replacement, lookup, errors."""

from __future__ import annotations

import errno
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segfit.engine import checkpoint
from segfit.engine.checkpoint import (
    checkpoint_bytes,
    find_checkpoint,
    isolated_rng,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    seed_everything,
)
from segfit.engine.optim import build_optimizer, build_scheduler
from segfit.engine.recipe import ParamGroup
from segfit.engine.storage import StorageError
from segfit.spec.schema import OptimSpec

SPEC = OptimSpec(base_lr=0.1, scheduler="cosine", warmup_steps=2)


class Tied(nn.Module):
    """An embedding tied to the output layer: one tensor under two names."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.norm = nn.LayerNorm(3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.embed(ids)))


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = Tied()
    optimizer = build_optimizer([ParamGroup(name="all", params=list(model.named_parameters()), lr=0.1)], SPEC)
    scheduler = build_scheduler(optimizer, SPEC, max_steps=10)
    return model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)


def _train_steps(model, optimizer, scheduler, n: int) -> None:
    for _ in range(n):
        model(torch.randint(0, 5, (4,))).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()


def _save(dir, parts, step, **kwargs):
    model, optimizer, scheduler, scaler = parts
    save_checkpoint(dir, model, optimizer, scheduler, scaler, step, {"epoch": 1, "position": 3},
                    {"metrics": {"miou": 0.5}}, **kwargs)


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random()


def test_round_trip_restores_weights_optimizer_schedule_and_rng(tmp_path):
    parts = _parts()
    _train_steps(*parts[:3], 3)
    _save(tmp_path / "last", parts, 3, best=0.5)
    expected_draws = _draws()
    _train_steps(*parts[:3], 2)  # the reference continuation

    fresh = _parts(seed=1)
    state = load_checkpoint(tmp_path / "last", *fresh)
    assert _draws() == expected_draws
    assert state == {"step": 3, "sampler_state": {"epoch": 1, "position": 3}, "best": 0.5,
                     "extra": {"metrics": {"miou": 0.5}}}
    assert fresh[2].last_epoch == 3
    assert fresh[1].param_groups[0]["lr"] == pytest.approx(0.1 * fresh[2].lr_lambdas[0](3))
    # Resumed training from the same RNG continues bit-identically.
    torch.manual_seed(7), _train_steps(*fresh[:3], 2)
    reference = _parts()
    load_checkpoint(tmp_path / "last", *reference)
    torch.manual_seed(7), _train_steps(*reference[:3], 2)
    for a, b in zip(fresh[0].parameters(), reference[0].parameters()):
        assert torch.equal(a, b)
    assert fresh[0].out.weight is fresh[0].embed.weight  # tying survives loading


def test_meta_json_is_human_readable(tmp_path):
    _save(tmp_path / "best", _parts(), 12, best=0.75)
    meta = json.loads((tmp_path / "best" / "meta.json").read_text())
    assert meta["step"] == 12 and meta["best"] == 0.75 and meta["metrics"] == {"miou": 0.5} and "time" in meta
    files = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert files == ["meta.json", "model.safetensors", "trainer_state.pt"]


def test_trainer_state_loads_with_weights_only(tmp_path):
    parts = _parts()
    _train_steps(*parts[:3], 1)
    _save(tmp_path / "last", parts, 1)
    state = torch.load(tmp_path / "last" / "trainer_state.pt", weights_only=True)
    assert set(state) == {"step", "optimizer", "scheduler", "scaler", "rng", "sampler", "best", "extra"}


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    parts = _parts()
    _save(tmp_path / "last", parts, 1)
    _train_steps(*parts[:3], 1)

    def crash(obj, file):
        Path(file).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", crash)  # after model.safetensors was written
    with pytest.raises(StorageError, match=r"writing checkpoint .*last at step 2 failed \(\[Errno 28\] No space "
                                           r"left on device\); the previous checkpoint there \(step 1\) is intact"):
        _save(tmp_path / "last", parts, 2)
    with pytest.raises(StorageError, match="there was no earlier checkpoint there"):
        _save(tmp_path / "first", parts, 2)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary directory left behind
    assert load_checkpoint(tmp_path / "last", *_parts())["step"] == 1


def test_checkpoint_size_estimate_covers_the_files(tmp_path):
    parts = _parts()
    _train_steps(*parts[:3], 1)  # AdamW's moments exist from the first step on
    _save(tmp_path / "last", parts, 1)
    written = sum(f.stat().st_size for f in (tmp_path / "last").iterdir())
    estimate = checkpoint_bytes(parts[0], base=None)
    assert estimate == 3 * (5 * 3 + 2 * 3) * 4 + checkpoint.STATE_OVERHEAD  # tied weight once; 2 AdamW moments
    assert written <= estimate <= written + checkpoint.STATE_OVERHEAD


def test_a_save_interrupted_between_renames_is_recovered(tmp_path):
    _save(tmp_path / "checkpoints" / "last", _parts(), 4)
    # state after "rename last → backup" and before "rename tmp → last"
    (tmp_path / "checkpoints" / "last").rename(tmp_path / "checkpoints" / ".last.previous")
    assert find_checkpoint(tmp_path, "last") == tmp_path / "checkpoints" / "last"
    assert load_checkpoint(tmp_path / "checkpoints" / "last", *_parts())["step"] == 4
    # state after both renames, before the backup was removed: the next save still goes through
    (tmp_path / "checkpoints" / ".last.previous").mkdir()
    (tmp_path / "checkpoints" / ".last.previous" / "model.safetensors").write_text("stale")
    _save(tmp_path / "checkpoints" / "last", _parts(), 5)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last", *_parts())["step"] == 5


def test_find_checkpoint_prefers_best_then_last(tmp_path):
    assert find_checkpoint(tmp_path) is None
    _save(tmp_path / "checkpoints" / "last", _parts(), 2)
    assert find_checkpoint(tmp_path, "best") == tmp_path / "checkpoints" / "last"
    _save(tmp_path / "checkpoints" / "best", _parts(), 1)
    assert find_checkpoint(tmp_path, "best") == tmp_path / "checkpoints" / "best"
    assert find_checkpoint(tmp_path, "last") == tmp_path / "checkpoints" / "last"
    with pytest.raises(ValueError, match="'first'"):
        find_checkpoint(tmp_path, "first")


def test_load_model_weights_accepts_dir_or_file_and_names_the_file_on_mismatch(tmp_path):
    parts = _parts()
    _save(tmp_path / "last", parts, 1)
    other = Tied()
    load_model_weights(other, tmp_path / "last" / "model.safetensors")
    assert torch.equal(other.embed.weight, parts[0].embed.weight)

    wider = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(RuntimeError, match=r"model\.safetensors: weights do not match the model: 2 missing"):
        load_model_weights(wider, tmp_path / "last")
    resized = Tied()
    resized.norm = nn.LayerNorm(4)
    with pytest.raises(RuntimeError, match=r"(?s)model\.safetensors: weights do not fit the model.*size mismatch"):
        load_model_weights(resized, tmp_path / "last")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_model_weights(other, tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match="trainer_state.pt: no trainer state"):
        load_checkpoint(tmp_path, other)


def test_isolated_rng_is_reproducible_and_leaves_the_outer_stream_alone():
    seed_everything(3)
    with isolated_rng(0):
        inside = _draws()
    after = _draws()
    with isolated_rng(0):
        assert _draws() == inside
    seed_everything(3)
    assert _draws() == after
