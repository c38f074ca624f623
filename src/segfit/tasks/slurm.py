"""``segfit train --slurm``: the run as one SLURM job, submitted through submitit, requeued when pre-empted.

    segfit train --slurm -e spec.yaml launcher.slurm.nodes=2 launcher.slurm.gpus_per_node=8

SLURM starts one process per GPU on every node; each turns SLURM's view of the job into the environment
``torchrun`` would give it (rank, world size, the first node as rendezvous), so the engine sees an ordinary
distributed run. When the job is pre-empted or near its time limit, SLURM signals it and submitit asks the first
process for the job to requeue (``checkpoint``): the same run, which resumes from ``checkpoints/last``.
Logs: ``results_dir/slurm/<job id>/``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from segfit.spec.schema import SlurmSpec
from segfit.tasks.train import run as train

SLURM_DIR = "slurm"
PORTS = (20000, 40000)
"""Rendezvous ports are drawn from this range by job id, so the processes of a job agree without talking."""


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as error:
        raise ValueError("segfit train --slurm needs submitit: pip install 'segfit[slurm]'") from error
    return submitit


def run(spec: Any) -> None:
    job = submit(spec)
    print(f"submitted SLURM job {job.job_id}: logs in {Path(spec.results_dir) / SLURM_DIR / str(job.job_id)}, "
          f"results in {spec.results_dir}")


def submit(spec: Any, task: Callable[[Any], Any] = train, cluster: str = "slurm") -> Any:
    """Submit ``task(spec)`` (``segfit train``) as a job of ``spec.launcher.slurm``; returns submitit's job.

    ``cluster="local"`` runs the job's processes on this machine (submitit's local executor, for tests).
    """
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--slurm: SLURM's sbatch is not on this machine's PATH; submit from a SLURM login node")
    executor = _submitit().AutoExecutor(folder=Path(spec.results_dir) / SLURM_DIR / "%j", cluster=cluster)
    executor.update_parameters(**job_parameters(spec.launcher.slurm))
    return executor.submit(SlurmTraining(spec, task))


def job_parameters(slurm: SlurmSpec) -> dict[str, Any]:
    """``launcher.slurm`` → submitit's parameters: one task per GPU (one per node without GPUs)."""
    named = {f"slurm_{key}": value for key in ("partition", "account", "qos") if (value := getattr(slurm, key))}
    return {"name": "segfit", "nodes": slurm.nodes, "tasks_per_node": max(slurm.gpus_per_node, 1),
            "gpus_per_node": slurm.gpus_per_node, "cpus_per_task": slurm.cpus_per_task, "timeout_min": slurm.timeout,
            **named}


class SlurmTraining:
    """What every process of the job runs (submitit pickles it): join the run, then ``task(spec)``."""

    def __init__(self, spec: Any, task: Callable[[Any], Any]):
        self.spec, self.task = spec, task

    def __call__(self) -> Any:
        os.environ.update(torchrun_environment(_submitit().JobEnvironment()))
        return self.task(self.spec)

    def checkpoint(self) -> Any:
        """submitit's requeue hook, called on the first process when the job is pre-empted or times out: the same
        run again, resuming (whatever ``train.resume`` said) from the checkpoint the run last wrote."""
        resumed = dataclasses.replace(self.spec, train=dataclasses.replace(self.spec.train, resume=True))
        return _submitit().helpers.DelayedSubmission(SlurmTraining(resumed, self.task))


def torchrun_environment(job: Any) -> dict[str, str]:
    """The variables ``torchrun`` sets (``init_process_group``'s env:// rendezvous reads them), from a submitit
    ``JobEnvironment``."""
    low, high = PORTS
    return {"RANK": str(job.global_rank), "LOCAL_RANK": str(job.local_rank), "WORLD_SIZE": str(job.num_tasks),
            "LOCAL_WORLD_SIZE": str(job.num_tasks // job.num_nodes), "MASTER_ADDR": job.hostnames[0],
            "MASTER_PORT": str(low + int(job.raw_job_id) % (high - low))}
