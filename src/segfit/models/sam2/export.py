"""``segfit export`` for SAM 2: the fine-tuned model as a Hugging Face directory and as an official ``.pt``."""

from __future__ import annotations

from pathlib import Path

from transformers import Sam2Model

from segfit.models.sam2.weights import save_hf_dir, save_official_pt


def export_model(model: Sam2Model, formats: list[str], out_dir: Path) -> list[Path]:
    writers = {
        "hf": lambda: save_hf_dir(model, out_dir / "hf"),
        "official": lambda: save_official_pt(model, out_dir / "sam2_finetuned.pt"),
    }
    return [writers[name]() for name in formats]
