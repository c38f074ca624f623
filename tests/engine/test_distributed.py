"""Device choice, the training step DDP wraps, and real 2-process CPU runs under torchrun (gloo): one machine,
and two "machines" (two torchrun agents on loopback) with a killed process and an elastic restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from segfit.cli import main as segfit
from segfit.engine.distributed import (
    Dist,
    TrainingStep,
    all_gather,
    all_reduce_mean,
    data_parallel,
    gradient_sync,
    resolve_device,
)
from segfit.engine.logging import read_records
from segfit.engine.trainer import train

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
sys.path.insert(0, str(HERE))  # the toy recipe sits next to the tests
from toy_recipe import ToyModel, ToyRecipe, replay_data_parallel, toy_spec  # noqa: E402


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="train.device: 'gpu' is not one of auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="train.device: 'cuda:1' requested, but CUDA is not available"):
        resolve_device("cuda:1")


def test_single_process_helpers_are_no_ops():
    single = Dist()
    assert single.is_main and not single.active
    step = TrainingStep(ToyRecipe(toy_spec(Path("unused"))), ToyModel(0.0))
    assert data_parallel(step, single, torch.device("cpu")) is step  # nothing wraps a single process
    with gradient_sync(step, sync=False):  # no DDP, nothing to hold back
        pass
    assert all_reduce_mean({"loss": 2.0}, torch.device("cpu"), single) == {"loss": 2.0}
    assert all_gather({"a": 1}, single) == [{"a": 1}]


def test_a_step_with_nothing_to_train_still_has_a_backward_pass_that_changes_no_gradient():
    """Under DDP every process must run the backward pass (the reduction happens in it), so a loss without gradient
    becomes differentiable through the step's anchor; the model's gradients stay untouched (None)."""

    class NothingToTrain(ToyRecipe):
        def training_step(self, model, batch):
            return {key: value.detach() for key, value in super().training_step(model, batch).items()}

    spec = toy_spec(Path("unused"))
    recipe = NothingToTrain(spec, dropout=0.0)
    step = TrainingStep(recipe, recipe.build_model())
    batch = recipe.collate([recipe.train_dataset()[(i, i)] for i in range(2)])
    terms = step(batch)
    assert terms["loss"].requires_grad and terms["loss"].item() == recipe.losses[-1]  # the value is the recipe's
    terms["loss"].backward()
    assert all(p.grad is None for p in recipe.model.parameters())
    assert step.anchor.grad == 0


def _torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(run / "checkpoints" / "last" / "model.safetensors")


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    """2 processes × batch 2 = 1 process × batch 4, with 2 micro-batches per step (DDP's no_sync on the first) and
    a layer that starts training at step 3 (``before_step``: DDP must then reduce its gradients too)."""
    run = _torchrun("--standalone", "--nproc_per_node", "2", str(HERE / "toy_recipe.py"), str(tmp_path / "ddp"),
                    "--grad-accum-steps", "2", "--unfreeze-at", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [6, 6]
    # 6 steps x 2 micro-batches x 2 = 24 samples per rank: two epochs of the 24-sample dataset, split without overlap
    seen = [{tuple(key) for key in r["seen"]} for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]
    # exact: both replicas apply the all-reduced (identical) gradients to identical weights with the same code
    assert ranks[0]["weights"] == ranks[1]["weights"]

    spec = toy_spec(tmp_path / "one", batch_size=4, max_steps=6, log_every=2, checkpoint_every=3, eval_every=3,
                    grad_accum_steps=2)
    one = ToyRecipe(spec, dropout=0.0, unfreeze_at=3)
    train(one, spec)
    assert sorted(map(tuple, one.seen)) == sorted(seen[0] | seen[1])  # rank r takes the r-th half of each batch
    # the single process sums batches of 4 where the ranks sum 2 and DDP adds their means, at another thread count:
    # weights up to 1.1 differ by ≤ 1.3e-7 seen
    for name, weight in _weights(tmp_path / "one").items():
        torch.testing.assert_close(_weights(tmp_path / "ddp")[name], weight, rtol=1e-5, atol=1e-6)
    records = {name: read_records(tmp_path / name / "metrics.jsonl") for name in ("ddp", "one")}
    assert [(r["step"], r["split"]) for r in records["ddp"]] == [(r["step"], r["split"]) for r in records["one"]]
    for ddp, single in zip(records["ddp"], records["one"]):  # logged once, by rank 0: the mean over the ranks
        for key in ("loss", "grad_norm") if ddp["split"] == "train" else ("mse",):  # not iou: exp(-loss) per batch
            assert ddp[key] == pytest.approx(single[key], rel=1e-5), (ddp["step"], key)
    assert records["ddp"][0]["samples_per_s"] == pytest.approx(8 * records["ddp"][0]["steps_per_s"])  # 2 x 2 x 2
    assert json.loads((tmp_path / "ddp" / "checkpoints" / "last" / "meta.json").read_text())["step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_processes_resume_in_one_with_the_same_global_batch(tmp_path, distributed):
    """Stopped after step 3 of 6 in 2 processes × batch 2, resumed in 1 process × batch 4: the samples of the
    uninterrupted 1 × 4 run follow, and it ends with its weights. An FSDP run's sharded checkpoint is read whole by
    the one process (DCP reshards on load); it then saves ordinary checkpoints."""
    run = _torchrun("--standalone", "--nproc_per_node", "2", str(HERE / "toy_recipe.py"), str(tmp_path / "run"),
                    "--max-steps", "3", "--distributed", distributed)
    assert run.returncode == 0, run.stderr[-3000:]
    resumed, reference = (_toy_one_by_four(tmp_path / name, max_steps=6) for name in ("run", "one"))
    for recipe in (resumed, reference):
        train(recipe, recipe.spec)
    assert resumed.seen == reference.seen[3 * 4:]  # steps 4 to 6, in order
    # the ranks' halves summed by DDP or FSDP, then one process's whole batches, against whole batches throughout
    # (another thread count too): weights up to 1.1 differ by ≤ 1.3e-7 seen
    _assert_resumed_as_uninterrupted(tmp_path / "run", tmp_path / "one")


@pytest.mark.slow
@pytest.mark.parametrize("first", ["one", "ddp"])
def test_an_ordinary_checkpoint_resumes_under_fsdp_with_the_same_global_batch(tmp_path, first):
    """Stopped after step 3 of 6 in 1 process × batch 4 (or DDP 2 × 2), resumed under FSDP in 2 × 2: every process
    reads the single-file checkpoint whole and keeps its shards of the weights and AdamW moments; the samples,
    records and weights of the uninterrupted 1 × 4 run follow."""
    if first == "one":
        stopped = _toy_one_by_four(tmp_path / "run", max_steps=3)
        train(stopped, stopped.spec)
    else:
        run = _torchrun("--standalone", "--nproc_per_node", "2", str(HERE / "toy_recipe.py"), str(tmp_path / "run"),
                        "--max-steps", "3", "--distributed", "ddp")
        assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()
    run = _torchrun("--standalone", "--nproc_per_node", "2", str(HERE / "toy_recipe.py"), str(tmp_path / "run"),
                    "--max-steps", "6", "--distributed", "fsdp")
    assert run.returncode == 0, run.stderr[-3000:]
    reference = _toy_one_by_four(tmp_path / "one", max_steps=6)
    train(reference, reference.spec)
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rank["resumed"] for rank in ranks)
    later = [list(key) for key in reference.seen[3 * 4:]]  # steps 4 to 6; rank r takes the r-th half of each batch
    assert [rank["seen"] for rank in ranks] == [[key for i, key in enumerate(later) if i % 4 // 2 == r] for r in (0, 1)]
    last = tmp_path / "run" / "checkpoints" / "last"
    assert segfit(["consolidate", str(last)]) == 0  # the FSDP run saved a sharded checkpoint
    _assert_resumed_as_uninterrupted(tmp_path / "run", tmp_path / "one")  # 1e-5, as above


def _toy_one_by_four(results_dir: Path, max_steps: int) -> ToyRecipe:
    """The toy recipe in 1 process × batch 4 with the intervals of ``toy_recipe.py``'s runs."""
    return ToyRecipe(toy_spec(results_dir, batch_size=4, max_steps=max_steps, log_every=2, checkpoint_every=3,
                              eval_every=3), dropout=0.0)


def _assert_resumed_as_uninterrupted(run: Path, reference: Path) -> None:
    """Resumed ``run`` (stopped after step 3) ended with the weights and records of ``reference`` within 1e-5, at
    the steps whose records do not depend on where the run resumed."""
    for name, weight in _weights(reference).items():
        torch.testing.assert_close(_weights(run)[name], weight, rtol=1e-5, atol=1e-6)
    records = {path: {(r["step"], r["split"]): r for r in read_records(path / "metrics.jsonl")}
               for path in (run, reference)}
    for step, split, key in [(2, "train", "loss"), (3, "val", "mse"), (6, "train", "loss"), (6, "val", "mse")]:
        assert records[run][step, split][key] == pytest.approx(records[reference][step, split][key], rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_toy(tmp_path: Path, launch: list[str], *toy: str, agents: int = 1) -> list[dict]:
    """Run the toy recipe for 6 steps under ``agents`` torchrun agents (each a "machine"); every rank's record."""
    command = [sys.executable, "-m", "torch.distributed.run", *launch, "--monitor-interval", "0.5",
               str(HERE / "toy_recipe.py"), str(tmp_path), "--checkpoint-every", "2", *toy]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]), "OMP_NUM_THREADS": "1",
           "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # a fresh store per restart (docs/distributed.md)
    machines = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(agents)]
    outputs = [machine.communicate(timeout=180)[0] for machine in machines]
    assert [m.returncode for m in machines] == [0] * agents, "".join(out[-3000:] for out in outputs)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_machines_meet_at_a_rendezvous_on_loopback(tmp_path):
    """Two torchrun agents ("machines" of one process each) at a c10d rendezvous; rank 1 has nothing to train at
    step 2 (rank 0 must not wait for it forever)."""
    launch = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "two-machines",
              "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--local-addr", "127.0.0.1"]
    ranks = _torchrun_toy(tmp_path, launch, "--no-grad-call", "1", "2", agents=2)
    assert [r["step"] for r in ranks] == [6, 6]
    keys, weights = replay_data_parallel(6, 2, skipped={(1, 2)})
    assert [r["seen"] for r in ranks] == keys
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # the replay joins the ranks' losses at this process's thread count (the ranks: 1 thread each): weights up to
    # 1.1 differ by ≤ 1.3e-7 seen
    assert ranks[0]["weights"] == pytest.approx(weights, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_a_killed_process_is_restarted_and_every_rank_resumes_from_the_same_checkpoint(tmp_path):
    """Rank 1 dies in step 5; the agent restarts both processes once (``--max-restarts 1``) and both resume from
    the step-4 checkpoint. ``_torchrun_toy`` sets TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: without it the restarted
    processes read the killed ones' addresses from the agent's store and fail to connect (``connectFullMesh ...
    Connection refused``: 3 of 3 runs on torch 2.14), before segfit runs."""
    launch = ["--standalone", "--nproc_per_node", "2", "--max-restarts", "1"]
    ranks = _torchrun_toy(tmp_path, launch, "--exit-rank", "1", "--exit-call", "5")
    assert [r["resumed"] for r in ranks] == [True, True] and [r["step"] for r in ranks] == [6, 6]
    keys, weights = replay_data_parallel(6, 2)
    for rank, record in enumerate(ranks):  # after the restart each rank saw exactly its batches of steps 5 and 6
        assert record["seen"] == keys[rank][8:]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["weights"] == pytest.approx(weights, rel=1e-5, abs=1e-6)  # as above
    records = read_records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]  # step 6 once, after the restart
