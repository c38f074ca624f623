"""A run killed with SIGKILL ten times (at random moments: while starting, in a step, inside a checkpoint write) and
resumed each time ends with the weights and losses of a run never interrupted, bit for bit, and never leaves an
unreadable checkpoint."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from segfit.engine.checkpoint import CHECKPOINT_NAMES, load_checkpoint
from segfit.engine.logging import read_records

sys.path.insert(0, str(Path(__file__).parent))
from killable_run import MAX_STEPS  # noqa: E402
from toy_recipe import ToyModel  # noqa: E402

SCRIPT = Path(__file__).with_name("killable_run.py")
KILLS = 10


def _start(results_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(results_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def _wait_for(process: subprocess.Popen, line: str) -> bool:
    """Read the run's output up to ``line``; False when the run ended first."""
    for out in process.stdout:
        if out.strip() == line:
            return True
    return False


def _finish(process: subprocess.Popen) -> None:
    process.stdout.read()
    assert process.wait(timeout=120) == 0


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()


def _checkpoints_readable(results_dir: Path) -> int:
    """Load every checkpoint on disk as a reader would; returns the step of ``last`` (0 without one)."""
    step = 0
    for name in CHECKPOINT_NAMES:
        dir = results_dir / "checkpoints" / name
        if dir.exists() or dir.with_name(f".{name}.previous").exists():  # a backup is a checkpoint being replaced
            state = load_checkpoint(dir, ToyModel(dropout=0.0))
            assert json.loads((dir / "meta.json").read_text())["step"] == state["step"]
            step = state["step"] if name == "last" else step
    return step


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = _start(tmp_path / "reference")
    _finish(reference)

    killed, rng, steps, in_writes = tmp_path / "killed", random.Random(0), [], 0
    for kill in range(KILLS):
        run = _start(killed)
        assert _wait_for(run, "ready")
        if kill == 0:  # while it starts: building the model, reading the data, opening the log
            time.sleep(rng.uniform(0.0, 0.5))
        else:  # once it trains: inside the 1st or 2nd checkpoint write it starts, or anywhere a little later
            for _ in range(rng.randint(1, 2)):
                assert _wait_for(run, "saving"), "the run ended before its next checkpoint: raise MAX_STEPS"
            time.sleep(rng.uniform(0.0, 0.05) if kill % 2 else rng.uniform(0.0, 0.15))
        _kill(run)
        in_writes += any(p.name.endswith(".tmp") for p in (killed / "checkpoints").glob(".*"))
        steps.append(_checkpoints_readable(killed))
    _finish(_start(killed))

    assert steps == sorted(steps) and steps[-1] < MAX_STEPS, f"steps reached at each kill: {steps}"
    assert in_writes >= 2, f"{in_writes} kill(s) landed inside a checkpoint write: too few to test them"
    final = [safetensors.torch.load_file(str(run / "checkpoints/last/model.safetensors"))
             for run in (tmp_path / "reference", killed)]
    assert final[0].keys() == final[1].keys()
    for name, weights in final[0].items():
        assert torch.equal(final[1][name], weights), name
    losses = [{r["step"]: r["loss"] for r in read_records(run / "metrics.jsonl") if r["split"] == "train"}
              for run in (tmp_path / "reference", killed)]
    assert losses[1] == losses[0] and len(losses[0]) == MAX_STEPS
