"""ONNX export: onnxruntime matches PyTorch (dynamic batch), and ``segfit inference`` runs on the graph."""

import numpy as np
import pytest
import torch
from PIL import Image

from m2f_tiny import tiny_spec_overrides
from segfit.models.mask2former.export import LogitsOnly, export_onnx, session_forward
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import load_spec
from segfit.tasks import inference

EXPORT = ["export.input_height=64", "export.input_width=64", "model.mode=semantic"]


@pytest.mark.slow  # the dynamo exporter takes ~10 s even for the tiny model
def test_onnx_parity_and_inference(synthetic, tmp_path):
    paths = synthetic("semantic")
    spec = load_spec(None, tiny_spec_overrides("semantic", paths, tmp_path / "run") + EXPORT)
    recipe = Mask2FormerRecipe(spec)
    model = recipe.build_model().eval()
    (path,) = recipe.export(model, tmp_path / "export")

    batch = torch.randn(3, 3, 64, 64)  # another batch size than the export's example
    with torch.no_grad():
        expected = LogitsOnly(model)(batch)
    actual = session_forward(path)(batch)
    for e, a in zip(expected, actual):
        # onnxruntime and PyTorch round differently; the logits of this random model are O(1)
        assert a.shape == e.shape and (a - e).abs().max() <= 1e-3

    onnx_spec = load_spec(None, tiny_spec_overrides("semantic", paths, tmp_path / "run") + EXPORT + [
        "inference.backend=onnx", f"inference.onnx_file={path}", f"inference.input={paths['val_images']}"])
    written = inference.run(onnx_spec)
    assert len(written) == 4
    assert all(np.asarray(Image.open(p)).ndim == 2 for p in written if "overlay" not in p.name)
