"""``segfit consolidate CHECKPOINT``: an FSDP run's sharded checkpoint → its ``model.safetensors``, which
``segfit evaluate``, ``inference`` and ``export`` read (docs/distributed.md)."""

from __future__ import annotations

from pathlib import Path

from segfit.engine.checkpoint import consolidate


def run(checkpoint: str) -> Path:
    out = consolidate(Path(checkpoint))
    print(f"wrote {out}")
    return out
