"""A tiny SiamBAN spec for tests (``tiny`` backbone, 63 / 127 crops, CPU); imported as ``siamban_specs``."""

from __future__ import annotations

from pathlib import Path

from segfit.spec import load_spec


def tiny_spec(data: dict[str, Path], results_dir: Path, *overrides: str):
    """A CPU spec of the tiny model on ``data``; ``overrides`` as on the command line."""
    base = [f"results_dir={results_dir}", "model.name=siamban", "model.backbone=tiny", "model.channels=16",
            f"data.train.datasets=[{{format: got10k, images: '{data['train_images']}'}}]",
            f"data.val={{format: got10k, images: '{data['val_images']}'}}", "data.batch_size=4", "data.num_workers=0",
            "data.template_size=63", "data.search_size=127", "train.device=cpu", "train.max_steps=4",
            "train.log_every=1", "train.eval_every=0", "train.checkpoint_every=1", "train.unfreeze_step=2",
            "train.optim.warmup_steps=2", "train.optim.lr_step_every=1"]
    return load_spec(None, [*base, *overrides])
