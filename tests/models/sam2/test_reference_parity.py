"""segfit's SAM 2 (converted weights + its own preprocessing) must give the reference predictor's outputs.

Random reference weights, every tensor perturbed so zero-initialised or duplicated parameters cannot hide a wrong
mapping; saved as an official ``.pt`` and loaded through segfit's public ``build_sam2``. The image goes through a
PNG file, segfit's ``preprocess_image`` and ``points_to_model`` on one side and the reference
``SAM2ImagePredictor`` on the other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.preprocess import masks_to_original, points_to_model, preprocess_image

pytestmark = [pytest.mark.reference, pytest.mark.slow]

REFERENCE_YAML = {
    ("tiny", "2.0"): "configs/sam2/sam2_hiera_t.yaml",
    ("tiny", "2.1"): "configs/sam2.1/sam2.1_hiera_t.yaml",
    ("small", "2.0"): "configs/sam2/sam2_hiera_s.yaml",
    ("small", "2.1"): "configs/sam2.1/sam2.1_hiera_s.yaml",
}

PROMPTS = {
    "2 objects x 1 point": (np.array([[[200.0, 150.0]], [[420.0, 330.0]]]), np.array([[1], [1]])),
    "1 object x 2 points (pos+neg)": (np.array([[[200.0, 150.0], [420.0, 330.0]]]), np.array([[1, 0]])),
}

LOGIT_TOLERANCE = 1e-4
"""Meta's code and segfit's run the same float32 maths in other kernels and orders: ≤ 7e-7 seen (logits ≤ 1)."""
REFERENCE_CLAMP = 32.0
"""The reference predictor clamps the low-resolution logits it returns to ±32."""


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> np.ndarray:
    """A smooth random 480×640 RGB image, written to PNG and read back as a user's file would be."""
    coarse = np.random.default_rng(7).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("parity") / "image.png"
    Image.fromarray(coarse).resize((640, 480), Image.BICUBIC).save(path)
    return np.array(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(("size", "version"), list(REFERENCE_YAML))
def test_outputs_match_reference(size, version, image, tmp_path):
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2 as build_reference
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    reference = build_reference(REFERENCE_YAML[size, version], ckpt_path=None, device="cpu").eval()
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    checkpoint = tmp_path / "reference.pt"
    torch.save({"model": reference.state_dict()}, checkpoint)
    model = build_sam2(size, version, checkpoint=checkpoint).eval()

    predictor = SAM2ImagePredictor(reference)
    predictor.set_image(image)
    pixels = preprocess_image(image, 1024)
    assert (pixels - predictor._transforms(image)).abs().max().item() <= 1e-6

    orig_hw = image.shape[:2]
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels[None])
        for name, (points, labels) in PROMPTS.items():
            for multimask in (True, False):
                ref_masks, ref_iou, ref_low_res = predictor.predict(
                    point_coords=points, point_labels=labels, multimask_output=multimask, return_logits=True
                )
                out = model(
                    image_embeddings=embeddings,
                    input_points=points_to_model(torch.from_numpy(points).float(), orig_hw, 1024)[None],
                    input_labels=torch.from_numpy(labels)[None],
                    multimask_output=multimask,
                )
                low_res = out.pred_masks[0].reshape(ref_low_res.shape)
                case = f"{size} {version} {name} multimask={multimask}"
                clamped = low_res.clamp(-REFERENCE_CLAMP, REFERENCE_CLAMP)
                assert np.abs(clamped.numpy() - ref_low_res).max() <= LOGIT_TOLERANCE, case
                assert np.abs(out.iou_scores[0].reshape(ref_iou.shape).numpy() - ref_iou).max() <= LOGIT_TOLERANCE, case
                full = masks_to_original(low_res, orig_hw)
                assert np.abs(full.numpy() - ref_masks).max() <= LOGIT_TOLERANCE, case
