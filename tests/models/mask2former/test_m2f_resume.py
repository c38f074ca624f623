"""Auto-resume through the engine: a run stopped at step 2 and resumed repeats the uninterrupted run's losses; TAO's
``resume_training_checkpoint_path`` continues a saved checkpoint in another results_dir the same way."""

import json
import shutil

from m2f_tiny import tiny_spec_overrides
from segfit.spec import load_spec
from segfit.tasks import train

STEPS = ["data.train.batch_size=2", "train.eval_every=0", "train.checkpoint_every=2", "train.log_every=1"]


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["split"] == "train"}


def test_resumed_run_repeats_the_uninterrupted_one(synthetic, tmp_path):
    paths = synthetic("instance")

    def spec(run, *more):
        return load_spec(None, tiny_spec_overrides("instance", paths, tmp_path / run) + STEPS + list(more))

    train.run(spec("whole", "train.max_steps=4"))
    train.run(spec("parts", "train.max_steps=2"))
    shutil.copytree(tmp_path / "parts" / "checkpoints" / "last", tmp_path / "step2")
    assert train.run(spec("parts", "train.max_steps=4"))["step"] == 4  # resumes at step 2 by itself
    train.run(spec("elsewhere", "train.max_steps=4", f"train.resume_training_checkpoint_path={tmp_path / 'step2'}"))
    expected = _losses(tmp_path / "whole")
    for run in ("parts", "elsewhere"):  # same code, numbers and shapes: exact
        assert [_losses(tmp_path / run)[s] for s in (3, 4)] == [expected[s] for s in (3, 4)], run
