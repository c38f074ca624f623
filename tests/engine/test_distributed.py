"""Device choice, single-process no-ops, and a real 2-process CPU run under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segfit.engine import distributed
from segfit.engine.checkpoint import seed_everything
from segfit.engine.distributed import Dist, all_gather, all_reduce_mean, average_gradients, resolve_device
from segfit.engine.logging import read_records
from segfit.engine.optim import build_optimizer

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
sys.path.insert(0, str(HERE))  # the toy recipe sits next to the tests
from toy_recipe import ToyRecipe, toy_spec  # noqa: E402


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
    model = torch.nn.Linear(2, 2)
    model(torch.ones(1, 2)).sum().backward()
    grad = model.weight.grad.clone()
    single = Dist()
    assert single.is_main and not single.active
    average_gradients(list(model.parameters()), single)
    assert torch.equal(model.weight.grad, grad)
    assert all_reduce_mean({"loss": 2.0}, torch.device("cpu"), single) == {"loss": 2.0}
    assert all_gather({"a": 1}, single) == [{"a": 1}]


def test_gradient_buckets_keep_order_and_split_by_dtype_and_size(monkeypatch):
    monkeypatch.setattr(distributed, "BUCKET_ELEMENTS", 10)
    tensors = [torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(2, dtype=torch.float16), torch.zeros(12)]
    buckets = distributed._buckets(tensors)
    assert [[t.numel() for t in b] for b in buckets] == [[4, 4], [4], [2], [12]]
    assert [t for b in buckets for t in b] == tensors


def _replay(ranks: list[dict], steps: int) -> list[float]:
    """The reference for data parallelism: one process whose step-s batch is every rank's step-s batch (equal
    sizes, mean-reduced losses: the mean of the ranks' gradients is the gradient of the joined batch)."""
    spec = toy_spec(Path("unused"))
    recipe = ToyRecipe(spec, dropout=0.0)
    seed_everything(spec.train.seed)  # rank 0's initialisation, which the engine broadcasts
    model = recipe.build_model()
    optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
    dataset = recipe.train_dataset()
    per_step = spec.data.batch_size
    for s in range(steps):
        keys = [tuple(k) for r in ranks for k in r["seen"][s * per_step : (s + 1) * per_step]]
        batch = recipe.collate([dataset[k] for k in keys])
        recipe.training_step(model, batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


@pytest.mark.slow
def test_two_process_cpu_run_under_torchrun(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "toy_recipe.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [6, 6]
    # 6 steps x batch 2 = 12 samples per rank: one epoch of the 24-sample dataset, split without overlap
    seen = [{index for index, _ in r["seen"]} for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 12 and not seen[0] & seen[1]
    # exact: both replicas apply the all-reduced (identical) gradients to identical weights with the same code
    assert ranks[0]["weights"] == ranks[1]["weights"]  # same start, averaged gradients: the replicas agree
    # the replay joins the ranks' batches and runs at this process's thread count (the ranks: 1 thread each), so
    # its sums run in another order: weights up to 1.1 differ by ≤ 1.3e-7 seen
    assert ranks[0]["weights"] == pytest.approx(_replay(ranks, 6), rel=1e-5, abs=1e-6)
    records = read_records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]  # logged once, by rank 0
    assert records[0]["samples_per_s"] == pytest.approx(4 * records[0]["steps_per_s"])  # 2 ranks x batch 2
    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())["step"] == 6
