"""The training loop on the toy recipe: exact resume, best/last selection, accumulation, precision, failures."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import shutil
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import safetensors.torch
import torch

from segfit.engine import checkpoint, storage, trainer
from segfit.engine.evaluation import evaluate
from segfit.engine.logging import read_records
from segfit.engine.sampler import MixedBatchSampler
from segfit.engine.storage import StorageError
from segfit.engine.trainer import train
from segfit.engine.transfer import to_device
from segfit.spec.schema import OptimSpec

sys.path.insert(0, str(Path(__file__).parent))  # the toy recipe sits next to the tests
from toy_recipe import ToyRecipe, toy_spec  # noqa: E402


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """Drawing PNGs takes most of a toy run's time; test_logging.py checks the plots."""
    monkeypatch.setattr(trainer, "render_plots", lambda results_dir: [])


def _weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run_dir / "checkpoints" / which / "model.safetensors"))


def _train_losses(run_dir: Path) -> dict[int, float]:
    records = [r for r in read_records(run_dir / "metrics.jsonl") if r["split"] == "train"]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicated steps in metrics.jsonl: {steps}"
    return {r["step"]: r["loss"] for r in records}


MIX = [("photos", 24, 2, 1.0), ("clips", 8, 1, 2.5)]
"""Two training datasets at their own batch sizes, one repeated (``ToyRecipe(mix=...)``)."""

RESUME_CASES = {
    "plain": dict(),
    "mixed": dict(),
    "accum2-cosine-warmup-workers": dict(
        grad_accum_steps=2, optim=OptimSpec(base_lr=0.05, scheduler="cosine", warmup_steps=2, min_lr_ratio=0.1)
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resumed_run_continues_exactly_like_an_uninterrupted_one(tmp_path, case):
    overrides = RESUME_CASES[case]
    workers = 1 if "workers" in case else 0
    full_dir, split_dir = tmp_path / "full", tmp_path / "split"

    def spec(run_dir: Path, max_steps: int):
        s = toy_spec(run_dir, max_steps=max_steps, checkpoint_every=3, eval_every=2, **overrides)
        return dataclasses.replace(s, data=dataclasses.replace(s.data, num_workers=workers))

    mix = MIX if case == "mixed" else None
    full = ToyRecipe(spec(full_dir, 6), mix=mix)
    train(full, spec(full_dir, 6))
    # The first half runs with max_steps=3, so its end-of-run evaluation happens at step 3, where the full run
    # evaluates nothing; the resumed half must still continue exactly.
    first = ToyRecipe(spec(split_dir, 3), mix=mix)
    assert train(first, spec(split_dir, 3))["step"] == 3
    resumed = ToyRecipe(spec(split_dir, 6), mix=mix)
    summary = train(resumed, spec(split_dir, 6))

    assert summary["step"] == 6
    per_step = len(resumed.losses) // 3
    assert len(resumed.losses) == 3 * per_step and per_step == overrides.get("grad_accum_steps", 1)
    assert resumed.losses == full.losses[-3 * per_step :]  # bit-exact (same code and process), dropout included
    assert resumed.seen == full.seen[len(first.seen) :]
    assert _train_losses(split_dir) == _train_losses(full_dir)
    full_weights, split_weights = _weights(full_dir), _weights(split_dir)
    assert full_weights.keys() == split_weights.keys()
    for key in full_weights:
        torch.testing.assert_close(split_weights[key], full_weights[key], rtol=0, atol=0)
    lrs = [(r["step"], r["lr/head"]) for r in read_records(split_dir / "metrics.jsonl") if r["split"] == "train"]
    assert lrs == [(r["step"], r["lr/head"]) for r in read_records(full_dir / "metrics.jsonl") if r["split"] == "train"]


def test_mixed_datasets_log_their_sample_counts_and_phases_evaluate(tmp_path):
    spec = toy_spec(tmp_path, max_steps=30, log_every=5, phases_per_epoch=2)
    recipe = ToyRecipe(spec, mix=MIX)
    train(recipe, spec)
    # what the run should have done, from the sampler alone: its batches' datasets and its phase ends
    plan = MixedBatchSampler(recipe.train_dataset(), spec.train.seed, phases_per_epoch=2)
    sources, phase_ends = [], []
    for step in range(1, 31):
        sources.append(plan.next_source().name)
        before = plan.phases_done
        plan.advance()
        if plan.phases_done > before:
            phase_ends.append(step)
    records = read_records(tmp_path / "metrics.jsonl")
    train_records = [r for r in records if r["split"] == "train"]
    assert sum(r.get("samples/photos", 0) for r in train_records) == 2 * sources.count("photos")
    assert sum(r.get("samples/clips", 0) for r in train_records) == sources.count("clips") > 0
    assert len(recipe.seen) == 2 * sources.count("photos") + sources.count("clips")
    assert phase_ends  # an epoch is 28 to 36 batches (12 of photos, 16 to 24 of clips): phases of 14 to 18
    assert [r["step"] for r in records if r["split"] == "val"] == sorted({*phase_ends, 30})
    assert train_records[-1]["epoch"] == pytest.approx(plan.epochs_done)


def test_resume_off_starts_over_and_drops_the_old_best(tmp_path):
    train(ToyRecipe(toy_spec(tmp_path, max_steps=3)), toy_spec(tmp_path, max_steps=3))
    assert (tmp_path / "checkpoints" / "best").is_dir()
    again = toy_spec(tmp_path, max_steps=2, resume=False, val=False)
    recipe = ToyRecipe(again)
    summary = train(recipe, again)
    assert summary["step"] == 2 and len(recipe.losses) == 2 and summary["best_checkpoint"] is None
    assert sorted(_train_losses(tmp_path)) == [1, 2]
    assert json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())["step"] == 2


@pytest.mark.parametrize(
    ("mode", "values", "best_step", "best_value"),
    [("max", [0.3, 0.7, 0.5], 4, 0.7), ("min", [0.3, 0.7, 0.5], 2, 0.3), ("min", [0.9, 0.7, 0.5], 6, 0.5)],
)
def test_best_checkpoint_follows_the_metric_and_last_the_end(tmp_path, mode, values, best_step, best_value):
    spec = toy_spec(tmp_path, max_steps=6, eval_every=2, checkpoint_every=4, best_mode=mode, best_metric="score")
    summary = train(ToyRecipe(spec, eval_values=values), spec)

    best_meta = json.loads((tmp_path / "checkpoints" / "best" / "meta.json").read_text())
    last_meta = json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())
    assert (best_meta["step"], best_meta["best"], best_meta["metrics"]["score"]) == (best_step, best_value, best_value)
    assert (last_meta["step"], last_meta["best"], last_meta["best_metric"]) == (6, best_value, "score")
    assert summary["best"] == best_value and summary["best_checkpoint"].endswith("best")
    val = [(r["step"], r["score"]) for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "val"]
    assert val == [(2, values[0]), (4, values[1]), (6, values[2])]


def test_unknown_best_metric_names_the_key_and_the_metrics(tmp_path):
    spec = toy_spec(tmp_path, max_steps=1, best_metric="miou")
    with pytest.raises(KeyError, match=r"train.best_metric: 'miou'.*\['mse', 'score'\]"):
        train(ToyRecipe(spec), spec)


def test_evaluation_runs_in_eval_mode_and_training_in_train_mode(tmp_path):
    spec = toy_spec(tmp_path, max_steps=4, eval_every=2)
    recipe = ToyRecipe(spec)
    train(recipe, spec)
    assert recipe.eval_modes == [False, False]
    assert recipe.model.training
    assert (tmp_path / "samples" / "step_000002" / "overlay.txt").is_file()


def test_evaluate_is_deterministic_in_eval_mode_and_leaves_training_state_alone(tmp_path):
    recipe = ToyRecipe(toy_spec(tmp_path))
    model = recipe.build_model().train()
    torch.manual_seed(1)
    first = evaluate(recipe, model, tmp_path / "a", seed=5)
    after_first = torch.rand(2)
    torch.manual_seed(1)
    torch.rand(3)  # a different outer stream must not change the metrics
    second = evaluate(recipe, model, tmp_path / "b", seed=5)
    assert first == second and first != evaluate(recipe, model, tmp_path / "c", seed=6)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(2), after_first)  # evaluation did not advance the training stream
    assert recipe.eval_modes == [False, False, False] and model.training
    assert all(p.grad is None for p in model.parameters())


def test_gradient_accumulation_matches_one_larger_batch(tmp_path):
    # The sample stream does not depend on the batch size, so 2 accumulated batches of 1 see the samples of one
    # batch of 2; with mean-reduced losses the gradients agree (dropout off: its draws depend on the shape).
    big = toy_spec(tmp_path / "big", batch_size=2, max_steps=3, val=False)
    small = toy_spec(tmp_path / "small", batch_size=1, max_steps=3, val=False, grad_accum_steps=2)
    big_recipe, small_recipe = ToyRecipe(big, dropout=0.0), ToyRecipe(small, dropout=0.0)
    train(big_recipe, big)
    train(small_recipe, small)
    assert big_recipe.seen == small_recipe.seen
    big_w, small_w = _weights(tmp_path / "big"), _weights(tmp_path / "small")
    for key in big_w:  # batches of 1 summed vs one batch of 2: other float sums (≤ 6e-8 seen on weights up to 0.6)
        torch.testing.assert_close(small_w[key], big_w[key], rtol=1e-5, atol=1e-6)
    # the logged loss is the mean over the micro-batches, i.e. the loss of the whole batch; AdamW hides the scale
    # of the gradient from the weights, the logged gradient norm does not
    big_records, small_records = (read_records(tmp_path / name / "metrics.jsonl") for name in ("big", "small"))
    for big_record, small_record in zip(big_records, small_records, strict=True):
        assert small_record["loss"] == pytest.approx(big_record["loss"], rel=1e-5)
        assert small_record["grad_norm"] == pytest.approx(big_record["grad_norm"], rel=1e-5)


def test_bf16_autocast_runs_on_cpu(tmp_path):
    spec = toy_spec(tmp_path, max_steps=2, precision="bf16", val=False)
    recipe = ToyRecipe(spec)
    summary = train(recipe, spec)
    assert recipe.output_dtypes == [torch.bfloat16, torch.bfloat16]
    assert torch.isfinite(torch.tensor(summary["train"]["loss"]))
    assert all(w.dtype == torch.float32 for w in _weights(tmp_path).values())  # master weights stay fp32


def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    spec = toy_spec(tmp_path, precision="fp16")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device.*bf16"):
        train(ToyRecipe(spec), spec)


def test_non_finite_loss_raises_naming_the_step_terms_and_files(tmp_path):
    spec = toy_spec(tmp_path, max_steps=4, grad_accum_steps=2)
    recipe = ToyRecipe(spec, nan_at_call=3)
    with pytest.raises(FloatingPointError, match=r"step 2: the loss is not finite \(loss=nan, iou=") as error:
        train(recipe, spec)
    bad_batch = recipe.seen[4:6]  # call 3 = the first micro-batch of step 2
    assert f"files: sample_{bad_batch[0][0]}.txt, sample_{bad_batch[1][0]}.txt" in str(error.value)


def test_skip_leaves_weights_and_optimizer_state_as_they_were(tmp_path):
    """Two good steps, then a NaN one skipped: weights and AdamW state equal a run stopped after the two."""
    two = ToyRecipe(toy_spec(tmp_path / "two", max_steps=2, on_nonfinite="skip"))
    train(two, two.spec)
    three = ToyRecipe(toy_spec(tmp_path / "three", max_steps=3, on_nonfinite="skip"), nan_at_call=3)
    with pytest.warns(RuntimeWarning, match=r"skipped 1 step\(s\) whose loss was not finite \(3\); first: step 3: "
                                            r"the loss is not finite \(loss=nan.*files: sample_\d+.txt, sample_\d+.txt"):
        train(three, three.spec)
    for name, weights in two.model.state_dict().items():
        assert torch.equal(three.model.state_dict()[name], weights), name
    states = [torch.load(run / "checkpoints/last/trainer_state.pt", weights_only=True)["optimizer"]["state"]
              for run in (tmp_path / "two", tmp_path / "three")]
    for key, state in states[0].items():
        assert all(torch.equal(states[1][key][k], v) for k, v in state.items()), key


def test_skipped_steps_are_counted_in_the_records_and_kept_out_of_the_means(tmp_path):
    spec = toy_spec(tmp_path, max_steps=4, log_every=2, on_nonfinite="skip")
    with pytest.warns(RuntimeWarning, match="skipped 1 step"):
        train(ToyRecipe(spec, nan_at_call=3), spec)
    records = [r for r in read_records(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["skipped_steps"] for r in records] == [0, 1]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in records)


def test_an_unwritable_or_full_results_dir_stops_before_the_first_step(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    spec = toy_spec(tmp_path / "a_file" / "run", max_steps=2)
    recipe = ToyRecipe(spec)
    with pytest.raises(StorageError, match=r"results_dir .*a_file/run is not writable"):
        train(recipe, spec)
    spec = toy_spec(tmp_path / "run", max_steps=2)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 2**19))
    with pytest.raises(StorageError, match=r"run: 0.5 MiB free, but one checkpoint of this model takes about 1.0 MiB"):
        train(recipe, spec)
    assert recipe.losses == []


def test_a_failed_checkpoint_write_stops_the_run_and_keeps_the_last_one(tmp_path, monkeypatch):
    spec = toy_spec(tmp_path, max_steps=4, checkpoint_every=2, eval_every=0)
    saves = []

    def fail_second(obj, file):
        saves.append(file)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        torch_save(obj, file)

    torch_save = torch.save
    monkeypatch.setattr(checkpoint.torch, "save", fail_second)
    with pytest.raises(StorageError, match=r"at step 4 failed .*the previous checkpoint there \(step 2\) is intact"):
        train(ToyRecipe(spec), spec)
    assert json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())["step"] == 2


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the skipped first step
def test_a_batch_with_nothing_to_train_is_stepped_over(tmp_path):
    """A loss without gradient (e.g. a video clip whose every frame is given as a mask) does not stop the run."""

    class NothingToTrainFirst(ToyRecipe):
        def training_step(self, model, batch):
            terms = super().training_step(model, batch)
            return {key: value.detach() for key, value in terms.items()} if len(self.losses) == 1 else terms

    spec = toy_spec(tmp_path, max_steps=3)
    assert train(NothingToTrainFirst(spec), spec)["step"] == 3


def test_no_checkpoint_is_written_after_a_non_finite_step(tmp_path):
    spec = toy_spec(tmp_path, max_steps=4, checkpoint_every=1, log_every=10, eval_every=0)
    with pytest.raises(FloatingPointError, match="step 3: the loss is not finite"):
        train(ToyRecipe(spec, nan_at_call=3), spec)
    state = json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())
    assert state["step"] == 2


def test_compile_asks_the_recipe(tmp_path):
    spec = toy_spec(tmp_path, max_steps=2, compile=True)
    recipe = ToyRecipe(spec)
    train(recipe, spec)
    assert recipe.compiled


def test_auto_loader_workers_leave_a_core_to_each_training_process(monkeypatch):
    monkeypatch.setattr(trainer.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert trainer.loader_workers("auto") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert trainer.loader_workers("auto") == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert trainer.loader_workers("auto") == 1
    assert trainer.loader_workers(0) == 0


def test_gpu_memory_is_recorded_only_on_cuda():
    assert trainer.peak_gpu_memory(torch.device("cpu")) == {}


def test_invalid_intervals_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="train.grad_accum_steps: 0 must be at least 1"):
        train(ToyRecipe(toy_spec(tmp_path)), toy_spec(tmp_path, grad_accum_steps=0))


def test_to_device_keeps_container_types():
    Pair = namedtuple("Pair", "a b")

    @dataclasses.dataclass
    class Batch:
        images: torch.Tensor
        meta: dict

    batch = {"x": [Pair(torch.ones(1), "name")], "b": Batch(torch.zeros(2), {"t": (torch.ones(3), 4)})}
    moved = to_device(batch, torch.device("cpu"))
    assert isinstance(moved["x"][0], Pair) and moved["x"][0].b == "name"
    assert isinstance(moved["b"], Batch) and isinstance(moved["b"].meta["t"], tuple)
    assert torch.equal(moved["b"].meta["t"][0], torch.ones(3))

