"""The training episode of one image: prompt kinds, decoder calls, correction clicks, mask inputs, multi-step loss."""

import sys
import types
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from segfit.models.sam2.losses import sam2_losses
from segfit.models.sam2.predict import LOGIT_CLAMP
from segfit.models.sam2.simulate import PROMPT_KINDS, draw_prompt_kinds, mask_prompt, prompt_and_score
from segfit.models.sam2.spec import Sam2LossSpec, Sam2PromptSpec
from segfit.prompts import center_points, next_click

SIZE = 256  # the ``model`` fixture's input size (conftest.py)
CLICKS_ONLY = Sam2PromptSpec(prob_click=1.0, prob_box=0.0, num_correction_clicks=2, prob_click_from_gt=0.0)


@pytest.fixture(scope="module")
def embeddings(model):
    with torch.no_grad():
        return model.get_image_embeddings(torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def gt():
    masks = torch.zeros(4, SIZE, SIZE, dtype=torch.bool)
    masks[0, 20:100, 30:90] = True
    masks[1, 150:250, 100:200] = True
    masks[2, 16:240, 16:240] = True  # most of the image: misses, not only false alarms, to correct
    masks[3, 5:9, 5:9] = True
    return masks


class Calls:
    """Records every decoder call: its prompts, its multimask flag and its outputs (gradients retained)."""

    def __init__(self, model):
        self.inputs, self.outputs = [], []
        self.handle = model.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output):
        output.pred_masks.retain_grad()
        self.inputs.append(kwargs)
        self.outputs.append(output)

    def labels(self, i):
        labels = self.inputs[i]["input_labels"]
        return None if labels is None else labels[:, 0]

    def points(self, i):
        return self.inputs[i]["input_points"][:, 0]

    def low_res(self, i):
        return self.outputs[i].pred_masks[:, 0]

    def best(self, i):
        """The mask each object continues with: highest predicted IoU (as the official ``_forward_sam_heads``)."""
        low, iou = self.low_res(i), self.outputs[i].iou_scores[:, 0]
        return low[torch.arange(len(low)), iou.argmax(1)]


def run(model, embeddings, gt, prompts=CLICKS_ONLY, loss=Sam2LossSpec(), seed=0, valid=None, multimask=True):
    torch.manual_seed(seed)
    calls = Calls(model)
    try:
        out = prompt_and_score(model, embeddings, gt, valid, prompts, loss, multimask)
    finally:
        calls.handle.remove()
    return out, calls


def test_prompt_kinds_follow_the_probabilities():
    torch.manual_seed(0)
    kinds = draw_prompt_kinds(6000, Sam2PromptSpec(prob_click=0.5, prob_box=0.3, prob_mask=0.2))
    freq = torch.bincount(kinds, minlength=3).float() / len(kinds)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.03, rtol=0)
    assert (draw_prompt_kinds(50, Sam2PromptSpec(prob_click=0.0, prob_box=1.0)) == PROMPT_KINDS.index("box")).all()


def test_box_prompts_only(model, embeddings, gt):
    prompts = replace(CLICKS_ONLY, prob_click=0.0, prob_box=1.0)
    _, calls = run(model, embeddings, gt, prompts)
    assert len(calls.inputs) == 1 + prompts.num_correction_clicks
    labels = calls.labels(0)
    assert labels.shape == (4, 2) and (labels == torch.tensor([2, 3])).all()
    corners = calls.points(0)  # noisy boxes: within 10 % of the side (≤ 20 px) of the tight box
    torch.testing.assert_close(corners[0], torch.tensor([[30.0, 20.0], [89.0, 99.0]]), atol=8.0, rtol=0)
    assert not any(call["multimask_output"] for call in calls.inputs)
    assert calls.inputs[0]["input_masks"] is None


def test_click_prompts_only_and_multimask_on_the_single_click(model, embeddings, gt):
    _, calls = run(model, embeddings, gt)
    assert len(calls.inputs) == 1 + CLICKS_ONLY.num_correction_clicks
    for i in range(len(calls.inputs)):
        assert not ((calls.labels(i) == 2) | (calls.labels(i) == 3)).any()
        assert calls.labels(i).shape == (4, i + 1)  # one click more per step
    flags = [call["multimask_output"] for call in calls.inputs]
    assert flags == [True] + [False] * CLICKS_ONLY.num_correction_clicks
    assert calls.low_res(0).shape[1] == 3 and calls.low_res(1).shape[1] == 1
    xy = calls.points(0)[:3, 0].long()  # first clicks inside their (non-empty) masks
    assert gt[torch.arange(3), xy[:, 1], xy[:, 0]].all()
    _, no_multimask = run(model, embeddings, gt, multimask=False)
    assert not any(call["multimask_output"] for call in no_multimask.inputs)


def test_several_first_clicks_get_no_multimask(model, embeddings, gt):
    for seed in range(6):
        _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, max_points=3, num_correction_clicks=0), seed=seed)
        k = calls.labels(0).shape[1]
        assert 1 <= k <= 3 and calls.inputs[0]["multimask_output"] == (k == 1)
        assert (calls.labels(0)[:3] == 1).all()


def test_centre_clicks(model, embeddings, gt):
    _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, click_at="center", num_correction_clicks=0))
    torch.testing.assert_close(calls.points(0), center_points(gt)[0])


def test_mixed_kinds_decode_per_kind_and_mask_prompts_are_gt_logits(model, embeddings, gt):
    prompts = Sam2PromptSpec(prob_click=0.34, prob_box=0.33, prob_mask=0.33, num_correction_clicks=2)
    kinds, seed = None, -1
    while kinds is None or kinds.unique().numel() < 3:  # the episode draws the kinds first, from the same seed
        seed += 1
        torch.manual_seed(seed)
        kinds = draw_prompt_kinds(len(gt), prompts)
    _, calls = run(model, embeddings, gt, prompts, seed=seed)
    assert len(calls.inputs) == 3 * (1 + prompts.num_correction_clicks)  # one call per kind and step
    first = {("mask" if c["input_masks"] is not None else "box" if (c["input_labels"] == 2).any() else "click"): c
             for c in calls.inputs[:3]}
    for kind, call in first.items():
        count = int((kinds == PROMPT_KINDS.index(kind)).sum())
        assert len(call["input_masks"] if kind == "mask" else call["input_points"]) == count, kind
    mask_call = first["mask"]
    assert mask_call["input_points"] is None  # HF pads the "no points" prompt with label -1, as the reference
    members = (kinds == PROMPT_KINDS.index("mask")).nonzero()[:, 0]
    given = mask_call["input_masks"]
    torch.testing.assert_close(given, mask_prompt(gt[members], (SIZE // 4, SIZE // 4)))
    coverage = F.interpolate(gt[members][:, None].float(), size=SIZE // 4, mode="area")
    assert given.shape == (len(members), 1, SIZE // 4, SIZE // 4) and given.abs().max() <= 10
    interior = -F.max_pool2d(-coverage, 5, stride=1, padding=2) == 1  # beyond the antialiasing filter's reach
    exterior = F.max_pool2d(coverage, 5, stride=1, padding=2) == 0
    assert (given[interior] > 9.9).all() and (given[exterior] < -9.9).all() and interior.any()
    assert ((given > 0) == (coverage > 0.5)).float().mean() > 0.99


def test_mask_input_is_the_previous_steps_best_logits_not_detached(model, embeddings, gt):
    _, calls = run(model, embeddings, gt)
    assert calls.inputs[0]["input_masks"] is None
    for i in range(1, len(calls.inputs)):
        given = calls.inputs[i]["input_masks"]
        assert given.requires_grad  # the official trainer does not detach the fed-back logits
        torch.testing.assert_close(given, calls.best(i - 1)[:, None].clamp(-LOGIT_CLAMP, LOGIT_CLAMP))


def test_correction_clicks_are_positive_in_misses_and_negative_in_false_alarms(model, embeddings, gt):
    _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, num_correction_clicks=4))
    seen = set()
    for i in range(1, len(calls.inputs)):
        pred = F.interpolate(calls.best(i - 1)[:, None].detach(), size=SIZE, mode="bilinear")[:, 0] > 0
        x, y = calls.points(i)[:, -1].long().unbind(-1)
        label = calls.labels(i)[:, -1]
        rows = torch.arange(len(gt))
        in_gt, in_pred = gt[rows, y, x], pred[rows, y, x]
        assert ((label == 1) == (in_gt & ~in_pred)).all() and ((label == 0) == (~in_gt & in_pred)).all()
        seen |= set(label.tolist())
    assert seen == {0, 1}


def test_correction_clicks_from_the_ground_truth(model, embeddings, gt):
    _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, prob_click_from_gt=1.0))
    for i in range(1, len(calls.inputs)):
        x, y = calls.points(i)[:, -1].long().unbind(-1)
        assert (calls.labels(i)[:, -1] == 1).all() and gt[torch.arange(len(gt)), y, x].all()


def test_centre_correction_clicks_land_in_the_largest_error(model, embeddings, gt):
    _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, correction_click="center", num_correction_clicks=1))
    pred = F.interpolate(calls.best(0)[:, None].detach(), size=SIZE, mode="bilinear")[:, 0] > 0
    expected_points, expected_labels = next_click(gt, pred, "center")
    torch.testing.assert_close(calls.points(1)[:, -1:], expected_points)
    torch.testing.assert_close(calls.labels(1)[:, -1:], expected_labels)


@pytest.mark.parametrize("resolution", ["full", "low", "points"])
def test_every_step_gets_gradient(model, embeddings, gt, resolution):
    loss = Sam2LossSpec(resolution=resolution, num_points=500)
    out, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, prob_click=0.5, prob_box=0.5), loss=loss)
    out["loss"].backward()
    assert all(o.pred_masks.grad is not None and o.pred_masks.grad.abs().sum() > 0 for o in calls.outputs)
    model.zero_grad()


@pytest.mark.parametrize(("kind", "resolution"), [("click", "full"), ("box", "low"), ("mask", "points")])
def test_empty_objects_train_only_absence_without_nan(model, embeddings, gt, resolution, kind):
    prompts = replace(CLICKS_ONLY, **{f"prob_{k}": float(k == kind) for k in PROMPT_KINDS})
    loss = Sam2LossSpec(resolution=resolution, num_points=300)
    masks = gt.clone()
    masks[1:] = False  # e.g. cropped away by augmentation
    out, calls = run(model, embeddings, masks, prompts, loss)
    assert all(torch.isfinite(v) for v in out.values())
    if kind != "mask":  # nothing to click or box: "not a point" tokens only
        assert (calls.labels(0)[1:] == -1).all() and (calls.labels(0)[0] != -1).all()
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()
    none, _ = run(model, embeddings, torch.zeros_like(gt), prompts, loss)
    assert none["loss_mask"] == none["loss_dice"] == none["loss_iou"] == none["iou"] == 0
    assert none["loss_class"] > 0 and torch.equal(none["loss"], none["loss_class"])


def test_ignored_pixels_get_no_clicks(model, embeddings, gt):
    valid = torch.ones(SIZE, SIZE, dtype=torch.bool)
    valid[:, 128:] = False
    _, calls = run(model, embeddings, gt, replace(CLICKS_ONLY, num_correction_clicks=4), valid=valid)
    for i in range(1, len(calls.inputs)):
        clicked = calls.labels(i)[:, -1] >= 0
        assert (calls.points(i)[clicked, -1, 0] < 128).all()


def test_same_seed_same_episode(model, embeddings, gt):
    prompts = replace(CLICKS_ONLY, prob_click=0.5, prob_box=0.5)
    a, _ = run(model, embeddings, gt, prompts, seed=5)
    b, _ = run(model, embeddings, gt, prompts, seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ref_loss_fns():
    pytest.importorskip("training")
    try:
        import training.trainer  # noqa: F401
    except ImportError:  # it needs tensordict only for a key name (see test_losses.py)
        sys.modules["training.trainer"] = types.SimpleNamespace(CORE_LOSS_KEY="core_loss")
    import training.loss_fns

    return training.loss_fns


@pytest.mark.reference
def test_steps_are_summed_as_the_reference_criterion(model, embeddings, gt, ref_loss_fns):
    """The episode's losses equal ``MultiStepMultiMasksAndIous`` on the same per-step outputs; ``iou`` is the last
    step's."""
    out, calls = run(model, embeddings, gt)
    high = [F.interpolate(o.pred_masks[:, 0], size=SIZE, mode="bilinear", align_corners=False) for o in calls.outputs]
    criterion = ref_loss_fns.MultiStepMultiMasksAndIous(
        {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}, supervise_all_iou=True,
        iou_use_l1_loss=True, pred_obj_scores=True, focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1,
    )
    theirs = criterion([{
        "multistep_pred_multimasks_high_res": high,
        "multistep_pred_ious": [o.iou_scores[:, 0] for o in calls.outputs],
        "multistep_object_score_logits": [o.object_score_logits[:, 0] for o in calls.outputs],
    }], gt[None])
    # Meta's criterion and segfit's: the same sums in other orders (equal so far)
    for key in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        torch.testing.assert_close(out[key], torch.as_tensor(theirs[key]).float(), rtol=1e-5, atol=1e-6, msg=key)
    torch.testing.assert_close(out["loss"], theirs["core_loss"], rtol=1e-5, atol=1e-6)
    last = calls.outputs[-1]
    expected_iou = sam2_losses(high[-1], last.iou_scores[:, 0], gt, last.object_score_logits[:, 0])["iou"]
    torch.testing.assert_close(out["iou"], expected_iou)


def test_spec_checks():
    with pytest.raises(ValueError, match="prob_click"):
        Sam2PromptSpec(prob_click=0.5, prob_box=0.2)
    with pytest.raises(ValueError, match="num_correction_clicks"):
        Sam2PromptSpec(num_correction_clicks=-1)
    with pytest.raises(ValueError, match="prob_click_from_gt"):
        Sam2PromptSpec(prob_click_from_gt=1.5)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        Sam2LossSpec(importance_sample_ratio=1.5)
    with pytest.raises(ValueError, match="oversample_ratio"):
        Sam2LossSpec(oversample_ratio=0.5)
