"""SiamBAN under torchrun: 2 CPU processes (gloo) train the tiny model through DDP, its backbone unfreezing at
step 2 (the step is wrapped in DDP again then).

Not compared with one process: its BatchNorm layers normalise with each process's batch (as the reference trainer
does), so 2 × 2 pairs are not 1 × 4 (docs/distributed.md)."""

import pytest
from siamban_specs import tiny_spec
from torchrun_train import train_under_torchrun

from segfit.engine.logging import read_records


@pytest.mark.slow
def test_two_processes_train_siamban_through_the_backbone_unfreezing(tracking_data, tmp_path):
    spec = tiny_spec(tracking_data, tmp_path / "run", "data.batch_size=2", "train.max_steps=3",
                     "train.checkpoint_every=3")
    output = train_under_torchrun(spec, tmp_path)
    assert output.count("step 2: backbone layers") == 2  # on each process
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert records[0]["samples_per_s"] == pytest.approx(4 * records[0]["steps_per_s"])  # 2 processes x 2 pairs
    assert all(r["samples/train0"] == 4 for r in records if r["split"] == "train")  # every process's pairs counted
