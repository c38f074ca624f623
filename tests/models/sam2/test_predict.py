"""Sam2Predictor / predict_low_res against the HF Sam2Model run by hand on the same pixels and prompts."""

import numpy as np
import pytest
import torch

from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.predict import Prediction, Sam2Predictor, best_mask, predict_low_res
from segfit.models.sam2.preprocess import masks_to_original, preprocess_image

from assertions import assert_same_masks

SIZE = 256
HW = (300, 500)  # non-square: x and y scale differently into the 256×256 model input
SCALE_XY = torch.tensor([SIZE / HW[1], SIZE / HW[0]])  # written out, independent of preprocess.points_to_model


@pytest.fixture(scope="module")
def model():
    """The tiny test model with every tensor perturbed, so logits are far from 0 and a wrong path shows."""
    model = build_sam2("test", image_size=SIZE).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def predictor(model, image):
    predictor = Sam2Predictor(model, SIZE)
    predictor.set_image(image)
    return predictor


POINTS = torch.tensor([[[40.0, 30.0], [120.0, 200.0]], [[450.0, 250.0], [10.0, 290.0]], [[250.0, 150.0], [0.0, 0.0]]])
LABELS = torch.tensor([[1, 0], [1, 1], [1, -1]])
BOXES = torch.tensor([[20.0, 10.0, 200.0, 220.0], [300.0, 100.0, 499.0, 299.0], [100.0, 50.0, 400.0, 250.0]])
LOGIT_ATOL = 1e-5
"""One fp32 model, run in other tensor shapes (objects as the image batch or the point batch, batched or alone):
other kernels sum in another order; logits differ by ≤ 1e-7 here, and by more on other CPUs."""


def by_hand(model, image, multimask, points=None, labels=None, boxes=None, masks=None):
    """HF's own conventions: batch 1, objects as the point batch, boxes through input_boxes."""
    with torch.no_grad():
        out = model(
            pixel_values=preprocess_image(image, SIZE)[None],
            input_points=None if points is None else (points * SCALE_XY)[None],
            input_labels=None if labels is None else labels[None],
            input_boxes=None if boxes is None else (boxes * SCALE_XY.repeat(2))[None],
            input_masks=masks,
            multimask_output=multimask,
        )
    return out.pred_masks[0], out.iou_scores[0]


@pytest.mark.parametrize("multimask", [True, False])
def test_points_match_hf_by_hand_at_original_size(model, image, predictor, multimask):
    pred = predictor.predict(POINTS, LABELS, multimask_output=multimask)
    low, scores = by_hand(model, image, multimask, POINTS, LABELS)
    m = 3 if multimask else 1
    assert pred.masks.shape == (3, m, *HW) and pred.masks.dtype == torch.bool
    assert pred.logits.shape == (3, m, *HW) and pred.scores.shape == (3, m) and pred.low_res.shape == (3, m, 64, 64)
    expected = masks_to_original(low, HW)
    assert expected.abs().max() > 0.05  # meaningful logits
    torch.testing.assert_close(pred.logits, expected, atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(pred.scores, scores, atol=1e-6, rtol=0)  # scores in [0, 1]: ≤ 6e-8 seen
    torch.testing.assert_close(pred.low_res, low.clamp(-32, 32), atol=LOGIT_ATOL, rtol=0)
    assert_same_masks(pred.masks, expected, margin=10 * LOGIT_ATOL)
    assert 0.01 < pred.masks.float().mean() < 0.99


def test_boxes_with_points_match_hf_input_boxes(model, image, predictor):
    """Box corners as points labelled 2 / 3 (the reference's way) = HF's input_boxes path."""
    pred = predictor.predict(POINTS, LABELS, BOXES)
    low, scores = by_hand(model, image, False, POINTS, LABELS, BOXES)
    torch.testing.assert_close(pred.logits, masks_to_original(low, HW), atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(pred.scores, scores, atol=1e-6, rtol=0)  # scores in [0, 1]: ≤ 6e-8 seen
    box_only = predictor.predict(boxes=BOXES)
    low, _ = by_hand(model, image, False, boxes=BOXES)
    torch.testing.assert_close(box_only.logits, masks_to_original(low, HW), atol=LOGIT_ATOL, rtol=0)


def test_mask_input_round_trip_changes_the_result_as_hf_does(model, image, predictor):
    first = predictor.predict(POINTS[:1], LABELS[:1])
    again = predictor.predict(POINTS[:1], LABELS[:1], mask_input=first.low_res)
    assert (again.logits - first.logits).abs().max() > 1e-3
    low, _ = by_hand(model, image, False, POINTS[:1], LABELS[:1], masks=first.low_res)
    torch.testing.assert_close(again.logits, masks_to_original(low, HW), atol=LOGIT_ATOL, rtol=0)


def test_mask_input_is_clamped_like_the_reference(predictor):
    first = predictor.predict(POINTS[:1], LABELS[:1])
    huge = first.low_res.sign() * 1000
    pred_huge = predictor.predict(POINTS[:1], LABELS[:1], mask_input=huge)
    pred_clamped = predictor.predict(POINTS[:1], LABELS[:1], mask_input=huge.clamp(-32, 32))
    # exact: after the clamp both calls run the same kernels on the same numbers
    torch.testing.assert_close(pred_huge.logits, pred_clamped.logits, atol=0, rtol=0)


@pytest.mark.parametrize("prompt", ["points", "points+boxes", "points+masks", "masks"])
def test_batched_objects_equal_each_alone(predictor, prompt):
    masks = predictor.predict(POINTS, LABELS, multimask_output=True).low_res[:, 1:2]

    def run(i):
        sel = slice(None) if i is None else slice(i, i + 1)
        use_points = prompt != "masks"
        return predictor.predict(
            POINTS[sel] if use_points else None,
            LABELS[sel] if use_points else None,
            BOXES[sel] if "boxes" in prompt else None,
            masks[sel] if "masks" in prompt else None,
            multimask_output=True,
        )

    batched = run(None)
    for i in range(len(POINTS)):
        alone = run(i)
        for name in ("logits", "scores", "low_res"):
            got, want = getattr(batched, name)[i : i + 1], getattr(alone, name)
            torch.testing.assert_close(got, want, atol=LOGIT_ATOL, rtol=0)


def test_best_only_and_best_mask(predictor):
    full = predictor.predict(POINTS, LABELS, multimask_output=True)
    best = predictor.predict(POINTS, LABELS, multimask_output=True, best_only=True)
    index = full.scores.argmax(1)
    assert best.masks.shape == (3, 1, *HW)
    assert torch.equal(best.scores[:, 0], full.scores.max(1).values)  # the same decoder call twice, then a selection
    # best_only upsamples 1 mask per object, full all 3: other tensor shapes
    chosen = full.logits[torch.arange(3), index]
    torch.testing.assert_close(best.logits[:, 0], chosen, atol=LOGIT_ATOL, rtol=0)
    assert_same_masks(best.masks[:, 0], chosen, margin=10 * LOGIT_ATOL)
    assert torch.equal(best_mask(full), full.masks[torch.arange(3), index])  # indexing only


def test_bf16_autocast_runs_and_stays_close(model, image, predictor):
    bf16 = Sam2Predictor(model, SIZE, autocast_dtype=torch.bfloat16)
    bf16.set_image(image)
    pred = bf16.predict(POINTS, LABELS, BOXES, multimask_output=True)
    ref = predictor.predict(POINTS, LABELS, BOXES, multimask_output=True)
    assert pred.logits.dtype == torch.float32 and pred.scores.dtype == torch.float32
    assert pred.masks.shape == ref.masks.shape
    rel = (pred.logits - ref.logits).norm() / ref.logits.norm()
    assert rel < 0.1  # bf16 keeps 8 bits of mantissa (0.4% per value), compounded over the layers: ~2% seen
    assert (pred.masks == ref.masks).float().mean() > 0.9


def test_predict_low_res_under_external_autocast_keeps_grad(model, image):
    embeddings = model.get_image_embeddings(preprocess_image(image, SIZE)[None])
    points = (POINTS * SCALE_XY).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, scores, obj = predict_low_res(model, embeddings, points, LABELS, multimask_output=True)
    assert low.shape == (3, 3, 64, 64) and scores.shape == (3, 3) and obj.shape == (3, 1)
    assert low.dtype == scores.dtype == obj.dtype == torch.float32
    low.sum().backward()
    assert points.grad is not None and points.grad.abs().sum() > 0


def test_non_square_image_points_land_where_given(model):
    """A bright square in the top-right corner of a 300×500 image: masks come back at 300×500, a click on the
    square and one off it differ, and both equal the model fed x·256/500, y·256/300 by hand."""
    image = np.zeros((*HW, 3), np.uint8)
    image[20:120, 380:480] = 255
    predictor = Sam2Predictor(model, SIZE)
    predictor.set_image(image)
    clicks = torch.tensor([[[430.0, 70.0]], [[70.0, 230.0]]])
    pred = predictor.predict(clicks, torch.ones(2, 1))
    assert pred.masks.shape == (2, 1, *HW)
    assert not torch.equal(pred.masks[0], pred.masks[1])
    low, _ = by_hand(model, image, False, clicks, torch.ones(2, 1, dtype=torch.long))
    torch.testing.assert_close(pred.logits, masks_to_original(low, HW), atol=LOGIT_ATOL, rtol=0)


def test_errors_are_clear(model, predictor):
    with pytest.raises(RuntimeError, match="set_image"):
        Sam2Predictor(model, SIZE).predict(POINTS, LABELS)
    with pytest.raises(ValueError, match="image_size"):
        Sam2Predictor(model, 512)
    with pytest.raises(ValueError, match="labels"):
        predictor.predict(POINTS)
    with pytest.raises(ValueError, match="boxes"):
        predictor.predict(POINTS, LABELS, BOXES[:2])
    with pytest.raises(ValueError, match="no prompt"):
        predictor.predict()
    with pytest.raises(ValueError, match="mask_input"):
        predictor.predict(POINTS, LABELS, mask_input=torch.zeros(3, 3, 64, 64))


def test_prediction_is_a_plain_record(predictor):
    pred = predictor.predict(POINTS[:1], LABELS[:1])
    assert isinstance(pred, Prediction)
    assert pred.low_res.abs().max() <= 32


@pytest.mark.reference
@pytest.mark.slow
def test_matches_the_reference_predictor_with_boxes_points_and_mask_input(tmp_path):
    """Sam2Predictor = Meta's SAM2ImagePredictor end to end (converted weights), on the prompt mixes it builds
    itself: box corners merged with clicks, and a low-res mask fed back."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2 as build_reference
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    reference = build_reference("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu").eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=gen))
    torch.save({"model": reference.state_dict()}, tmp_path / "reference.pt")
    ours = Sam2Predictor(build_sam2("tiny", "2.1", checkpoint=tmp_path / "reference.pt"), 1024)
    theirs = SAM2ImagePredictor(reference)
    coarse = np.random.default_rng(3).integers(0, 256, (5, 7, 3)).astype(np.float32)
    chw = torch.from_numpy(coarse).permute(2, 0, 1)[None]
    image = torch.nn.functional.interpolate(chw, size=(360, 480), mode="bilinear")[0].permute(1, 2, 0)
    image = image.round().to(torch.uint8).numpy()
    ours.set_image(image)
    theirs.set_image(image)
    points = np.array([[[100.0, 80.0], [300.0, 200.0]], [[400.0, 300.0], [50.0, 340.0]]])
    labels = np.array([[1, 0], [1, 1]])
    boxes = np.array([[40.0, 30.0, 260.0, 220.0], [250.0, 150.0, 470.0, 350.0]])
    # Meta's code and segfit's: the same fp32 maths in other kernels and orders; logits differ by ≤ 6e-7 here
    for multimask in (True, False):
        ref_logits, ref_iou, ref_low = theirs.predict(points, labels, boxes, None, multimask, return_logits=True)
        pred = ours.predict(torch.from_numpy(points), torch.from_numpy(labels), torch.from_numpy(boxes),
                            multimask_output=multimask)
        np.testing.assert_allclose(pred.logits.numpy(), ref_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(pred.scores.numpy(), ref_iou, atol=1e-4, rtol=0)
        np.testing.assert_allclose(pred.low_res.numpy(), ref_low, atol=1e-4, rtol=0)
    ref_logits, _, _ = theirs.predict(points, labels, None, ref_low, False, return_logits=True)
    pred = ours.predict(torch.from_numpy(points), torch.from_numpy(labels), mask_input=torch.from_numpy(ref_low))
    np.testing.assert_allclose(pred.logits.numpy(), ref_logits, atol=1e-4, rtol=0)
