"""Mask2Former under torchrun: 2 CPU processes (gloo) train the tiny model through DDP.

Not compared with one process: its loss samples points from each process's own random stream (as Meta's and
Hugging Face's trainers do), so the draws differ from one process's (docs/distributed.md)."""

import pytest
from m2f_tiny import tiny_spec_overrides
from torchrun_train import train_under_torchrun

from segfit.engine.logging import read_records
from segfit.spec import load_spec


@pytest.mark.slow
def test_two_processes_train_mask2former(synthetic, tmp_path):
    spec = load_spec(None, tiny_spec_overrides("instance", synthetic("instance"), tmp_path / "run") + [
        "data.train.batch_size=1", "train.max_steps=3", "train.eval_every=0", "train.log_every=1",
        "train.device=cpu"])
    train_under_torchrun(spec, tmp_path)
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert records[0]["samples_per_s"] == pytest.approx(2 * records[0]["steps_per_s"])  # 2 processes x 1 image
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()
