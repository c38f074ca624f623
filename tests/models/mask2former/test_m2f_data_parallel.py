"""Mask2Former under torchrun: 2 CPU processes (gloo) train the tiny model through DDP or FSDP, and 2 processes × 1
image train as 1 process × 2 images (each image draws its loss's points from its own seed; the mask count and the
class loss's weights are the global batch's)."""

import pytest
from m2f_tiny import tiny_spec_overrides
from torchrun_train import assert_same_training, train_under_torchrun

from segfit.engine.logging import read_records
from segfit.engine.trainer import train
from segfit.registry import recipe_for
from segfit.spec import load_spec

TRAIN = ["train.max_steps=3", "train.log_every=1", "train.device=cpu"]
NOISE_ONLY = tuple(f"model.pixel_level_module.decoder.input_projections.{level}.0.bias" for level in range(3))


@pytest.mark.slow
@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_processes_train_mask2former(synthetic, tmp_path, distributed):
    """DDP, and FSDP with the Swin blocks and decoder layers as units, validating sharded at the end."""
    spec = load_spec(None, tiny_spec_overrides("instance", synthetic("instance"), tmp_path / "run") + [
        *TRAIN, "data.train.batch_size=1", f"train.eval_every={3 if distributed == 'fsdp' else 0}",
        f"train.distributed={distributed}"])
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


@pytest.mark.slow
def test_two_processes_train_mask2former_as_one_with_twice_the_batch(synthetic, tmp_path):
    def spec(name: str, batch_size: int):
        return load_spec(None, tiny_spec_overrides("instance", synthetic("instance"), tmp_path / name) + [
            *TRAIN, f"data.train.batch_size={batch_size}", "train.eval_every=0"])

    train_under_torchrun(spec("ddp", 1), tmp_path)
    one = spec("one", 2)
    train(recipe_for(one), one)
    # 1 image per process against 2 in one, at another thread count (other kernels, other float sums): losses
    # differ by ≤ 2.2e-7 relative, weights by ≤ 2.3e-7 (seen).
    # The input projections' conv biases feed a GroupNorm of one channel per group, which removes them: their
    # gradients are rounding noise (≤ 5e-8, their weights' ≥ 0.2), and AdamW's steps on it differ (weights of 3e-6
    # by 1.7e-6 seen).
    assert_same_training(tmp_path / "ddp", tmp_path / "one", ("loss", "loss_ce", "loss_mask", "loss_dice", "grad_norm"),
                         noise_only=NOISE_ONLY)
