"""SiamBAN's loss terms, batch-shaped (masks, no index lists, no host sync).

- ``cls``: log-softmax over the two channels, negative log-likelihood averaged over the batch's positive cells
  and, separately, its negative cells; 0.5 · positives + 0.5 · negatives (a batch without positives adds 0).
- ``loc``: 1 − IoU of the predicted and target (l, t, r, b) boxes on the positive cells, IoU = (inter + 1) /
  (union + 1) (the reference's ``linear_iou``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segfit.engine.distributed import loss_divisor


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the ``mask`` cells of the batch; under data parallelism over the cells of every
    process's batch (``loss_divisor``), so that N processes train as one with all their pairs."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / loss_divisor(mask.sum(), values.device)


def cls_loss(cls: Tensor, labels: Tensor) -> Tensor:
    """``cls``: B×2×n×n logits; ``labels``: B×n×n in {-1, 0, 1}."""
    log_p = F.log_softmax(cls.float(), dim=1)
    pos = _masked_mean(-log_p[:, 1], labels == 1)
    neg = _masked_mean(-log_p[:, 0], labels == 0)
    return 0.5 * pos + 0.5 * neg


def iou_loss(pred: Tensor, target: Tensor, labels: Tensor) -> Tensor:
    """``pred``, ``target``: B×4×n×n (l, t, r, b) distances; the mean over positive cells of 1 − IoU."""
    pred, target = pred.float(), target.float()
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    inter = (torch.minimum(pl, tl) + torch.minimum(pr, tr)) * (torch.minimum(pt, tt) + torch.minimum(pb, tb))
    union = (pl + pr) * (pt + pb) + (tl + tr) * (tt + tb) - inter
    return _masked_mean(1 - (inter + 1) / (union + 1), labels == 1)


def siamban_loss(cls: Tensor, loc: Tensor, labels: Tensor, loc_target: Tensor, cls_weight: float = 1.0,
                 loc_weight: float = 1.0) -> dict[str, Tensor]:
    terms = {"cls": cls_loss(cls, labels), "loc": iou_loss(loc, loc_target, labels)}
    return {"loss": cls_weight * terms["cls"] + loc_weight * terms["loc"], **terms}
