"""A toy training run for the SIGKILL test (``test_sigkill_resume.py``): ``python killable_run.py RESULTS_DIR``.

Checkpoints every step, validates every 4 (so ``best`` is written too) and resumes from ``checkpoints/last``
when run again. Each checkpoint write prints ``saving`` and then lingers a little after each file, so the test
can kill the process inside a write, between its files. Prints ``ready`` once imported, ``done`` at the end.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_recipe import ToyRecipe, toy_spec  # noqa: E402

from segfit.engine import checkpoint, trainer  # noqa: E402

MAX_STEPS = 40
LINGER_S = 0.02


def _lingering(write):
    def wrapped(*args, **kwargs):
        result = write(*args, **kwargs)
        time.sleep(LINGER_S)
        return result
    return wrapped


def main(results_dir: Path) -> None:
    spec = toy_spec(results_dir, max_steps=MAX_STEPS, checkpoint_every=1, eval_every=4, log_every=1)
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, num_workers=0))
    save = checkpoint.save_checkpoint

    def announced_save(*args, **kwargs):
        print("saving", flush=True)
        return save(*args, **kwargs)

    trainer.save_checkpoint = announced_save
    checkpoint.save_weights = _lingering(checkpoint.save_weights)
    torch.save = _lingering(torch.save)  # trainer_state.pt (this process saves nothing else)
    trainer.render_plots = lambda results_dir: []  # not under test, and slow
    print("ready", flush=True)
    trainer.train(ToyRecipe(spec), spec)
    print("done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
