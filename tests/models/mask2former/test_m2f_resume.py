"""Auto-resume through the engine: a run stopped at step 2 and resumed repeats the uninterrupted run's losses."""

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
    whole = tiny_spec_overrides("instance", paths, tmp_path / "whole") + STEPS
    train.run(load_spec(None, whole + ["train.max_steps=4"]))
    parts = tiny_spec_overrides("instance", paths, tmp_path / "parts") + STEPS
    train.run(load_spec(None, parts + ["train.max_steps=2"]))
    summary = train.run(load_spec(None, parts + ["train.max_steps=4"]))  # resumes at step 2
    assert summary["step"] == 4
    expected, resumed = _losses(tmp_path / "whole"), _losses(tmp_path / "parts")
    assert [resumed[s] for s in (3, 4)] == [expected[s] for s in (3, 4)]  # same code, numbers and shapes: exact
    shutil.rmtree(tmp_path)
