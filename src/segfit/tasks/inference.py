"""``segfit inference``: run a checkpoint on images or videos; outputs under ``inference.output_dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segfit.tasks.common import recipe_with_model_loader


def run(spec: Any) -> list[Path]:
    recipe, load_model = recipe_with_model_loader(spec, spec.inference.checkpoint)
    out_dir = Path(spec.inference.output_dir or Path(spec.results_dir) / "inference")
    written = recipe.run_inference(load_model, out_dir)
    print(f"wrote {len(written)} files to {out_dir}")
    return written
