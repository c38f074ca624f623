"""``segfit train --slurm``: the spec → submitit parameters, and a job of 2 CPU processes on submitit's local executor
that is pre-empted, requeued and resumes from its last checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from segfit.cli import main
from segfit.engine.logging import read_records
from segfit.engine.trainer import train
from segfit.spec.schema import LauncherSpec, SlurmSpec
from segfit.tasks.slurm import SlurmTraining, job_parameters

HERE = Path(__file__).parent
ENGINE_TESTS = HERE.parent / "engine"
sys.path.insert(0, str(ENGINE_TESTS))
from toy_recipe import ToyRecipe, replay_data_parallel, toy_spec  # noqa: E402

PREEMPTED_AT = 3
"""The training call (= step) in which every process of the first attempt receives SLURM's signal."""


def test_launcher_slurm_becomes_submitit_parameters():
    slurm = SlurmSpec(nodes=2, gpus_per_node=8, cpus_per_task=10, partition="gpu", qos="high", timeout=600)
    assert job_parameters(slurm) == {
        "name": "segfit", "nodes": 2, "tasks_per_node": 8, "gpus_per_node": 8, "cpus_per_task": 10,
        "timeout_min": 600, "slurm_partition": "gpu", "slurm_qos": "high"}  # no account: the user's default
    assert job_parameters(SlurmSpec(gpus_per_node=0))["tasks_per_node"] == 1
    with pytest.raises(ValueError, match="nodes: must be at least 1"):
        SlurmSpec(nodes=0)


def test_slurm_without_slurm_is_a_clear_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"model:\n  name: sam2\nresults_dir: {tmp_path}\n")
    assert main(["train", "--slurm", "-e", str(spec_file)]) == 2
    assert "sbatch is not on this machine's PATH" in capsys.readouterr().err


def test_a_requeued_job_resumes_even_when_the_spec_said_start_afresh(tmp_path):
    pytest.importorskip("submitit")
    spec = toy_spec(tmp_path, resume=False)
    requeued = SlurmTraining(spec, train).checkpoint()
    assert requeued.function.spec.train.resume and requeued.function.task is train


class PreemptedToyRecipe(ToyRecipe):
    def __init__(self, spec: Any, first_attempt: bool):
        super().__init__(spec, dropout=0.0)
        self.first_attempt = first_attempt

    def training_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.first_attempt and len(self.losses) + 1 == PREEMPTED_AT:
            os.kill(os.getpid(), signal.SIGUSR2)  # what SLURM sends every process of a pre-empted job
        return super().training_step(model, batch)


def preempted_toy_training(spec: Any) -> dict[str, Any]:
    """The job's task: the toy recipe, pre-empted in its first attempt; writes what this rank saw."""
    rank, out = int(os.environ["RANK"]), Path(spec.results_dir)
    attempts = out / f"rank{rank}.attempts"
    attempt = int(attempts.read_text()) if attempts.exists() else 0
    attempts.write_text(str(attempt + 1))
    recipe = PreemptedToyRecipe(spec, first_attempt=attempt == 0)
    summary = train(recipe, spec)
    weights = torch.cat([p.detach().flatten() for p in recipe.model.parameters()]).tolist()
    (out / f"rank{rank}.json").write_text(json.dumps({"seen": recipe.seen, "weights": weights, "attempt": attempt}))
    return summary


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_every_process_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from segfit.tasks.slurm import submit

    # the job's processes import this module and the toy recipe, one thread each
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE.parents[1] / "src"), str(HERE), str(ENGINE_TESTS)]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = toy_spec(tmp_path, max_steps=6, log_every=2, checkpoint_every=2, eval_every=3)
    spec = dataclasses.replace(spec, launcher=LauncherSpec(SlurmSpec(gpus_per_node=2, timeout=10)))
    job = submit(spec, preempted_toy_training, cluster="local")  # 2 processes (no GPU is used: train.device=cpu)
    deadline = time.monotonic() + 240
    while not job.done() and time.monotonic() < deadline:
        time.sleep(1)
    summaries = job.results()
    assert [s["step"] for s in summaries] == [6, 6], job.stdout()

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["attempt"] for r in ranks] == [1, 1]  # written by the requeued job
    assert "resuming from" in job.stdout() and "at step 2" in job.stdout()
    keys, weights = replay_data_parallel(6, 2)
    for rank, record in enumerate(ranks):  # after the requeue each rank saw exactly its batches of steps 3 to 6
        assert record["seen"] == keys[rank][2 * 2:]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # the replay joins the ranks' losses at this process's thread count (the ranks: 1 thread each): weights up to
    # 1.1 differ by ≤ 1.3e-7 seen
    assert ranks[0]["weights"] == pytest.approx(weights, rel=1e-5, abs=1e-6)
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "train"] == [2, 4, 6]
