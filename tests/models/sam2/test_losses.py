"""SAM 2 losses against Meta's reference ``training.loss_fns`` (values and gradients), plus the ignore mask."""

import sys
import types

import pytest
import torch

from segfit.models.sam2.losses import LossWeights, actual_iou, dice_loss, sam2_losses, sigmoid_focal_loss

OFFICIAL_WEIGHTS = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}
KEYS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


@pytest.fixture(scope="module")
def ref():
    """``training.loss_fns``; it imports ``training.trainer`` only for a key name, and that module needs
    ``tensordict`` (not a dependency), so a stand-in with the same constant is used when the real one fails."""
    pytest.importorskip("training")
    try:
        import training.trainer  # noqa: F401
    except ImportError:
        sys.modules["training.trainer"] = types.SimpleNamespace(CORE_LOSS_KEY="core_loss")
    import training.loss_fns

    return training.loss_fns


def make_case(n: int = 6, m: int = 3, h: int = 24, w: int = 20, seed: int = 0):
    """Logits, sigmoided IoU predictions, object-score logits and ground truth with an empty object."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, h, w, generator=g) < torch.rand(n, 1, 1, generator=g)
    gt[1] = False
    # logits correlated with the ground truth so the three masks differ in quality
    signal = 4 * (gt[:, None].float() - 0.5) * torch.rand(n, m, 1, 1, generator=g)
    logits = 3 * torch.randn(n, m, h, w, generator=g) + signal
    iou_pred = torch.rand(n, m, generator=g)
    obj = torch.randn(n, 1, generator=g)
    return logits, iou_pred, gt, obj


@pytest.mark.reference
def test_focal_dice_and_iou_match_the_reference(ref):
    logits, iou_pred, gt, _ = make_case()
    targets = gt[:, None].float().expand_as(logits)
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, gt[:, None]), ref.sigmoid_focal_loss(logits, targets, 1, loss_on_multimask=True)
    )
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, gt[:, None], alpha=-1, gamma=0.5),
        ref.sigmoid_focal_loss(logits, targets, 1, alpha=-1, gamma=0.5, loss_on_multimask=True),
    )
    torch.testing.assert_close(
        dice_loss(logits, gt[:, None]), ref.dice_loss(logits, targets, 1, loss_on_multimask=True)
    )
    ref_iou = ref.iou_loss(logits, targets, torch.zeros_like(iou_pred), 1, loss_on_multimask=True, use_l1_loss=True)
    torch.testing.assert_close(actual_iou(logits, gt[:, None]), ref_iou)


@pytest.mark.reference
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("supervise_all_iou", [True, False])
@pytest.mark.parametrize("iou_use_l1", [True, False])
@pytest.mark.parametrize("object_scores", [True, False])
def test_step_losses_and_gradients_match_the_reference(ref, m, supervise_all_iou, iou_use_l1, object_scores):
    logits, iou_pred, gt, obj = make_case(m=m, seed=m)
    ours_in = [t.clone().requires_grad_() for t in (logits, iou_pred, obj)]
    ref_in = [t.clone().requires_grad_() for t in (logits, iou_pred, obj)]

    ours = sam2_losses(
        ours_in[0], ours_in[1], gt, ours_in[2] if object_scores else None,
        supervise_all_iou=supervise_all_iou, iou_use_l1=iou_use_l1,
    )
    criterion = ref.MultiStepMultiMasksAndIous(
        dict(OFFICIAL_WEIGHTS), supervise_all_iou=supervise_all_iou, iou_use_l1_loss=iou_use_l1,
        pred_obj_scores=object_scores, focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1,
    )
    outputs = {
        "multistep_pred_multimasks_high_res": [ref_in[0]],
        "multistep_pred_ious": [ref_in[1]],
        "multistep_object_score_logits": [ref_in[2]],
    }
    theirs = criterion([outputs], gt[None])  # one frame: targets (T=1, N, H, W)

    for key in KEYS:
        torch.testing.assert_close(ours[key], torch.as_tensor(theirs[key]).float(), rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(ours["loss"], theirs["core_loss"], rtol=1e-5, atol=1e-5)
    ours["loss"].backward()
    theirs["core_loss"].backward()
    for a, b in zip(ours_in, ref_in):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_best_mask_is_chosen_and_empty_objects_only_train_presence():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, 2:6, 2:6] = True  # object 1 is absent
    logits = torch.full((2, 3, 8, 8), -10.0)
    logits[0, 1, 2:6, 2:6] = 10.0  # mask 1 of object 0 is perfect
    logits[0, 2, :4] = 10.0  # mask 2: the top 4 rows (32 px), 8 of them on the object → IoU 8 / 40
    iou_pred = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    out = sam2_losses(logits, iou_pred, gt, torch.tensor([[10.0], [-10.0]]))
    assert out["iou"] == 1.0  # mean over present objects only: the perfect mask
    assert out["loss_mask"] < 1e-6 and out["loss_dice"] < 1e-3 and out["loss_class"] < 1e-4  # sigmoid(±10) ≈ 0 / 1
    # IoU head: object 0 actual IoUs (0, 1, 0.2) against predictions (0, 1, 0) → mean L1 0.2 / 3, halved by N = 2
    torch.testing.assert_close(out["loss_iou"], torch.tensor(0.2 / 3 / 2))


def test_weights_combine_the_terms():
    logits, iou_pred, gt, obj = make_case(seed=4)
    w = LossWeights(mask=3.0, dice=0.5, iou=2.0, object_score=0.0)
    out = sam2_losses(logits, iou_pred, gt, obj, w)
    expected = 3 * out["loss_mask"] + 0.5 * out["loss_dice"] + 2 * out["loss_iou"]
    torch.testing.assert_close(out["loss"], expected)
    assert out["loss_class"] > 0  # reported, but weighted 0


def test_ignored_pixels_are_left_out():
    logits, iou_pred, gt, obj = make_case(seed=5)
    valid = torch.zeros(gt.shape[-2:], dtype=torch.bool)
    valid[:, :12] = True  # only the left 12 columns count
    ours = sam2_losses(logits, iou_pred, gt, obj, valid=valid)
    left = sam2_losses(logits[..., :12].contiguous(), iou_pred, gt[..., :12].contiguous(), obj)
    for key in ("loss_mask", "loss_dice", "loss_iou", "iou"):
        torch.testing.assert_close(ours[key], left[key], msg=key)
    per_object = valid.expand_as(gt)
    torch.testing.assert_close(sam2_losses(logits, iou_pred, gt, obj, valid=per_object)["loss"], ours["loss"])
    all_valid = sam2_losses(logits, iou_pred, gt, obj, valid=torch.ones_like(gt))
    torch.testing.assert_close(all_valid["loss"], sam2_losses(logits, iou_pred, gt, obj)["loss"])


def test_low_precision_inputs_give_float32_losses():
    logits, iou_pred, gt, obj = make_case(seed=6)
    out = sam2_losses(logits.bfloat16(), iou_pred.bfloat16(), gt, obj.bfloat16())
    assert all(v.dtype == torch.float32 for v in out.values())
    torch.testing.assert_close(out["loss"], sam2_losses(logits, iou_pred, gt, obj)["loss"], rtol=0.02, atol=0)


def test_no_objects_give_zero_losses():
    no_gt = torch.zeros(0, 4, 4, dtype=torch.bool)
    out = sam2_losses(torch.zeros(0, 3, 4, 4), torch.zeros(0, 3), no_gt, torch.zeros(0, 1))
    assert all(float(v) == 0 for v in out.values())


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="iou_pred"):
        sam2_losses(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="gt_masks"):
        sam2_losses(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 5, 4, dtype=torch.bool))
