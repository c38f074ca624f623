"""Scripts and ``segfit train`` in 2 CPU processes under ``torchrun`` (gloo, one thread each), for the
data-parallel tests, and the comparison of two runs' records and weights; imported as ``torchrun_train``
(``tests/`` is on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from segfit.engine.logging import read_records
from segfit.spec import save_resolved

SRC = Path(__file__).parents[1] / "src"


def run_under_torchrun(*args: str, processes: int = 2) -> str:
    """``torchrun --standalone --nproc_per_node processes ARGS`` (a script and its arguments, or ``-m module ...``);
    its standard output, or a failure with its errors."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               *args]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def train_under_torchrun(spec: Any, spec_dir: Path, processes: int = 2) -> str:
    """Train ``spec`` (written to ``spec_dir/spec.resolved.yaml``) in ``processes`` processes; their standard output,
    or a failure with their errors."""
    spec_file = save_resolved(spec, spec_dir)
    return run_under_torchrun("-m", "segfit", "train", "-e", str(spec_file), processes=processes)


def assert_same_training(run: Path, reference: Path, keys: Iterable[str], rtol: float = 1e-5,
                         atol: float = 1e-6, noise_only: tuple[str, ...] = ()) -> None:
    """Runs ``run`` and ``reference`` logged the same steps with the same ``keys`` (within ``rtol``) and ended with
    the same weights (within ``rtol`` and ``atol``), but for parameters named ``noise_only*``: those whose gradient
    is 0 but for rounding, which AdamW turns into steps of about the learning rate."""
    records = {name: [r for r in read_records(path / "metrics.jsonl") if r["split"] == "train"]
               for name, path in (("run", run), ("reference", reference))}
    assert [r["step"] for r in records["run"]] == [r["step"] for r in records["reference"]]
    for ours, theirs in zip(records["run"], records["reference"]):
        for key in keys:
            assert ours[key] == pytest.approx(theirs[key], rel=rtol), (ours["step"], key)
    weights = {name: safetensors.torch.load_file(path / "checkpoints" / "last" / "model.safetensors")
               for name, path in (("run", run), ("reference", reference))}
    assert weights["run"].keys() == weights["reference"].keys()
    for key, value in weights["reference"].items():
        if not key.startswith(noise_only):
            torch.testing.assert_close(weights["run"][key], value, rtol=rtol, atol=atol, msg=key)
