"""``segfit export`` for SAM 2: a Hugging Face directory, an official ``.pt`` and ONNX graphs checked in onnxruntime."""

from __future__ import annotations

from pathlib import Path

from transformers import Sam2Model

from segfit.models.sam2.onnx import export_onnx
from segfit.models.sam2.weights import save_hf_dir, save_official_pt


def export_model(model: Sam2Model, formats: list[str], out_dir: Path) -> list[Path]:
    writers = {
        "hf": lambda: save_hf_dir(model, out_dir / "hf"),
        "official": lambda: save_official_pt(model, out_dir / "sam2_finetuned.pt"),
        "onnx": lambda: export_onnx(model, model.config.prompt_encoder_config.image_size, out_dir / "onnx"),
    }
    written: list[Path] = []
    for name in formats:
        result = writers[name]()
        written += result if isinstance(result, list) else [result]
    return written
