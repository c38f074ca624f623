"""``segfit train``: save the resolved spec, then run the engine with the family's recipe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segfit.engine.storage import check_writable
from segfit.engine.trainer import train
from segfit.registry import recipe_for
from segfit.spec import save_resolved


def run(spec: Any) -> dict[str, Any]:
    recipe = recipe_for(spec)
    spec = recipe.spec  # the recipe may resolve settings that depend on the data (Mask2Former: epochs → steps)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one process writes
        check_writable(Path(spec.results_dir))
        print(f"resolved spec: {save_resolved(spec)}")
    return train(recipe, spec)
