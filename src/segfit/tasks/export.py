"""``segfit export``: write a checkpoint in the family's exchange formats under ``export.output_dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segfit.tasks.common import recipe_with_model


def run(spec: Any) -> list[Path]:
    recipe, model = recipe_with_model(spec, spec.export.checkpoint)
    out_dir = Path(spec.export.output_dir or Path(spec.results_dir) / "export")
    written = recipe.export(model, out_dir)
    for path in written:
        print(f"exported: {path}")
    return written
