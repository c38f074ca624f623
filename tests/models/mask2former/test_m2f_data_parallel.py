"""Mask2Former under torchrun: 2 CPU processes (gloo) train the tiny model through DDP or FSDP.

Not compared with one process: its loss samples points from each process's own random stream (as Meta's and
Hugging Face's trainers do), so the draws differ from one process's (docs/distributed.md)."""

import pytest
from m2f_tiny import tiny_spec_overrides
from torchrun_train import train_under_torchrun

from segfit.engine.logging import read_records
from segfit.spec import load_spec


@pytest.mark.slow
@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_processes_train_mask2former(synthetic, tmp_path, distributed):
    """DDP, and FSDP with the Swin blocks and decoder layers as units, validating sharded at the end."""
    spec = load_spec(None, tiny_spec_overrides("instance", synthetic("instance"), tmp_path / "run") + [
        "data.train.batch_size=1", "train.max_steps=3", f"train.eval_every={3 if distributed == 'fsdp' else 0}",
        "train.log_every=1", "train.device=cpu", f"train.distributed={distributed}"])
    train_under_torchrun(spec, tmp_path)
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert records[0]["samples_per_s"] == pytest.approx(2 * records[0]["steps_per_s"])  # 2 processes x 1 image
    last = tmp_path / "run" / "checkpoints" / "last"
    if distributed == "ddp":
        assert (last / "model.safetensors").is_file()
    else:  # each process's shards; the validation's images split between the processes and counted once
        assert (last / "sharded" / "__1_0.distcp").is_file() and not (last / "model.safetensors").exists()
        assert [r["num_images"] for r in records if r["split"] == "val"] == [2]
