"""Training curves drawn from ``metrics.jsonl``: ``plots/loss.png`` (training terms), ``plots/metrics.png``
(validation metrics) and ``plots/lr.png`` (learning rate per parameter group).

Only float values are drawn: integers in a record are counts (``num_images``, ``num_objects``, ``skipped_images``),
facts about the data rather than curves to watch, so they stay in the log (``metrics.jsonl``, ``results.csv``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no global backend or figure state, Agg renders the PNG

from segfit.engine.logging import METRICS_FILE, read_records

NOT_TERMS = {"step", "split", "time", "steps_per_s", "samples_per_s", "epoch"}
COUNTS = "samples/"
"""Per-dataset sample counts: the log holds them, the plots do not."""


def _series(records: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """Steps and values of each key; ``null`` (a non-finite figure in the log) becomes a gap in the curve."""
    return {key: ([r["step"] for r in records if key in r],
                  [math.nan if r[key] is None else float(r[key]) for r in records if key in r]) for key in keys}


def _keys(records: list[dict[str, Any]], wanted: Any) -> list[str]:
    """The keys ``wanted`` accepts that hold floats (not counts), in first-seen order."""
    return list(dict.fromkeys(k for r in records for k, v in r.items() if isinstance(v, float) and wanted(k)))


def _draw(path: Path, series: dict[str, tuple[list[int], list[float]]], title: str, shared_axes: bool) -> None:
    """One panel per series, or all series on one panel when ``shared_axes``."""
    panels = [series] if shared_axes else [{k: v} for k, v in series.items()]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.2 * rows), layout="constrained")
    fig.suptitle(title)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, (steps, values) in panel.items():
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
        ax.set_xlabel("step")
        if shared_axes:
            ax.legend()
        else:
            ax.set_title(next(iter(panel)))
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def render_plots(results_dir: Path) -> list[Path]:
    """Redraw the plots of a run; returns the files written (a plot without data is skipped)."""
    records = read_records(Path(results_dir) / METRICS_FILE)
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    out = Path(results_dir) / "plots"
    plots = [
        (out / "loss.png", train, lambda k: k not in NOT_TERMS and not k.startswith(("lr/", COUNTS)), "training", False),
        (out / "metrics.png", val, lambda k: k not in NOT_TERMS, "validation metrics", False),
        (out / "lr.png", train, lambda k: k.startswith("lr/"), "learning rate", True),
    ]
    written = []
    for path, subset, wanted, title, shared in plots:
        keys = _keys(subset, wanted)
        if keys:
            _draw(path, _series(subset, keys), title, shared)
            written.append(path)
    return written
