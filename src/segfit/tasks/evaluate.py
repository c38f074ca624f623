"""``segfit evaluate``: metrics of a checkpoint on a split → ``results_dir/eval/metrics.json`` (+ per-image CSV, overlays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segfit.engine.logging import strict_json
from segfit.tasks.common import recipe_with_model


def run(spec: Any, split: str = "test") -> dict[str, float]:
    recipe, model = recipe_with_model(spec, spec.evaluate.checkpoint)
    out_dir = Path(spec.results_dir) / "eval"
    metrics = recipe.evaluate(model, split, samples_dir=out_dir / "samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = strict_json(metrics, indent=2)  # a class absent from the split has no IoU: null, not NaN
    (out_dir / "metrics.json").write_text(text)
    print(text)
    print(f"metrics: {out_dir / 'metrics.json'}; per-image results and overlays: {out_dir / 'samples'}")
    return metrics
