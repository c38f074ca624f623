"""The run's one record of figures: each record is written once to ``metrics.jsonl`` and mirrored, unchanged, to
TensorBoard, ``results.csv`` and the progress bar (plots are drawn from ``metrics.jsonl`` by ``plots.py``).

A record is a flat dict: ``step``, ``split`` (``train`` or ``val``) and numbers, e.g.
``{"step": 50, "split": "train", "lr/base": 5e-06, "loss": 0.41, "steps_per_s": 3.2, "time": 15.6}``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"
CSV_FILE = "results.csv"
TENSORBOARD_DIR = "tensorboard"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (a last line cut off by a crash is ignored)."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise ValueError(f"{path}:{number}: not a JSON record ({error})") from error
    return records


def strict_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` with NaN and infinities written as ``null``: a figure with no defined value (the IoU of a
    class absent from both ground truth and prediction) stays readable by strict JSON parsers, which reject ``NaN``."""
    def finite(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        return [finite(v) for v in item] if isinstance(item, (list, tuple)) else item

    return json.dumps(finite(value), allow_nan=False, **kwargs)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunLog:
    """Writer of the run's records; a disabled one (ranks other than 0) does nothing.

    Args:
        start_step: the step the run starts from; records after it (left by an interrupted run) are dropped so
            a resumed run does not log a step twice (a fresh start, 0, drops every record).
        bar_keys: record values shown next to the progress bar (validation ones prefixed ``val_``).
    """

    def __init__(self, results_dir: Path, start_step: int, max_steps: int, bar_keys: tuple[str, ...] = (),
                 enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        self.jsonl, self.csv = results_dir / METRICS_FILE, results_dir / CSV_FILE
        results_dir.mkdir(parents=True, exist_ok=True)
        self.records = [r for r in read_records(self.jsonl) if r["step"] <= start_step] if start_step else []
        _write_atomic(self.jsonl, "".join(strict_json(r) + "\n" for r in self.records))
        self.columns: list[str] = []
        self._write_csv()
        # purge_step hides events of an interrupted run past the resume point from TensorBoard
        self.tensorboard = SummaryWriter(str(results_dir / TENSORBOARD_DIR), purge_step=start_step + 1)
        self.bar = tqdm(total=max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        self.bar_keys, self.postfix = bar_keys, {}

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        with self.jsonl.open("a") as f:
            f.write(strict_json(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "split") and _is_number(value):
                self.tensorboard.add_scalar(f"{record['split']}/{key}", value, record["step"])
        self._append_csv(record)
        prefix = "" if record["split"] == "train" else f"{record['split']}_"
        self.postfix.update({prefix + k: f"{record[k]:.4g}" for k in self.bar_keys if _is_number(record.get(k))})
        self.bar.set_postfix(self.postfix, refresh=False)

    def progress(self, metric: str, mode: str = "max") -> str:
        """``val <metric>: <first> at step <s> → <last> at step <t> (best <b> at step <u>)``, from the validation
        records of the run (resumed parts included); empty without any."""
        seen = [r for r in self.records if r["split"] == "val" and _is_number(r.get(metric))] if self.enabled else []
        if not seen:
            return ""
        first, last = seen[0], seen[-1]
        best = (max if mode == "max" else min)(seen, key=lambda r: r[metric])
        line = f"val {metric}: {first[metric]:.3f} at step {first['step']} → {last[metric]:.3f} at step {last['step']}"
        return line + ("" if best is last else f" (best {best[metric]:.3f} at step {best['step']})")

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar (its rate and ETA come from tqdm's own clock)."""
        if self.enabled:
            self.bar.update(steps)

    def flush(self) -> None:
        if self.enabled:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()
            self.bar.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # results.csv has one row per record over the union of columns; it is rewritten only when a record brings
    # a new column (e.g. the first validation), otherwise the row is appended.
    def _append_csv(self, record: dict[str, Any]) -> None:
        if any(key not in self.columns for key in record):
            self._write_csv()
            return
        with self.csv.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(record)

    def _write_csv(self) -> None:
        self.columns = list(dict.fromkeys(key for record in self.records for key in record))
        tmp = self.csv.with_name(self.csv.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.records)
        os.replace(tmp, self.csv)
