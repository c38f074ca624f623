"""FSDP (``train.distributed: fsdp``) on the toy recipe in 2 CPU processes under torchrun (gloo): it trains as one
process with the whole batch, its sharded checkpoint resumes exactly, and ``segfit consolidate`` joins the shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

from segfit.cli import main as segfit
from segfit.engine.checkpoint import find_checkpoint
from segfit.engine.logging import read_records
from segfit.engine.sharded_checkpoint import _by_name
from segfit.engine.trainer import train
from segfit.tasks.common import weights_for

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
sys.path.insert(0, str(HERE))  # the toy recipe sits next to the tests
from toy_recipe import DIM, ToyModel, ToyRecipe, toy_spec  # noqa: E402


def _fsdp_toy(results_dir: Path, max_steps: int) -> None:
    """The toy recipe for ``max_steps`` steps in 2 FSDP processes × batch 2, 2 micro-batches per step."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(HERE / "toy_recipe.py"), str(results_dir), "--distributed", "fsdp",
                          "--grad-accum-steps", "2", "--max-steps", str(max_steps)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]


def _consolidated(results_dir: Path) -> dict[str, torch.Tensor]:
    last = results_dir / "checkpoints" / "last"
    assert segfit(["consolidate", str(last)]) == 0
    return safetensors.torch.load_file(last / "model.safetensors")


@pytest.mark.slow
def test_fsdp_trains_as_one_process_and_resumes_its_sharded_checkpoint_exactly(tmp_path):
    _fsdp_toy(tmp_path / "fsdp", 6)
    last = tmp_path / "fsdp" / "checkpoints" / "last"
    # each process wrote its shards, rank 0 the index; no single-file weights until consolidated
    assert sorted(p.name for p in (last / "sharded").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (last / "model.safetensors").exists() and find_checkpoint(tmp_path / "fsdp", "last") == last
    assert json.loads((last / "meta.json").read_text())["weights"] == "sharded"

    # stopped after step 3 (its checkpoint), then the same command with 6 steps resumes from it
    _fsdp_toy(tmp_path / "resumed", 3)
    _fsdp_toy(tmp_path / "resumed", 6)
    # exact: the same processes run the same code on the same shapes from the restored shards, RNG and sampler
    records = {name: read_records(tmp_path / name / "metrics.jsonl") for name in ("fsdp", "resumed")}
    timing = ("time", "steps_per_s", "samples_per_s", "data_s")
    end = [[{k: v for k, v in r.items() if k not in timing} for r in records[name] if r["step"] == 6]
           for name in ("fsdp", "resumed")]  # step 6: the train record of steps 5-6 and the validation
    assert len(end[0]) == 2 and end[0] == end[1]
    weights = {name: _consolidated(tmp_path / name) for name in ("fsdp", "resumed")}
    assert weights["fsdp"].keys() == weights["resumed"].keys()
    for key, value in weights["fsdp"].items():
        assert torch.equal(weights["resumed"][key], value), key

    spec = toy_spec(tmp_path / "one", batch_size=4, max_steps=6, log_every=2, checkpoint_every=3, eval_every=3,
                    grad_accum_steps=2)
    train(ToyRecipe(spec, dropout=0.0), spec)
    one = safetensors.torch.load_file(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors")
    assert one.keys() == weights["fsdp"].keys()  # the frozen layer too: FSDP checkpoints hold the whole model
    # the ranks' reduce-scatter sums batches of 2 where one process sums 4, at another thread count: weights up to
    # 1.1 differ by ≤ 1.3e-7 (as for DDP, test_distributed.py)
    for key, value in one.items():
        torch.testing.assert_close(weights["fsdp"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for fsdp, single in zip(records["fsdp"], read_records(tmp_path / "one" / "metrics.jsonl")):
        for key in ("loss", "grad_norm") if fsdp["split"] == "train" else ("mse",):
            assert fsdp[key] == pytest.approx(single[key], rel=1e-5), (fsdp["step"], key)


def test_consolidate_refuses_what_is_not_a_sharded_checkpoint(tmp_path, capsys):
    spec = toy_spec(tmp_path, max_steps=1)
    train(ToyRecipe(spec), spec)
    assert segfit(["consolidate", str(tmp_path / "checkpoints" / "last")]) == 2
    assert "not a sharded checkpoint (no sharded/.metadata in it)" in capsys.readouterr().err


def test_a_sharded_checkpoint_needs_consolidating_before_evaluation(tmp_path):
    """What a task that reads weights says about an FSDP checkpoint (its shards faked by one process's DCP save,
    which writes the same layout)."""
    last = tmp_path / "checkpoints" / "last"
    (last / "sharded").mkdir(parents=True)
    dcp.save({"model": {"w": torch.zeros(2)}}, checkpoint_id=str(last / "sharded"), no_dist=True)
    (last / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=f"segfit consolidate {last}` writes the model.safetensors"):
        weights_for(toy_spec(tmp_path), None)


def test_an_ordinary_optimizer_state_is_keyed_by_parameter_name_as_torch_keys_it():
    """What an FSDP run resuming from an ordinary checkpoint hands ``set_state_dict``: the positions of
    ``optimizer.state_dict()`` as the names ``get_optimizer_state_dict`` gives (the head in a group of its own, a
    frozen layer outside the optimizer); other parameter groups stop with what to do."""
    model = ToyModel(dropout=0.0)
    optimizer = torch.optim.AdamW([{"params": [model.fc.weight, model.pos_embed]},
                                   {"params": list(model.head.parameters())}])
    model(torch.randn(3, DIM)).sum().backward()
    optimizer.step()
    assert _by_name(model, optimizer, optimizer.state_dict()) == get_optimizer_state_dict(model, optimizer)
    other = torch.optim.AdamW([{"params": [model.fc.weight]}, {"params": list(model.head.parameters())}])
    with pytest.raises(ValueError, match=r"parameter groups of \[2, 2\] parameters, this run's \[1, 2\]: resume with"):
        _by_name(model, other, optimizer.state_dict())
