"""``segfit train`` of a spec in 2 CPU processes under ``torchrun`` (gloo, one thread each), for the families'
data-parallel tests; imported as ``torchrun_train`` (``tests/`` is on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from segfit.spec import save_resolved

SRC = Path(__file__).parents[1] / "src"


def train_under_torchrun(spec: Any, spec_dir: Path, processes: int = 2) -> str:
    """Train ``spec`` (written to ``spec_dir/spec.resolved.yaml``) in ``processes`` processes; their standard output,
    or a failure with their errors."""
    spec_file = save_resolved(spec, spec_dir)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "segfit", "train", "-e", str(spec_file)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout
