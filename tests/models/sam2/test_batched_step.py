"""The batched training step: the objects of every image flattened, one decoder call per prompt kind and step, the
same loss terms as each image alone, no host sync on CUDA, ``train.compile``, the recomputed full-resolution loss."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.optim import build_optimizer
from segfit.engine.transfer import to_device
from segfit.models.sam2 import recipe as sam2_recipe
from segfit.models.sam2 import simulate
from segfit.models.sam2.losses import LOSS_KEYS, MaskTargets
from segfit.models.sam2.spec import Sam2LossSpec, Sam2PromptSpec
from segfit.registry import recipe_for
from segfit.spec import load_spec

SIZE = 256  # the ``model`` fixture's input size (conftest.py)
MIXED = Sam2PromptSpec(prob_click=0.4, prob_box=0.3, prob_mask=0.3, num_correction_clicks=2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_images(out, num_train=4, num_val=1, size=(120, 160), max_objects=4, seed=2)
    return out


def make_recipe(data_dir: Path, run_dir: Path, *overrides: str):
    return recipe_for(load_spec(None, [
        "model.name=sam2", "model.size=test", f"model.image_size={SIZE}", f"results_dir={run_dir}",
        f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
        "train.prompts.prob_click=0.4", "train.prompts.prob_box=0.3", "train.prompts.prob_mask=0.3",
        "train.prompts.num_correction_clicks=2", *overrides,
    ]))


def batch_of(recipe, size: int) -> dict:
    return recipe.collate([recipe.train_dataset().sources[0].dataset[(i % 4, i)] for i in range(size)])


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_one_decoder_call_per_prompt_kind_and_step(data_dir, tmp_path, monkeypatch, batch_size):
    recipe = make_recipe(data_dir, tmp_path)
    model = recipe.build_model()
    drawn = []
    draw = simulate.draw_prompt_kinds
    monkeypatch.setattr(simulate, "draw_prompt_kinds", lambda n, prompts: drawn.append(draw(n, prompts)) or drawn[-1])
    decoded = []
    model.mask_decoder.register_forward_hook(lambda module, args, out: decoded.append(out[0].shape[0]))
    cudnn_attention = []  # new object counts are new shapes: cuDNN's SDPA would build a graph for each (attention.py)
    model.mask_decoder.register_forward_pre_hook(lambda *_: cudnn_attention.append(torch.backends.cuda.cudnn_sdp_enabled()))
    batch = batch_of(recipe, batch_size)
    torch.manual_seed(batch_size)
    recipe.training_step(model, batch)["loss"].backward()
    (kinds,) = drawn
    kinds_present = kinds.unique().numel()
    assert len(decoded) == kinds_present * (1 + MIXED.num_correction_clicks)
    assert len(cudnn_attention) == len(decoded) and not any(cudnn_attention)
    assert sum(decoded[:kinds_present]) == len(batch["masks"]) == len(kinds)  # every object of every image, once
    assert batch["image_index"].tolist() == sorted(batch["image_index"].tolist())
    assert batch["image_index"].unique().tolist() == list(range(batch_size))


def _episode_inputs(model):
    """Three images with 3, 1 and 4 objects (one empty), image 1 with an ignored band; their embeddings."""
    boxes = [[(20, 100, 30, 90), (150, 250, 100, 200), (16, 240, 16, 240)], [(60, 180, 40, 200)],
             [(5, 60, 5, 60), (100, 200, 150, 250), (30, 90, 120, 230), None]]
    masks, image_index = [], []
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes:
            mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            if box is not None:
                mask[box[0] : box[1], box[2] : box[3]] = True
            masks.append(mask)
            image_index.append(image)
    valid = torch.ones(len(boxes), SIZE, SIZE, dtype=torch.bool)
    valid[1, :, 150:170] = False
    pixels = torch.randn(len(boxes), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels)
    return embeddings, torch.stack(masks), torch.tensor(image_index), valid


@pytest.mark.parametrize("resolution", ["full", "low"])
def test_batched_episode_equals_each_image_alone(model, monkeypatch, resolution):
    """Deterministic prompts (centre clicks, exact boxes, correction clicks at the ground truth's centre) and fixed
    prompt kinds, so both runs give the same prompts whatever their random draws."""
    embeddings, gt, image_index, valid = _episode_inputs(model)
    kinds = torch.tensor([0, 1, 2, 0, 2, 1, 0, 0])
    queue = [kinds] + [kinds[image_index == b] for b in range(len(valid))]
    monkeypatch.setattr(simulate, "draw_prompt_kinds", lambda n, prompts: queue.pop(0))
    prompts = replace(MIXED, click_at="center", correction_click="center", box_noise=0.0, prob_click_from_gt=1.0,
                      num_correction_clicks=1)
    loss = Sam2LossSpec(resolution=resolution)
    batched = simulate.prompt_and_score(model, embeddings, gt, valid, prompts, loss, True, image_index)
    expected = dict.fromkeys((*LOSS_KEYS, "loss"), 0.0)
    iou_sum, present = 0.0, 0
    for b in range(len(valid)):
        rows = image_index == b
        alone = simulate.prompt_and_score(model, [e[b : b + 1] for e in embeddings], gt[rows], valid[b], prompts,
                                          loss, True)
        for key in expected:  # each image's terms are means over its objects; the batch's over all objects
            expected[key] = expected[key] + alone[key] * rows.sum() / len(gt)
        num_present = int(gt[rows].flatten(1).any(1).sum())
        iou_sum, present = iou_sum + alone["iou"] * num_present, present + num_present
    # the same maths in other matmul shapes (batched vs one image): equal up to float rounding (seen: ≤ 1e-7)
    for key in ("loss_mask", "loss_dice", "loss_class"):
        torch.testing.assert_close(batched[key], torch.as_tensor(expected[key]), rtol=1e-5, atol=1e-5, msg=key)
    # the IoU target counts pixels with logits > 0: a pixel within rounding of 0 may flip, moving an object's IoU by
    # ≤ 1 / its area (≤ 1/3000 here), these means over 8 objects by ≤ 5e-5 a pixel; a wrong pairing moves them by ≫ 1e-3
    for key in ("loss_iou", "loss"):
        torch.testing.assert_close(batched[key], torch.as_tensor(expected[key]), rtol=0, atol=2e-4, msg=key)
    torch.testing.assert_close(batched["iou"], torch.as_tensor(iou_sum / present), rtol=0, atol=2e-4)


def test_full_resolution_loss_is_recomputed_in_backward_not_stored():
    gt = torch.zeros(4, 128, 128, dtype=torch.bool)
    gt[:, 20:90, 30:100] = True
    targets = MaskTargets(gt, None, (32, 32), "full")
    low = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def terms_and_saved_bytes(recompute: bool) -> tuple[list[torch.Tensor], int, torch.Tensor]:
        saved = []
        logits = low.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            out = targets.mask_terms(logits) if recompute else targets._full_terms(logits)
        (out[0].sum() + out[1].sum()).backward()
        return out, sum(saved), logits.grad

    ours, ours_bytes, ours_grad = terms_and_saved_bytes(True)
    plain, plain_bytes, plain_grad = terms_and_saved_bytes(False)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same function on the same tensors
    torch.testing.assert_close(ours_grad, plain_grad, rtol=1e-6, atol=1e-9)  # recomputation: same ops again
    full_res_tensor = 4 * 3 * 128 * 128 * 4
    assert plain_bytes >= 4 * full_res_tensor and ours_bytes < full_res_tensor / 4


def test_compile_keeps_parameter_names_and_losses(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sam2_recipe, "COMPILE_OPTIONS", {"dynamic": True, "backend": "aot_eager"})  # no C++ build
    # no correction clicks: they would hang on logits > 0, which compiled kernels may round differently
    recipe = make_recipe(data_dir, tmp_path, "train.compile=true", "train.prompts.num_correction_clicks=0")
    plain = recipe.build_model()
    compiled = copy.deepcopy(plain)
    names = list(compiled.state_dict())
    recipe.compile(compiled)
    assert list(compiled.state_dict()) == names  # checkpoints of compiled runs load anywhere
    batch = batch_of(recipe, 2)
    results = []
    for model in (plain, compiled):
        torch.manual_seed(0)
        terms = recipe.training_step(model, batch)
        terms["loss"].backward()
        results.append((terms, model.mask_decoder.iou_prediction_head.proj_out.weight.grad))
    (plain_terms, plain_grad), (compiled_terms, compiled_grad) = results
    for key in plain_terms:  # traced graphs may fuse or reorder float ops
        torch.testing.assert_close(compiled_terms[key], plain_terms[key], rtol=1e-5, atol=1e-6, msg=key)
    torch.testing.assert_close(compiled_grad, plain_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("overrides", [(), ("model.trainable=[image_encoder,prompt_encoder,mask_decoder]",)])
def test_a_cuda_training_step_never_waits_for_the_device(data_dir, tmp_path, overrides):
    recipe = make_recipe(data_dir, tmp_path, "train.embedding_cache.mode=off", *overrides)
    device = torch.device("cuda")
    model = recipe.build_model().to(device)
    optimizer = build_optimizer(recipe.param_groups(model), recipe.spec.train.optim)
    batches = [to_device(batch_of(recipe, 2), device) for _ in range(3)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                terms = recipe.training_step(model, batch)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(terms["loss"])
