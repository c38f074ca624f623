"""``segfit convert SRC DST``: official SAM 2 ``.pt`` ⇄ Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

from segfit.models.sam2.convert import convert_checkpoint


def run(src: str, dst: str) -> Path:
    out = convert_checkpoint(src, dst)
    print(f"converted {src} -> {out}")
    return out
