"""Instance mode without training: evaluation reports pycocotools' mask AP, inference writes decodable COCO RLE."""

import json

from pycocotools import mask as mask_utils

from m2f_tiny import tiny_spec_overrides
from segfit.models.mask2former.recipe import Mask2FormerRecipe
from segfit.spec import load_spec


def test_instance_evaluation_and_outputs(synthetic, tmp_path):
    paths = synthetic("instance")
    spec = load_spec(None, tiny_spec_overrides("instance", paths, tmp_path / "run") + [
        "model.test_topk_per_image=5", f"inference.input={paths['val_images']}"])
    recipe = Mask2FormerRecipe(spec)
    model = recipe.build_model().eval()
    metrics = recipe.evaluate(model, "val", samples_dir=tmp_path / "samples")
    assert {"ap", "ap50", "ap75", "aps", "apm", "apl"} <= metrics.keys() and metrics["ap_backend"] == "pycocotools"
    assert metrics["num_images"] == 2 and len(list((tmp_path / "samples").glob("*.png"))) == 2

    written = recipe.run_inference(lambda: model, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "instances.json").read_text())
    assert (tmp_path / "out" / "instances.json") in written and len(results) == 2 * 5  # top 5 per image
    mask = mask_utils.decode({**results[0]["segmentation"], "counts": results[0]["segmentation"]["counts"].encode()})
    assert mask.shape == (64, 64) and results[0]["category_id"] in (1, 2, 3, 4, 5)
