"""One record, many views: metrics.jsonl, results.csv, TensorBoard and the plots agree; resumed runs don't repeat."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segfit.engine import plots, trainer
from segfit.engine.logging import RunLog, read_records, strict_json
from segfit.engine.plots import render_plots
from segfit.engine.trainer import train

sys.path.insert(0, str(Path(__file__).parent))  # the toy recipe sits next to the tests
from toy_recipe import ToyRecipe, toy_spec  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tensorboard(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv(run_dir) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_run_writes_agreeing_records_and_plots_and_a_resume_appends_without_duplicates(tmp_path, monkeypatch):
    spec = toy_spec(tmp_path, max_steps=4, log_every=2, eval_every=2, checkpoint_every=2)
    with monkeypatch.context() as patch:  # plots are drawn from the whole file by the second run; save time here
        patch.setattr(trainer, "render_plots", lambda results_dir: [])
        train(ToyRecipe(spec), spec)
    # an interrupted run that got further than its last checkpoint: step 6 was logged, the checkpoint is at 4
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 6, "split": "train", "loss": 123.0}) + "\n")
    spec = toy_spec(tmp_path, max_steps=8, log_every=2, eval_every=2, checkpoint_every=2)
    train(ToyRecipe(spec), spec)

    records = read_records(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records] == [
        (s, split) for s in (2, 4, 6, 8) for split in ("train", "val")
    ]
    assert all(r["loss"] != 123.0 for r in records if r["split"] == "train")
    train_record = records[0]
    assert set(train_record) == {"step", "split", "lr/body", "lr/head", "loss", "iou", "grad_norm", "data_s",
                                 "steps_per_s", "samples_per_s", "epoch", "time"}  # + gpu_mem on CUDA
    assert 0 <= train_record["data_s"] < 1 / train_record["steps_per_s"]  # waiting for data is part of a step
    assert train_record["lr/head"] == pytest.approx(2 * train_record["lr/body"])
    assert train_record["samples_per_s"] == pytest.approx(2 * train_record["steps_per_s"])
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)  # time continues across the resume

    rows = _csv(tmp_path)
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        for key, value in record.items():
            assert row[key] == str(value)
        assert all(row[key] == "" for key in row if key not in record)

    scalars = _tensorboard(tmp_path)
    for key in ("loss", "lr/body", "grad_norm"):
        assert scalars[f"train/{key}"] == [(r["step"], pytest.approx(r[key])) for r in records if r["split"] == "train"]
    assert scalars["val/score"] == [(r["step"], pytest.approx(r["score"])) for r in records if r["split"] == "val"]

    for name in ("loss.png", "metrics.png", "lr.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_SIGNATURE


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_figures_without_a_value_are_written_as_null_and_drawn_as_gaps(tmp_path):
    """NaN (the IoU of a class absent from a split) is not JSON: strict parsers must read every line."""
    with RunLog(tmp_path, start_step=0, max_steps=2) as log:
        log.log({"step": 1, "split": "val", "miou": 0.5, "iou/cat": float("nan"), "iou/dog": float("inf")})
        log.log({"step": 2, "split": "val", "miou": 0.75, "iou/cat": 0.25, "iou/dog": 1.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0], parse_constant=_reject_constant)
    assert first["iou/cat"] is None and first["iou/dog"] is None and first["miou"] == 0.5
    assert strict_json({"a": [float("nan"), 1.0]}) == '{"a": [null, 1.0]}'
    render_plots(tmp_path)
    assert (tmp_path / "plots" / "metrics.png").read_bytes()[:8] == PNG_SIGNATURE


def test_csv_is_rewritten_when_a_record_brings_new_columns(tmp_path):
    with RunLog(tmp_path, start_step=0, max_steps=3) as log:
        log.log({"step": 1, "split": "train", "loss": 1.0})
        log.log({"step": 2, "split": "train", "loss": 0.5})
        log.log({"step": 2, "split": "val", "miou": 0.25})
        log.log({"step": 3, "split": "train", "loss": 0.75})
    assert _csv(tmp_path) == [
        {"step": "1", "split": "train", "loss": "1.0", "miou": ""},
        {"step": "2", "split": "train", "loss": "0.5", "miou": ""},
        {"step": "2", "split": "val", "loss": "", "miou": "0.25"},
        {"step": "3", "split": "train", "loss": "0.75", "miou": ""},
    ]


def test_disabled_log_writes_nothing(tmp_path):
    with RunLog(tmp_path / "run", start_step=0, max_steps=3, enabled=False) as log:
        log.log({"step": 1, "split": "train", "loss": 1.0})
        log.advance()
    assert not (tmp_path / "run").exists()


def test_read_records_skips_a_cut_off_last_line_but_not_a_broken_middle_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "spl')
    assert read_records(path) == [{"step": 1, "split": "train"}]
    path.write_text('{"step": 1, "spl\n{"step": 2, "split": "train"}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:1: not a JSON record"):
        read_records(path)


def test_plots_need_data_and_put_each_term_in_its_own_panel(tmp_path):
    assert render_plots(tmp_path) == []
    with RunLog(tmp_path, start_step=0, max_steps=2) as log:
        log.log({"step": 1, "split": "train", "lr/base": 1e-3, "loss": 1.0, "dice": 0.5, "time": 0.1})
        log.log({"step": 2, "split": "train", "lr/base": 1e-3, "loss": 0.8, "dice": 0.4, "time": 0.2})
    assert render_plots(tmp_path) == [tmp_path / "plots" / "loss.png", tmp_path / "plots" / "lr.png"]


def test_metrics_plot_draws_metrics_not_counts(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "_draw", lambda path, series, *args: drawn.update({path.name: list(series)}))
    with RunLog(tmp_path, start_step=0, max_steps=2) as log:
        log.log({"step": 1, "split": "train", "loss": 1.0, "time": 0.1})
        for step, miou in ((1, 0.25), (2, 0.5)):
            log.log({"step": step, "split": "val", "miou@1": miou, "noc@85": 3.0, "num_images": 4, "num_objects": 9,
                     "skipped_images": 0, "time": 0.2})
    render_plots(tmp_path)
    assert drawn["metrics.png"] == ["miou@1", "noc@85"]
    assert read_records(tmp_path / "metrics.jsonl")[-1]["num_objects"] == 9  # counts stay in the log


def test_a_run_can_validate_its_starting_weights_and_ends_with_its_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer, "render_plots", lambda results_dir: [])
    spec = toy_spec(tmp_path, max_steps=4, eval_every=2, eval_at_start=True)
    train(ToyRecipe(spec, eval_values=[0.1, 0.5, 0.3]), spec)
    assert [(r["step"], r["score"]) for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "val"] == [
        (0, 0.1), (2, 0.5), (4, 0.3)]
    assert "val score: 0.100 at step 0 → 0.300 at step 4 (best 0.500 at step 2)" in capsys.readouterr().out
    assert (tmp_path / "samples" / "step_000000" / "overlay.txt").is_file()
    assert json.loads((tmp_path / "checkpoints" / "best" / "meta.json").read_text())["step"] == 2

    spec = toy_spec(tmp_path, max_steps=2, eval_every=2, eval_at_start=True, resume=False)  # afresh: new baseline
    train(ToyRecipe(spec, eval_values=[0.2, 0.4]), spec)
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "val"] == [0, 2]
